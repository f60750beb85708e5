"""The detect-secrets plugin, loaded by detect-secrets itself from the file's path (as
`--plugin PATH` and a baseline's `plugins_used` do), in this process.
tests/e2e/test_scanning.py runs the detect-secrets command."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from detect_secrets.core.plugins import util
from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import get_settings, transient_settings

from keywright.scanning import detect_secrets_plugin
from tests.support import leaks

PLUGIN = Path(detect_secrets_plugin.__file__).resolve()
# detect-secrets' default filter that drops whatever is found on a line shaped like
# `name = call(...)`, whichever plugin found it (docs/scanning.md)
INDIRECT = "detect_secrets.filters.heuristic.is_indirect_reference"


@contextlib.contextmanager
def plugin_alone(*disabled_filters: str) -> Iterator[None]:
    """detect-secrets' settings with the plugin named by its file and no other plugin, and
    its default filters but those named. detect-secrets caches its catalog of plugins per
    process: start from a fresh one."""
    util.get_mapping_from_secret_type_to_class.cache_clear()
    with transient_settings({"plugins_used": [
            {"name": "KeywrightDetector", "path": f"file://{PLUGIN}"}]}):
        get_settings().disable_filters(*disabled_filters)
        yield
    util.get_mapping_from_secret_type_to_class.cache_clear()


@pytest.fixture
def only_keywrights_plugin() -> Iterator[None]:
    with plugin_alone(INDIRECT):
        yield


@pytest.fixture
def with_default_filters() -> Iterator[None]:
    with plugin_alone():
        yield


def scan(root: Path, *names: str) -> set[tuple[str, int, str, str]]:
    """(file, line, type, SHA-1 of the secret) of each finding, as a baseline lists them."""
    found = SecretsCollection(root=str(root))
    for name in names:
        found.scan_file(name)
    return {(name, secret.line_number, secret.type, secret.secret_hash)
            for name, secret in found}


def sha1(key: str) -> str:
    """How a baseline names a secret: SHA-1 of its text (not a safeguard, a label)."""
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def listed(planted: list[leaks.Planted]) -> set[tuple[str, int, str, str]]:
    return {(p.path, p.line, leaks.SECRET_TYPE, sha1(p.written))
            for p in planted}


def test_detect_secrets_finds_one_plugin_in_the_file() -> None:
    found: list[type] = list(util.get_plugins_from_file(str(PLUGIN)))
    assert [plugin.__name__ for plugin in found] == ["KeywrightDetector"]


@pytest.mark.usefixtures("only_keywrights_plugin")
def test_every_planted_key_is_found_once_on_its_line(tmp_path: Path) -> None:
    planted = leaks.plant(tmp_path)
    assert scan(tmp_path, *(p.path for p in planted)) == listed(planted)


@pytest.mark.usefixtures("with_default_filters")
def test_detect_secrets_default_filter_drops_a_key_in_a_call_on_an_assignment_line(
        tmp_path: Path) -> None:
    planted = leaks.plant(tmp_path)
    dropped = [p for p in planted if p.path == "src/client.py"]  # KEY = ...get("X", key)
    assert scan(tmp_path, *(p.path for p in planted)) == listed(planted) - listed(dropped)


@pytest.mark.usefixtures("only_keywrights_plugin")
def test_no_look_alike_is_reported(tmp_path: Path) -> None:
    misses = leaks.near_misses()
    (tmp_path / "near.txt").write_text("".join(f"token: {m.text}\n" for m in misses))
    assert scan(tmp_path, "near.txt") == set()


def test_the_console_script_prints_the_files_path(capsys: pytest.CaptureFixture[str]) -> None:
    detect_secrets_plugin.main()
    assert capsys.readouterr().out == f"{PLUGIN}\n"
