"""The key format: `<prefix>_<body><check>`.

Owns: generating keys from `secrets` randomness, base62, the CRC32 check, and telling a
well-formed key from garbage before anything is hashed. Pure but for the randomness.
Must not: log, print or keep a key; the caller decides where a key goes.
"""

from __future__ import annotations

import re
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 43  # 62**43 > 2**256: 32 random bytes always fit
CHECK_LENGTH = 6  # 62**6 > 2**32: any CRC32 fits
MIN_PREFIX_LENGTH, MAX_PREFIX_LENGTH = 2, 16
_PREFIX_SHAPE = f"[a-z][a-z0-9]{{{MIN_PREFIX_LENGTH - 1},{MAX_PREFIX_LENGTH - 1}}}"
_TAIL_SHAPE = f"[0-9A-Za-z]{{{BODY_LENGTH + CHECK_LENGTH}}}"
PREFIX_PATTERN = f"^{_PREFIX_SHAPE}$"
SCANNER_REGEX = rf"\b{_PREFIX_SHAPE}_{_TAIL_SHAPE}\b"
# The longest key there can be; the verifier calls anything longer garbage.
MAX_LENGTH = MAX_PREFIX_LENGTH + 1 + BODY_LENGTH + CHECK_LENGTH
LAST_CHARACTERS = 4

_SHAPE = re.compile(f"{_PREFIX_SHAPE}_{_TAIL_SHAPE}".encode("ascii"))
_PREFIX = re.compile(PREFIX_PATTERN)


def base62(number: int, width: int) -> str:
    """`number` in base62, most significant digit first, left-padded with '0' to `width`."""
    if number < 0:
        raise ValueError("base62 takes non-negative numbers")
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    text = "".join(reversed(digits)).rjust(width, "0")
    if len(text) > width:
        raise ValueError(f"{len(text)} base62 digits do not fit in {width}")
    return text


_PAIRS = [(a + b).encode() for a in ALPHABET for b in ALPHABET]  # every 2-digit base62


def _check(prefix_and_body: bytes) -> bytes:
    n = zlib.crc32(prefix_and_body)  # < 2**32 < 62**6: six digits always
    # three table look-ups instead of six divisions: this runs on every verification
    return _PAIRS[n // 14776336] + _PAIRS[n // 3844 % 3844] + _PAIRS[n % 3844]


def check(prefix_and_body: str) -> str:
    """The 6-character base62 CRC32 of the ASCII bytes of `<prefix>_<body>`."""
    return _check(prefix_and_body.encode("ascii")).decode("ascii")


def generate(prefix: str) -> str:
    """A new key: 256 bits from `secrets`, in the contract's format."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix {prefix!r} does not match {PREFIX_PATTERN}")
    body = base62(int.from_bytes(secrets.token_bytes(32), "big"), BODY_LENGTH)
    head = f"{prefix}_{body}"
    return head + check(head)


def well_formed(token: str | bytes) -> bool:
    """Shape and checksum are right. Cheap; says nothing about whether the key exists.
    Takes the ASCII bytes as a gateway sends them, or text."""
    if isinstance(token, str):
        if not token.isascii():
            return False
        token = token.encode("ascii")
    if len(token) > MAX_LENGTH or _SHAPE.fullmatch(token) is None:
        return False
    # the checksum is of public text, not a secret: a plain comparison is right here
    return _check(token[:-CHECK_LENGTH]) == token[-CHECK_LENGTH:]


def prefix_of(token: str) -> str:
    return token.partition("_")[0]


def last_characters(token: str) -> str:
    return token[-LAST_CHARACTERS:]


def preview(prefix: str, last: str) -> str:
    """What people may see of a key: `kw_...x9Qa`."""
    return f"{prefix}_...{last}"
