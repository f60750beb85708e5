"""age X25519 recipients (`age1...`), as the age tool itself accepts them. Pure.

Owns: whether a string is a recipient a key may be sealed to: Bech32 (not Bech32m) with
the human-readable part `age`, a 32-byte payload with zero padding bits, all lower case,
62 characters. That is what Debian's `age -r` accepts; the encryption library accepts a
little more (an all-upper-case string, non-zero padding), which a person could then not
use with the stock tool, so admission holds to this.
Must not: encrypt, or import a crypto library (the controller's sealing does both).
"""

from __future__ import annotations

PREFIX = "age1"
LENGTH = 62  # "age1" and 58 characters: 52 of payload, 6 of checksum
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_HRP = "age"
NONE = ("spec.secret.create is false and no age recipient is given "
        "(spec.delivery.age.recipients): the key would reach no one")


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_GENERATOR):
            if (top >> bit) & 1:
                check ^= generator
    return check


def problem(text: str) -> str | None:
    """Why `text` is not an age X25519 recipient, in words; None when it is one."""
    if not text.startswith(PREFIX):
        return "must be an age X25519 recipient, age1 and 58 more characters " \
            "(the output of age-keygen -y)"
    if len(text) != LENGTH:
        return f"must be {LENGTH} characters long, not {len(text)}"
    try:
        data = [_CHARSET.index(c) for c in text[len(PREFIX):]]
    except ValueError:
        return "has a character outside Bech32's lower-case alphabet"
    expanded = [ord(c) >> 5 for c in _HRP] + [0] + [ord(c) & 31 for c in _HRP]
    if _polymod(expanded + data) != 1:
        return "has a wrong checksum: a character is mistyped or missing"
    accumulated = bits = 0
    payload = 0
    for value in data[:-6]:
        accumulated, bits = (accumulated << 5) | value, bits + 5
        while bits >= 8:
            bits -= 8
            payload += 1
    if payload != 32 or accumulated & ((1 << bits) - 1):
        return "does not hold a 32-byte X25519 public key"
    return None


def from_annotation(value: str | None) -> tuple[str, ...]:
    """The recipients an annotation lists (comma- or space-separated), each well formed;
    admission refuses an annotation with any other."""
    found = (part.strip() for part in (value or "").replace(",", " ").split())
    return tuple(dict.fromkeys(part for part in found if problem(part) is None))
