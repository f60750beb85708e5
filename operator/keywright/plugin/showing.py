"""`--show`: a key shown once, with no plaintext at rest anywhere.

Owns: a throwaway age identity held in this process's memory only (never written to a
file), the recipient the ApiKey is sealed to for it, and opening what the operator
sealed to it.
Must not: write the identity or the key anywhere, or keep them past the command.
"""

from __future__ import annotations

import pyrage


class Throwaway:
    def __init__(self) -> None:
        self._identity = pyrage.x25519.Identity.generate()
        self.recipient = str(self._identity.to_public())

    def open(self, ciphertext: str) -> str:
        return pyrage.decrypt(ciphertext.encode("ascii"), [self._identity]).decode("ascii")
