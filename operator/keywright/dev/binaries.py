"""Kubernetes binaries, built once from Debian's source and cached.

Owns: the build of the control-plane binaries (kube-apiserver, kube-controller-manager)
and the node's (kubelet, kube-scheduler, kube-proxy) from Debian bookworm's `kubernetes`
source package, the Go 1.18+ fix for its vendored reflect2, progress while it builds, and
the cache outside the checkout (keyed by the source version) that makes the next run
start in seconds.
Must not: build when the cache is complete, or leave a half-written binary in the cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from keywright.core import errors
from keywright.dev import apt

KUBERNETES_VERSION = "1.20.2"
SOURCE_PACKAGE = "kubernetes"
SOURCE_VERSION = "1.20.5+really1.20.2-1.1+deb12u1"
BINARIES = ("kube-apiserver", "kube-controller-manager")
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy")
RUNTIME_PACKAGES = ("etcd-server",)
BUILD_PACKAGES = (
    "golang-go",
    "make",
    "rsync",
    "jq",
    "dpkg-dev",
    "golang-github-modern-go-reflect2-dev",
)
REFLECT2_FIXED = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
# Go packages a full build compiles (counted on Go 1.19); only used to show a fraction
# while building, so a different count just makes the fraction approximate.
EXPECTED_PACKAGES = {BINARIES: 1740, NODE_BINARIES: 1500}
PROGRESS_EVERY = 15.0

Say = Callable[[str], None]


class BuildError(errors.KeywrightError):
    """The control-plane binaries could not be built; the message says why."""


def cache_root() -> Path:
    """Where Keywright caches builds: $KEYWRIGHT_CACHE_DIR, else the XDG cache."""
    explicit = os.environ.get("KEYWRIGHT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "keywright"


def bin_dir() -> Path:
    return cache_root() / f"kubernetes-{SOURCE_VERSION}" / "bin"


def cached(names: tuple[str, ...] = BINARIES) -> bool:
    return all(os.access(bin_dir() / name, os.X_OK) for name in names)


def ensure_binaries(say: Say, names: tuple[str, ...] = BINARIES) -> Path:
    """The directory holding `names` (by default the control plane's), building them
    first if the cache lacks them."""
    if names == BINARIES:
        apt.ensure(RUNTIME_PACKAGES, say)
    what = " and ".join(names)
    if cached(names):
        say(f"using cached {what} {KUBERNETES_VERSION} from {bin_dir()}")
        return bin_dir()
    cache_root().mkdir(parents=True, exist_ok=True)
    with _exclusive(cache_root() / ".build.lock"):
        if cached(names):  # another process built them while we waited for the lock
            say(f"using {what} just built into {bin_dir()}")
            return bin_dir()
        _build(names, say)
    return bin_dir()


def source_tree(work: Path, say: Say) -> Path:
    """Debian's Kubernetes source unpacked under `work` (for files other than binaries,
    such as the pause container's source)."""
    apt.ensure(("dpkg-dev",), say)
    apt.ensure_source_index(SOURCE_PACKAGE, SOURCE_VERSION, say)
    return _unpack_source(work)


def _build(names: tuple[str, ...], say: Say) -> None:
    apt.ensure(BUILD_PACKAGES, say)
    apt.ensure_source_index(SOURCE_PACKAGE, SOURCE_VERSION, say)
    minutes = {BINARIES: "about 6 minutes", NODE_BINARIES: "about 8 minutes"}.get(
        names, "several minutes")
    say(f"building {' and '.join(names)} {KUBERNETES_VERSION} from Debian source "
        f"{SOURCE_VERSION} (first time only; {minutes} on 2 cores)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache_root()) as work:
        tree = _unpack_source(Path(work))
        _replace_reflect2(tree)
        _make(tree, names, say)
        target = bin_dir()
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            built = tree / "_output" / "bin" / name
            if not built.is_file():
                raise BuildError(f"make finished but {built} does not exist")
            partial = target / f".{name}.partial"
            shutil.copy2(built, partial)
            partial.replace(target / name)  # atomic: the cache never holds half a binary
    say(f"built in {time.monotonic() - started:.0f}s; cached in {bin_dir()}")


def _unpack_source(work: Path) -> Path:
    result = subprocess.run(
        ["apt-get", "source", "-q", f"{SOURCE_PACKAGE}={SOURCE_VERSION}"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    trees = [p for p in work.iterdir() if p.is_dir() and p.name.startswith(SOURCE_PACKAGE)]
    if result.returncode != 0 or len(trees) != 1:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        raise BuildError(f"apt-get source {SOURCE_PACKAGE}={SOURCE_VERSION} failed:\n{tail}")
    return trees[0]


def _replace_reflect2(tree: Path) -> None:
    """Swap the vendored reflect2 1.0.1 (crashes under Go >= 1.18) for Debian's 1.0.2."""
    vendored = tree / "vendor" / "github.com" / "modern-go" / "reflect2"
    fixed = [p for p in REFLECT2_FIXED.iterdir() if p.suffix in (".go", ".s")]
    if not fixed:
        raise BuildError(f"no reflect2 sources under {REFLECT2_FIXED}")
    for old in vendored.iterdir():
        if old.suffix in (".go", ".s"):
            old.unlink()
    for new in fixed:
        shutil.copy2(new, vendored / new.name)


def _make(tree: Path, names: tuple[str, ...], say: Say) -> None:
    gopath = tree / ".go"
    (gopath / "src" / "k8s.io").mkdir(parents=True, exist_ok=True)
    link = gopath / "src" / "k8s.io" / "kubernetes"
    if not link.exists():
        link.symlink_to(Path("..") / ".." / "..")
    env = {
        **os.environ,
        "GOPATH": str(gopath),
        "CGO_ENABLED": "0",
        "GOFLAGS": "-v",  # one line per compiled package: our progress signal
    }
    log_path = tree / "build.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["make", f"WHAT={' '.join('cmd/' + b for b in names)}"],
            cwd=tree,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _report_progress(proc, log_path, EXPECTED_PACKAGES.get(names, 1500), say)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"building {' and '.join(names)} failed (make exit {proc.returncode})"
                         f":\n{tail}")


def _report_progress(
    proc: subprocess.Popen[bytes], log_path: Path, expected: int, say: Say
) -> None:
    started = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(PROGRESS_EVERY):
            compiled = sum(1 for line in log_path.open(errors="replace")
                           if line.startswith("k8s.io/"))
            share = min(99, compiled * 100 // expected)
            say(f"  building: {compiled} Go packages compiled (~{share}%), "
                f"{time.monotonic() - started:.0f}s elapsed")

    thread = threading.Thread(target=ticker, name="build-progress", daemon=True)
    thread.start()
    try:
        proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    finally:
        done.set()
        thread.join()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
