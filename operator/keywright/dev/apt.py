"""Debian packages that the local control plane needs, installed on demand.

Owns: finding which packages are missing, installing them with apt-get, and making
Debian's source index available for `apt-get source`.
Must not: print anything when nothing is missing, or install without saying what.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from keywright.core import errors

SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCE_INDEX_FILE = SOURCES_DIR / "keywright-debian-src.sources"

Say = Callable[[str], None]


class DebianError(errors.KeywrightError):
    """A Debian package could not be had; the message says which and what to do."""


def missing(packages: Iterable[str]) -> list[str]:
    """The packages of `packages` that dpkg does not report as installed."""
    absent = []
    for name in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or result.stdout.strip() != "installed":
            absent.append(name)
    return absent


def ensure(packages: Iterable[str], say: Say) -> None:
    """Install whichever of `packages` is missing; silent when all are there."""
    absent = missing(packages)
    if not absent:
        return
    _require_root(f"Debian packages {', '.join(absent)} are missing")
    say(f"installing Debian packages: {' '.join(absent)}")
    _apt(["apt-get", "update"])
    _apt(["apt-get", "install", "-y", "--no-install-recommends", *absent])
    still = missing(absent)
    if still:
        raise DebianError(f"apt-get install reported success but {', '.join(still)} is missing")


def source_available(package: str, version: str) -> bool:
    """Whether `apt-get source package=version` can find that version."""
    result = subprocess.run(
        ["apt-cache", "showsrc", "--only-source", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"Version: {version}\n" in result.stdout


def ensure_source_index(package: str, version: str, say: Say) -> None:
    """Make `apt-get source package=version` work, adding a deb-src entry if needed.

    The entry copies the URIs and Signed-By of the machine's own bookworm `deb`
    stanza, so it trusts exactly what the machine already trusts.
    """
    if source_available(package, version):
        return
    if not SOURCE_INDEX_FILE.exists():
        _require_root(f"Debian source package {package} {version} is not indexed")
        uris, signed_by = _bookworm_origin()
        say(f"adding Debian source index {SOURCE_INDEX_FILE}")
        SOURCE_INDEX_FILE.write_text(
            "Types: deb-src\n"
            f"URIs: {uris}\n"
            "Suites: bookworm\n"
            "Components: main\n"
            f"Signed-By: {signed_by}\n"
        )
    _apt(["apt-get", "update"])
    if not source_available(package, version):
        raise DebianError(
            f"Debian's source index has no {package} {version}; "
            f"`apt-cache showsrc {package}` lists what is available"
        )


def _bookworm_origin() -> tuple[str, str]:
    """URIs and Signed-By of the deb822 stanza that serves bookworm main."""
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822_fields(stanza)
            suites = fields.get("Suites", "").split()
            if (
                "deb" in fields.get("Types", "").split()
                and "bookworm" in suites
                and "main" in fields.get("Components", "").split()
                and "URIs" in fields
            ):
                signed_by = fields.get(
                    "Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg"
                )
                return fields["URIs"], signed_by
    raise DebianError(
        f"no deb822 stanza for 'bookworm main' under {SOURCES_DIR}; "
        "add a deb-src entry for Debian bookworm by hand"
    )


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if not line.strip() or line.startswith("#") or line[0].isspace():
            continue
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def _require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise DebianError(f"{what}; installing them needs root (run as root, or sudo)")


def _apt(argv: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise DebianError(f"`{' '.join(argv)}` failed (exit {result.returncode}):\n{tail}")
