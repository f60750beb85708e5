"""Sealing a new key to age recipients: the only module that imports the age library.

Owns: encrypting a freshly generated key to its X25519 recipients in age's armored
format, which Debian's stock `age -d -i KEYFILE` opens. Recipients arrive checked by
core/recipients.py (the form the age tool accepts).
Must not: keep, log or return the plaintext; decrypt (the operator holds no identity).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyrage


def seal(token: str, recipients: Sequence[str]) -> str:
    """The key, age-encrypted to every recipient, ASCII-armored."""
    parsed = [pyrage.x25519.Recipient.from_str(recipient) for recipient in recipients]
    return pyrage.encrypt(token.encode("ascii"), parsed, armored=True).decode("ascii")
