"""Keywright keys in a text: the scanner regex of the contract, then the checksum.

Owns: which stretches of a text are Keywright keys (the key's shape between word
boundaries, ASCII only, and a CRC32 check that matches, so that a look-alike is not
one), on which line each is, and what of it may be shown.
Must not: do I/O, or hand out a key but to a caller that asks for it by name
(`keys_in`: detect-secrets hashes what a plugin yields); the format and the checksum are
`core.tokens`'s, never computed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from keywright.core import tokens

# re.ASCII: `\b` as RE2 (gitleaks) reads it, so a key after an accented letter is found
CANDIDATE = re.compile(tokens.SCANNER_REGEX, re.ASCII)


@dataclass(frozen=True)
class Found:
    """Where a key is, and what people may see of it: never the key."""

    line: int  # from 1
    preview: str  # kw_...x9Qa


def _keys(text: str) -> Iterator[re.Match[str]]:
    for match in CANDIDATE.finditer(text):
        if tokens.well_formed(match.group()):
            yield match


def keys_in(text: str) -> Iterator[str]:
    """Every Keywright key in `text`, itself (the detect-secrets plugin hashes it)."""
    for match in _keys(text):
        yield match.group()


def found_in(text: str) -> Iterator[Found]:
    """Every Keywright key in `text`: its line (lines end at `\\n`) and its preview."""
    line, counted = 1, 0
    for match in _keys(text):
        line += text.count("\n", counted, match.start())
        counted = match.start()
        key = match.group()
        yield Found(line, tokens.preview(tokens.prefix_of(key), tokens.last_characters(key)))
