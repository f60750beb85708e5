"""Which files `keywright scan` reads, and what each holds.

Owns: walking the paths given, in order (a directory recursively, depth first in name
order; `-` is standard input), and what is left out: a `.git` entry, symbolic links and
anything not a regular file met inside a directory, binary files (a NUL byte in the first
8,000 bytes, as git judges) and files over the size limit (told apart from files that
could not be read).
Must not: print (the CLI decides what is said), follow a link found inside a directory,
or hand out a key: a file's result holds `matching.Found`s only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from keywright.scanning import matching

STDIN = "-"
SKIPPED_NAMES = frozenset({".git"})  # a directory, or a worktree's file pointing at one
BINARY_SNIFF = 8000  # bytes looked at for a NUL, as git's own binary check


@dataclass(frozen=True)
class Result:
    """One file: the keys found in it, or why it was not read."""

    name: str
    found: tuple[matching.Found, ...] = ()
    skipped: str | None = None  # "binary", "larger than ...", or why it could not be read
    unreadable: bool = False  # not read for an error, not by choice: the scan is incomplete


def scan(paths: Iterable[str], max_bytes: int, stdin: BinaryIO) -> Iterator[Result]:
    """Each file under `paths`, in order, with what it holds."""
    for path in paths:
        if path == STDIN:
            yield _read("<stdin>", stdin, max_bytes)
        elif os.path.isdir(path):
            yield from _tree(path, max_bytes)
        else:  # named: read whatever it is (a link to a file, a pipe from <(...))
            yield _file(path, max_bytes)


def _tree(root: str, max_bytes: int) -> Iterator[Result]:
    listed = _listing(root)
    if isinstance(listed, Result):
        yield listed
        return
    pending = [iter(listed)]  # a stack: each open directory's entries still to see
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
        elif entry.name in SKIPPED_NAMES or entry.is_symlink():
            pass  # neither read nor followed
        elif entry.is_dir(follow_symlinks=False):
            listed = _listing(entry.path)
            if isinstance(listed, Result):
                yield listed
            else:
                pending.append(iter(listed))
        elif entry.is_file(follow_symlinks=False):
            yield _file(entry.path, max_bytes)


def _listing(directory: str) -> list[os.DirEntry[str]] | Result:
    try:
        with os.scandir(directory) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        return Result(directory, skipped=_why(exc), unreadable=True)


def _file(name: str, max_bytes: int) -> Result:
    try:
        with open(name, "rb") as handle:
            facts = os.fstat(handle.fileno())
            if stat.S_ISREG(facts.st_mode) and facts.st_size > max_bytes:
                return Result(name, skipped=_larger(max_bytes))
            return _read(name, handle, max_bytes)
    except OSError as exc:
        return Result(name, skipped=_why(exc), unreadable=True)


def _read(name: str, stream: BinaryIO, max_bytes: int) -> Result:
    data = stream.read(min(BINARY_SNIFF, max_bytes + 1))
    if b"\0" in data:
        return Result(name, skipped="binary")  # the rest is never read
    data += stream.read(max_bytes + 1 - len(data))  # a byte more tells "too large"
    if len(data) > max_bytes:
        return Result(name, skipped=_larger(max_bytes))
    # latin-1 maps each byte to one character: nothing fails to decode, and a key (ASCII)
    # reads the same whatever the file's encoding (UTF-16 aside, which is "binary")
    return Result(name, found=tuple(matching.found_in(data.decode("latin-1"))))


def _larger(max_bytes: int) -> str:
    return f"larger than {max_bytes / 1e6:g} MB"


def _why(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"
