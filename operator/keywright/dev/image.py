"""Keywright's container image, built here with no engine and no registry: `make image`.

Owns: the Debian base made with debootstrap (minbase + python3, the Python 3.11 of
`python:3.11-slim-bookworm`), cached; the wheels fetched on the host for the image's
Python so that the build runs offline; `buildah bud` of deploy/Dockerfile with a private
storage root, fixed timestamps and the base as a build argument; and the docker-archive
under dist/ that `docker load`, `podman load` and `ctr images import` all take. Also the
writer of small single-layer archives (the base, the pause image) made from a directory.
Must not: change deploy/Dockerfile's meaning (it builds unchanged with `docker build`),
touch the host's own container storage, or leave a half-written archive or base in the
cache.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keywright.core import errors
from keywright.dev import apt, binaries
from keywright.kits import mounts

Say = Callable[[str], None]

PACKAGES = ("buildah", "debootstrap")
SOURCE = Path(__file__).resolve().parents[3]  # the checkout this dev wing belongs to
REPOSITORY = "kw.local/keywright"  # a domain that cannot resolve: an accidental pull fails
BASE_NAME = "kw.local/debian-python3:bookworm"
PIP = "pip==24.3.1"  # run from its wheel inside the build stage (the base has no pip)
SETUPTOOLS = "setuptools==84.2.1"  # builds Keywright's own wheel, offline, on the host
# bookworm's glibc is 2.36: every manylinux tag up to it (pip expands none by itself)
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)),
             "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# what an image never needs from a debootstrapped tree (apt state, docs, caches)
BASE_PRUNE = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
              "usr/share/info", "usr/share/locale", "var/log")


class ImageError(errors.KeywrightError):
    """The image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class Built:
    archive: Path
    reference: str
    seconds: float
    layers: list[int]  # uncompressed size of each layer, base first

    @property
    def size(self) -> int:
        return sum(self.layers)


def version(root: Path) -> str:
    """The project version from pyproject.toml (the image's tag)."""
    for line in (root / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise ImageError(f"no version in {root / 'pyproject.toml'}")


def source_date_epoch(root: Path) -> int:
    """The commit time of the checkout: the same commit gives the same timestamps."""
    result = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%ct"],
                            capture_output=True, text=True, check=False)
    return int(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() \
        else 0


def build(root: Path, out_dir: Path, say: Say) -> Built:
    """deploy/Dockerfile built with buildah into `out_dir`/keywright-<version>.tar."""
    started = time.monotonic()
    apt.ensure(PACKAGES, say)
    tag = f"{REPOSITORY}:{version(root)}"
    epoch = source_date_epoch(root)
    storage = _Storage(binaries.cache_root() / "buildah")
    base = base_archive(say)
    say(f"loading the base {BASE_NAME} into buildah's storage under {storage.root}")
    storage.run(["pull", "--quiet", f"docker-archive:{base}"])
    wheels = root / "deploy" / "wheels"
    cached = fetch_wheels(root, say)
    try:
        for wheel in cached.glob("*.whl"):
            if not wheel.name.startswith("setuptools-"):
                shutil.copy2(wheel, wheels / wheel.name)
        _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel",
              "--no-deps", "--no-index", "--find-links", str(cached), "-w", str(wheels),
              str(root)], "pip wheel (Keywright)",
             env={"SOURCE_DATE_EPOCH": str(max(epoch, 315532800))})  # zip starts at 1980
        say(f"building {tag} from deploy/Dockerfile (SOURCE_DATE_EPOCH={epoch})")
        storage.run([
            "bud", "--isolation", "chroot", "--pull-never", "--layers=false",
            "--timestamp", str(epoch),
            "--build-arg", f"BASE={BASE_NAME}",
            "--build-arg", f"SOURCE_DATE_EPOCH={epoch}",
            "-f", str(root / "deploy" / "Dockerfile"), "-t", tag, str(root),
        ], say=say)
    finally:
        # never left for a later `docker build` of this checkout to pick up stale
        for wheel in wheels.glob("*.whl"):
            wheel.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"keywright-{version(root)}.tar"
    partial = archive.with_suffix(".tar.partial")
    partial.unlink(missing_ok=True)
    storage.run(["push", "--quiet", tag, f"docker-archive:{partial}:{tag}"])
    partial.replace(archive)
    storage.run(["rmi", "--prune"])  # earlier builds' images: vfs keeps whole copies
    layers = layer_sizes(archive)
    built = Built(archive, tag, time.monotonic() - started, layers)
    say(f"wrote {archive} ({archive.stat().st_size / 1e6:.0f} MB; image {built.size / 1e6:.0f} "
        f"MB uncompressed, of which {(built.size - layers[0]) / 1e6:.0f} MB over the base) "
        f"in {built.seconds:.0f}s")
    return built


def fetch_wheels(root: Path, say: Say) -> Path:
    """The wheels the offline build needs, for Python 3.11 on Linux: the pinned
    requirements, pip, and setuptools to build Keywright's own wheel. Fetched from the
    package index once (`keywright cluster prepare` does it) into a cache keyed by what
    is asked for; every build after that is offline. Keywright's own wheel is built per
    build, with the commit's time in its zip entries, so the same commit gives the same
    wheel (its hash is recorded in the image)."""
    requirements = root / "deploy" / "image-requirements.txt"
    wanted = "\n".join([requirements.read_text(), PIP, SETUPTOOLS, *PLATFORMS])
    cache = binaries.cache_root() / "wheels" / hashlib.sha256(wanted.encode()).hexdigest()[:16]
    if cache.is_dir():
        return cache
    say(f"fetching wheels for Python 3.11 into {cache} (once)")
    partial = cache.with_name(cache.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "download",
          "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
          *(f"--platform={tag}" for tag in PLATFORMS), "--no-deps", "-d", str(partial),
          "-r", str(requirements),
          PIP, SETUPTOOLS], "pip download")
    partial.replace(cache)  # whole or absent
    for old in cache.parent.iterdir():  # what earlier pins needed
        if old != cache:
            shutil.rmtree(old, ignore_errors=True)
    return cache


def base_archive(say: Say) -> Path:
    """A docker-archive of Debian bookworm minbase + python3, made once and cached."""
    apt.ensure(("debootstrap",), say)
    cache = binaries.cache_root() / "images"
    archive = cache / "debian-python3-bookworm.tar"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    say("making the Debian base with debootstrap (minbase + python3; first time only, "
        "about 1 minute)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="base-", dir=cache) as work:
        rootfs = Path(work) / "rootfs"
        try:
            _run(["debootstrap", "--variant=minbase", "--include=python3", "bookworm",
                  str(rootfs), DEBIAN_MIRROR], "debootstrap", say=say)
        finally:
            # debootstrap mounts proc and sys inside while it works: never delete
            # through them
            mounts.unmount_under(rootfs)
        for sub in BASE_PRUNE:
            target = rootfs / sub
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        write_archive(rootfs, archive, BASE_NAME,
                      config={"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                      "/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
                              "Cmd": ["python3"]})
    say(f"made {archive} in {time.monotonic() - started:.0f}s")
    return archive


def write_archive(tree: Path, archive: Path, reference: str,
                  config: dict[str, object] | None = None) -> None:
    """A single-layer docker-archive of `tree` named `reference`, byte-for-byte the same
    for the same tree (sorted names, numeric owners, no times). Written to a temporary
    name and renamed, so the archive is whole or absent."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _walk(tree):
            relative = path.relative_to(tree).as_posix()
            info = tar.gettarinfo(str(path), arcname=relative)
            if info.ischr() or info.isblk() or info.isfifo():
                continue  # /dev comes from the runtime
            info.mtime = 0
            info.uname = info.gname = ""
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    image_config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"keywright {reference}"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(image_config).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [reference],
                            "Layers": [layer_name]}]).encode()
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as out:
        for name, data in ((config_name, image_config), (layer_name, layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))
    partial.replace(archive)


def layer_sizes(archive: Path) -> list[int]:
    """The uncompressed size of each layer of a docker-archive, base first."""
    with tarfile.open(archive) as tar:
        manifest = json.load(_member(tar, "manifest.json"))[0]
        sizes = []
        for name in manifest["Layers"]:
            member = tar.getmember(name)
            if member.issym():  # deduplicated layers point at the first copy
                member = tar.getmember(str(Path(name).parent / member.linkname))
            handle = _member(tar, member.name)
            head = handle.read(2)
            handle.seek(0)
            if head == b"\x1f\x8b":
                with gzip.open(handle) as plain:
                    sizes.append(sum(len(chunk) for chunk in iter(lambda: plain.read(1 << 20),
                                                                    b"")))
            else:
                sizes.append(member.size)
        return sizes


def image_config(archive: Path) -> dict[str, object]:
    """The image configuration (user, entrypoint, env...) recorded in a docker-archive."""
    with tarfile.open(archive) as tar:
        manifest = json.load(_member(tar, "manifest.json"))[0]
        loaded: dict[str, object] = json.load(_member(tar, manifest["Config"]))
        return loaded


def layer_digests(archive: Path) -> list[str]:
    """The diff IDs of an archive's layers: equal lists mean byte-identical layers."""
    config = image_config(archive)
    rootfs = config["rootfs"]
    assert isinstance(rootfs, dict)
    return [str(d) for d in rootfs["diff_ids"]]


def _member(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    handle = tar.extractfile(name)
    if handle is None:
        raise ImageError(f"{name} is not a file in the archive")
    return handle  # type: ignore[return-value]


def _walk(tree: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(tree):
        subdirs.sort()
        here = Path(directory)
        for name in sorted([*subdirs, *files]):
            yield here / name
        # symlinks to directories are listed in subdirs but must not be walked into
        subdirs[:] = [d for d in subdirs if not (here / d).is_symlink()]


class _Storage:
    """buildah with its own storage root: the host's container storage is never touched."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, argv: list[str], say: Say | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _run(["buildah", "--root", str(self.root / "root"), "--runroot",
              str(self.root / "run"), "--storage-driver", "vfs", *argv],
             f"buildah {argv[0]}", say=say)


def _progress(line: str) -> bool:
    """The lines worth showing while a step runs: buildah's steps, debootstrap's stages."""
    return ("STEP " in line or "COMMIT" in line
            or (line.startswith("I: ") and not line.startswith(("I: Retrieving",
                                                                  "I: Validating"))))


def _run(argv: list[str], what: str, say: Say | None = None,
         env: dict[str, str] | None = None) -> None:
    """Run a step; with `say`, its output lines are shown as they come (progress)."""
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile("w+"))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "BUILDAH_ISOLATION": "chroot",
                                                **(env or {})})
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                if say is not None and _progress(line):
                    say(f"  {line.rstrip()}")
        except BaseException:
            proc.terminate()  # interrupted: the step must not outlive us
            proc.wait()
            raise
        code = proc.wait()
        if code != 0:
            log.seek(0)
            tail = "\n".join(log.read().strip().splitlines()[-20:])
            raise ImageError(f"{what} failed (exit {code}):\n{tail}")
