"""What `keywright scan` reads and what it leaves out, on real files in a temporary tree;
and what the command prints and exits with, run in this process (tests/e2e/test_scanning.py
runs the installed command)."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest

from keywright import cli
from keywright.core import tokens
from keywright.scanning import files
from tests.support.k8s import Plaintext

KEY = Plaintext(tokens.generate("kw"))
SHOWN = f"kw_...{KEY[-4:]}"
LIMIT = 10_000


def results(*paths: Path | str, stdin: bytes = b"") -> list[tuple[str, list[tuple[int, str]],
                                                                  str | None, bool]]:
    found = files.scan([str(p) for p in paths], LIMIT, io.BytesIO(stdin))
    return [(r.name, [(f.line, f.preview) for f in r.found], r.skipped, r.unreadable)
            for r in found]


def test_a_tree_is_walked_depth_first_in_name_order(tmp_path: Path) -> None:
    for name in ("b/2.txt", "b/1.txt", "a.txt", "c.txt", "b/sub/0.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"x\n{KEY}\n")
    assert [(name[len(str(tmp_path)) + 1:], found) for name, found, _, _ in results(tmp_path)] \
        == [(name, [(2, SHOWN)]) for name in
            ("a.txt", "b/1.txt", "b/2.txt", "b/sub/0.txt", "c.txt")]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(".git/config", id="a .git directory is left out"),
        pytest.param("sub/.git", id="a .git file (a worktree's) is left out"),
    ],
)
def test_git_is_left_out(tmp_path: Path, name: str) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(KEY)
    assert results(tmp_path) == []


def test_a_link_inside_a_tree_is_not_followed_but_a_named_one_is(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "key.txt").write_text(KEY)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file-link").symlink_to(outside / "key.txt")
    (tree / "dir-link").symlink_to(outside)
    assert results(tree) == []
    assert results(tree / "file-link") == [(str(tree / "file-link"), [(1, SHOWN)], None, False)]
    assert [found for _, found, _, _ in results(tree / "dir-link")] == [[(1, SHOWN)]]


def test_a_pipe_inside_a_tree_is_left_out_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    assert results(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "skipped", "found"),
    [
        pytest.param(f"{KEY}\0".encode(), "binary", [],
                     id="a NUL byte in the first 8000 bytes makes a file binary"),
        pytest.param(KEY.encode("utf-16"), "binary", [],
                     id="UTF-16 text is binary, as git judges"),
        pytest.param(b"\n" * LIMIT + KEY.encode(), "larger than 0.01 MB", [],
                     id="a file over the limit is left out, saying so"),
        pytest.param(b" " * (LIMIT - len(KEY)) + KEY.encode(), None, [(1, SHOWN)],
                     id="a file of exactly the limit is read"),
        pytest.param(b"\xff\xfe caf\xc3\xa9 " + KEY.encode() + b" \x80", None, [(1, SHOWN)],
                     id="bytes that are not UTF-8 around a key do not hide it"),
        pytest.param(b"a\r\nb\r\n" + KEY.encode() + b"\r\n", None, [(3, SHOWN)],
                     id="CRLF line ends count as lines"),
    ],
)
def test_what_a_file_is_read_as(tmp_path: Path, content: bytes, skipped: str | None,
                                found: list[tuple[int, str]]) -> None:
    (tmp_path / "f").write_bytes(content)
    assert results(tmp_path / "f") == [(str(tmp_path / "f"), found, skipped, False)]


def test_a_nul_after_the_first_8000_bytes_is_text(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"\n" * 100 + KEY.encode() + b" " * 7900 + b"\0")
    assert results(tmp_path / "f") == [(str(tmp_path / "f"), [(101, SHOWN)], None, False)]


def test_standard_input_is_read_for_a_dash() -> None:
    assert results("-", stdin=f"one\n{KEY}\n".encode()) == [("<stdin>", [(2, SHOWN)], None,
                                                               False)]


def test_a_file_that_cannot_be_read_is_said_to_be_unreadable(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "socket"))
        [(name, found, skipped, unreadable)] = results(tmp_path / "socket")
    assert (name, found, unreadable) == (str(tmp_path / "socket"), [], True)
    assert skipped == "cannot read: No such device or address"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["scan", *args])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return code, out, err


def test_the_command_prints_where_each_key_is_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.env").write_text(f"KEY={KEY}\n")
    (tmp_path / "b.bin").write_bytes(b"\0" + KEY.encode())
    code, out, err = run(capsys, str(tmp_path))
    assert code == 1
    assert out == f"{tmp_path}/a.env:1: {SHOWN} (Keywright key, checksum valid)\n"
    assert err == "keywright scan: 1 file read (1 binary skipped), 1 key found\n"


def test_a_file_over_the_limit_is_named_and_nothing_found_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "big.log").write_bytes(b"x" * 1_000_001)
    code, out, err = run(capsys, "--max-megabytes", "1", str(tmp_path))
    assert (code, out) == (0, "")
    assert err.splitlines() == [
        f"keywright scan: skipped {tmp_path}/big.log: larger than 1 MB",
        "keywright scan: 0 files read (0 binary skipped), 0 keys found"]


def test_a_file_that_cannot_be_read_makes_a_clean_scan_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "socket"))
        code, out, err = run(capsys, str(tmp_path / "socket"))
    assert (code, out) == (2, "")
    assert f"skipped {tmp_path}/socket: cannot read: No such device or address" in err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param(["/no/such/path"], "argument PATH: /no/such/path: no such file or directory",
                     id="a path that does not exist is named"),
        pytest.param([], "the following arguments are required: PATH", id="a path is needed"),
        pytest.param(["--max-megabytes", "0", "."], "'0' is not a whole number of at least 1",
                     id="the size limit is at least 1 MB"),
    ],
)
def test_usage_errors_exit_2_naming_what_is_wrong(
        args: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["scan", *args])
    assert done.value.code == 2
    assert error in capsys.readouterr().err
