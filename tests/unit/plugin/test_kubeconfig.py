"""kubectl's kubeconfig rules, as tables: which files, which context, which namespace,
paths relative to their file, and exec credential plugins. Files in a temporary
directory; no cluster."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from keywright.plugin import kubeconfig


def write(path: Path, current: str | None = None, clusters: dict[str, Any] | None = None,
          users: dict[str, Any] | None = None,
          contexts: dict[str, dict[str, str]] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        **({"current-context": current} if current else {}),
        "clusters": [{"name": n, "cluster": c} for n, c in (clusters or {}).items()],
        "users": [{"name": n, "user": u} for n, u in (users or {}).items()],
        "contexts": [{"name": n, "context": c} for n, c in (contexts or {}).items()]}))
    return path


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path]:
    first = write(tmp_path / "a", current="dev",
                  clusters={"dev": {"server": "https://dev:6443/"}},
                  users={"me": {"token": "from-a"}},
                  contexts={"dev": {"cluster": "dev", "user": "me", "namespace": "team"}})
    second = write(tmp_path / "b", current="prod",
                   clusters={"prod": {"server": "https://prod:6443",
                                      "certificate-authority": "ca.pem"},
                             "dev": {"server": "https://shadowed"}},
                   users={"me": {"token": "from-b"}, "ci": {"tokenFile": "token"}},
                   contexts={"prod": {"cluster": "prod", "user": "ci"}})
    (tmp_path / "ca.pem").write_text("PEM")
    (tmp_path / "token").write_text("file-token\n")
    return first, second


def test_the_first_file_wins_and_sets_the_current_context(two: tuple[Path, Path]) -> None:
    found = kubeconfig.load(list(two))
    assert (found.context, found.server, found.namespace, found.bearer()) == (
        "dev", "https://dev:6443", "team", "from-a")


def test_a_context_from_a_later_file_with_paths_relative_to_that_file(
    two: tuple[Path, Path]
) -> None:
    found = kubeconfig.load(list(two), context="prod")
    assert (found.server, found.namespace, found.ca_data, found.bearer()) == (
        "https://prod:6443", "default", b"PEM", "file-token")


def test_the_namespace_flag_wins_over_the_contexts(two: tuple[Path, Path]) -> None:
    assert kubeconfig.load(list(two), namespace="other").namespace == "other"


@pytest.mark.parametrize(("context", "words"), [
    pytest.param("nowhere", "context 'nowhere' not found", id="an unknown context"),
])
def test_what_cannot_work_is_said(two: tuple[Path, Path], context: str, words: str) -> None:
    with pytest.raises(kubeconfig.ConfigError, match=words):
        kubeconfig.load(list(two), context=context)


def test_no_current_context_and_no_flag_says_so(tmp_path: Path) -> None:
    bare = write(tmp_path / "c", clusters={"x": {"server": "https://x"}})
    with pytest.raises(kubeconfig.ConfigError, match="no current-context; pass --context"):
        kubeconfig.load([bare])


def test_which_files(tmp_path: Path) -> None:
    env = {"KUBECONFIG": f"/a{os.pathsep}/b", "HOME": "/home/me"}
    assert kubeconfig.paths(None, env) == [Path("/a"), Path("/b")]
    assert kubeconfig.paths("/only", env) == [Path("/only")]
    assert kubeconfig.paths(None, {"HOME": "/home/me"}) == [Path("/home/me/.kube/config")]
    with pytest.raises(kubeconfig.ConfigError, match="does not exist"):
        kubeconfig.load([tmp_path / "missing"])


def test_inline_data_and_an_exec_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "get-token"
    plugin.write_text('#!/bin/sh\necho "{\\"apiVersion\\": \\"client.authentication.k8s.io/v1'
                      '\\", \\"kind\\": \\"ExecCredential\\", \\"status\\": {\\"token\\": '
                      '\\"exec-$EXTRA\\"}}"\n')
    plugin.chmod(0o755)
    config = write(tmp_path / "k", current="c",
                   clusters={"c": {"server": "https://c",
                                   "certificate-authority-data":
                                       base64.b64encode(b"CA").decode()}},
                   users={"u": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                         "command": "./get-token",
                                         "env": [{"name": "EXTRA", "value": "7"}]}}},
                   contexts={"c": {"cluster": "c", "user": "u"}})
    found = kubeconfig.load([config])
    assert found.ca_data == b"CA"
    assert found.exec_spec is not None
    assert kubeconfig.run_exec(found.exec_spec, found.server).token == "exec-7"
