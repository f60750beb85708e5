"""The key format read independently from docs/reference/api.md: an oracle for tests.

Everything here is written out from the contract's text (prefix regex, 43 base62
characters of body, a 6-character base62 CRC32 check), never imported from the code
under test, so a constant wrong in both places cannot make a test agree with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
import zlib

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62
PREFIX = r"[a-z][a-z0-9]{1,15}"  # spec.prefix: ^[a-z][a-z0-9]{1,15}$
BODY_LENGTH = 43  # 256 random bits in base62
CHECK_LENGTH = 6  # CRC32 in base62
SCANNER_REGEX = r"\b[a-z][a-z0-9]{1,15}_[0-9A-Za-z]{49}\b"
LONGEST_KEY = 16 + 1 + BODY_LENGTH + CHECK_LENGTH  # a 16-character prefix: 66
SHORTEST_KEY = 2 + 1 + BODY_LENGTH + CHECK_LENGTH  # a 2-character prefix: 52


def base62(number: int, width: int) -> str:
    text = ""
    while number:
        number, digit = divmod(number, 62)
        text = ALPHABET[digit] + text
    return text.rjust(width, "0")


def decode(text: str) -> int:
    value = 0
    for character in text:
        value = value * 62 + ALPHABET.index(character)
    return value


def check(prefix_and_body: str) -> str:
    return base62(zlib.crc32(prefix_and_body.encode("ascii")), CHECK_LENGTH)


def make(prefix: str, body: str) -> str:
    """A key with a correct check for whatever prefix and body it is given."""
    head = f"{prefix}_{body}"
    return head + check(head)


def well_formed(text: str) -> bool:
    """Whether `text` has the contract's shape and a matching check."""
    match = re.fullmatch(rf"({PREFIX})_([{ALPHABET}]{{{BODY_LENGTH}}})([{ALPHABET}]{{6}})",
                         text)
    return match is not None and match.group(3) == check(f"{match.group(1)}_{match.group(2)}")


def hash_of(key: str, pepper: bytes, version: str) -> str:
    """`hmac-sha256:<version>:` + base64url, no padding, of HMAC-SHA-256(pepper, key)."""
    mac = hmac.new(pepper, key.encode("ascii"), hashlib.sha256).digest()
    return f"hmac-sha256:{version}:" + base64.urlsafe_b64encode(mac).decode().rstrip("=")
