"""The image's build inputs and the docker-archive writer, without building anything."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from keywright.dev import image, install

REPO = Path(__file__).resolve().parents[3]


def test_an_archive_of_the_same_tree_is_the_same_bytes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_text("#!/bin/sh\n")
    (tree / "bin" / "tool").chmod(0o755)
    (tree / "link").symlink_to("bin/tool")
    image.write_archive(tree, tmp_path / "a.tar", "kw.local/t:1")
    (tree / "bin" / "tool").touch()  # a newer time changes nothing
    image.write_archive(tree, tmp_path / "b.tar", "kw.local/t:1")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert image.layer_sizes(tmp_path / "a.tar") == [image.layer_sizes(tmp_path / "a.tar")[0]]
    with tarfile.open(tmp_path / "a.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["kw.local/t:1"]
        layer = archive.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        with tarfile.open(fileobj=layer) as inner:
            members = {m.name: m for m in inner.getmembers()}
    assert members["bin/tool"].mode & 0o777 == 0o755
    assert members["link"].issym()
    assert {m.mtime for m in members.values()} == {0}
    assert not (tmp_path / "a.tar.partial").exists()


def test_a_changed_file_changes_the_layer_digest(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("one")
    image.write_archive(tree, tmp_path / "a.tar", "kw.local/t:1")
    (tree / "f").write_text("two")
    image.write_archive(tree, tmp_path / "b.tar", "kw.local/t:1")
    assert image.layer_digests(tmp_path / "a.tar") != image.layer_digests(tmp_path / "b.tar")


def test_every_dependency_is_pinned_for_the_image_within_its_range() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {}
    for line in (REPO / "deploy" / "image-requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, pin = line.split("==")
            pinned[canonicalize_name(name)] = pin
    for text in declared:
        requirement = Requirement(text)
        version = pinned.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not pinned for the image"
        assert requirement.specifier.contains(version), f"{requirement.name}=={version}"


def test_the_image_is_named_in_one_place_and_the_readme_overlay_replaces_it(
        tmp_path: Path) -> None:
    base = yaml.safe_load((REPO / "deploy" / "base" / "kustomization.yaml").read_text())
    assert [i["newName"] for i in base["images"]] == [install.SHIPPED_IMAGE]
    readme = (REPO / "README.md").read_text()
    assert f"  - name: {install.SHIPPED_IMAGE}\n" in readme
    others = [p for p in (REPO / "deploy").rglob("kustomization.yaml")
              if p.parent.name != "base" and "images:" in p.read_text()]
    assert others == []
    install.overlay(tmp_path, REPO / "deploy" / "k8s-1.20", "kw.local/keywright:9.9")
    rendered = subprocess.run(["kubectl", "kustomize", str(tmp_path)], check=True,
                              capture_output=True, text=True).stdout
    images = set(re.findall(r"image: (\S+)", rendered))
    # Keywright's own image replaced; Redis's is the public one, named once
    assert images == {"kw.local/keywright:9.9", f"{install.SHIPPED_REDIS_IMAGE}:7.2-alpine"}
    # the local node's overlay replaces that one too, and gives the verifiers its address
    install.overlay(tmp_path, REPO / "deploy" / "k8s-1.20", "kw.local/keywright:9.9",
                    redis_image="kw.local/redis:7.0")
    rendered = subprocess.run(["kubectl", "kustomize", str(tmp_path)], check=True,
                              capture_output=True, text=True).stdout
    assert set(re.findall(r"image: (\S+)", rendered)) == {"kw.local/keywright:9.9",
                                                          "kw.local/redis:7.0"}
    assert "redis://$(KEYWRIGHT_REDIS_SERVICE_HOST):6379/0" in rendered


def test_the_dockerfile_takes_its_base_as_an_argument_and_runs_as_65532() -> None:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert "ARG BASE=docker.io/library/python:3.11-slim-bookworm" in text
    assert text.count("FROM ${BASE}") == 2
    assert "\nUSER 65532:65532\n" in text
