"""The deb-src entry copies the machine's own bookworm origin, or says why it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from keywright.dev import apt

MACHINE = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"apt.sources": MACHINE},
                     ("http://mirror.example/debian",
                      "/usr/share/keyrings/debian-archive-keyring.gpg"),
                     id="the bookworm main stanza, not the security one"),
        pytest.param({"a.sources": "Types: deb-src\nURIs: http://x\nSuites: bookworm\n"
                                   "Components: main\n",
                      "b.sources": "Types: deb\nURIs: http://y\nSuites: bookworm\n"
                                   "Components: main\n"},
                     ("http://y", "/usr/share/keyrings/debian-archive-keyring.gpg"),
                     id="a deb-src stanza is not an origin; missing Signed-By gets the default"),
    ],
)
def test_origin_is_read_from_the_bookworm_main_stanza(
    files: dict[str, str], expected: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(apt, "SOURCES_DIR", tmp_path)
    assert apt._bookworm_origin() == expected


def test_no_bookworm_origin_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "other.sources").write_text(
        "Types: deb\nURIs: http://z\nSuites: trixie\nComponents: main\n")
    monkeypatch.setattr(apt, "SOURCES_DIR", tmp_path)
    with pytest.raises(apt.DebianError, match="no deb822 stanza for 'bookworm main'"):
        apt._bookworm_origin()
