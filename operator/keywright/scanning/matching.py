"""Keywright keys in a text: the scanner regex of the contract, then the checksum; and
the same inside base64, as a Secret's data is printed.

Owns: which stretches of a text are Keywright keys (the key's shape between word
boundaries, ASCII only, and a CRC32 check that matches, so that a look-alike is not
one), which runs of base64 decode to text holding one, on which line each is, and what
of a key may be shown.
Must not: do I/O, or hand out a key but to a caller that asks for it by name
(`secrets_in`: detect-secrets hashes what a plugin yields); the format and the checksum
are `core.tokens`'s, never computed here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

from keywright.core import tokens

# re.ASCII: `\b` as RE2 (gitleaks) reads it, so a key after an accented letter is found
CANDIDATE = re.compile(tokens.SCANNER_REGEX, re.ASCII)
# standard base64 of at least the shortest key (52 bytes: 70 characters and "=="), whole:
# `kubectl get secret -o yaml` prints a key so
BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{70,}+={0,2}", re.ASCII)


@dataclass(frozen=True)
class Found:
    """Where a key is, and what people may see of it: never the key."""

    line: int  # from 1
    preview: str  # kw_...x9Qa
    encoding: str | None = None  # "base64": the key is in the base64 on that line


def _keys(text: str) -> Iterator[re.Match[str]]:
    for match in CANDIDATE.finditer(text):
        if tokens.well_formed(match.group()):
            yield match


def _encoded(text: str) -> Iterator[tuple[re.Match[str], list[str]]]:
    """Each run of base64 in `text` that decodes to text holding keys, with those keys."""
    for match in BASE64.finditer(text):
        run = match.group().rstrip("=")
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        except binascii.Error:  # a length no base64 has
            continue
        keys = [key.group() for key in _keys(decoded.decode("latin-1"))]
        if keys:
            yield match, keys


def secrets_in(text: str) -> Iterator[str]:
    """Each Keywright key in `text` as it is written there: the key itself, or the run of
    base64 that holds it (once, however many it holds). For detect-secrets, which hashes
    what a plugin finds and looks for it on its line."""
    for match in _keys(text):
        yield match.group()
    for encoded, _ in _encoded(text):
        yield encoded.group()


def found_in(text: str) -> Iterator[Found]:
    """Every Keywright key in `text`, plain or in base64, in order: its line (lines end at
    `\\n`) and its preview."""
    spans: list[tuple[int, str, str | None]] = [
        (match.start(), match.group(), None) for match in _keys(text)]
    spans += [(encoded.start(), key, "base64") for encoded, keys in _encoded(text)
              for key in keys]
    line, counted = 1, 0
    for start, key, encoding in sorted(spans, key=lambda span: span[0]):
        line += text.count("\n", counted, start)
        counted = start
        yield Found(line, tokens.preview(tokens.prefix_of(key), tokens.last_characters(key)),
                    encoding)
