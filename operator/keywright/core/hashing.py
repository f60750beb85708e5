"""Peppers and the HMAC-SHA-256 hash of a key.

Owns: the hash format `hmac-sha256:<version>:<base64url, no padding>`, the pepper set
(versions `v1`, `v2`, ... and the `active` one), and constant-time comparison. Pure.
Must not: log, print or put into an exception message a pepper or a key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _hashlib import HASH

ALGORITHM = "hmac-sha256"
PEPPER_BYTES = 32
ACTIVE = "active"
_VERSION = re.compile(r"v[1-9][0-9]*")
Pads = tuple["HASH", "HASH"]  # SHA-256 states after the inner and the outer key pad


class PepperError(ValueError):
    """The pepper Secret is unusable; the message names the data key, never a value."""


@dataclass(frozen=True)
class Peppers:
    active: str
    versions: Mapping[str, bytes] = field(repr=False)

    def __repr__(self) -> str:  # never show the bytes, even in a debugger or traceback
        return f"Peppers(active={self.active!r}, versions={sorted(self.versions)!r})"

    @classmethod
    def new(cls) -> Peppers:
        return cls("v1", {"v1": secrets.token_bytes(PEPPER_BYTES)})

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> Peppers:
        """From the pepper Secret as the API returns it (its `data` base64-encoded)."""
        try:
            data = {key: base64.b64decode(value, validate=True)
                    for key, value in (secret.get("data") or {}).items()}
        except (binascii.Error, TypeError):
            raise PepperError("pepper Secret's data is not base64") from None
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Mapping[str, bytes]) -> Peppers:
        """From the pepper Secret's decoded data: `v1`, `v2`, ... and `active`."""
        versions = {k: v for k, v in data.items() if _VERSION.fullmatch(k)}
        unknown = sorted(set(data) - set(versions) - {ACTIVE})
        if unknown:
            raise PepperError(f"pepper Secret has unexpected data keys {unknown}")
        for name, value in versions.items():
            if len(value) < PEPPER_BYTES:
                raise PepperError(f"pepper {name} is shorter than {PEPPER_BYTES} bytes")
        active = data.get(ACTIVE, b"").decode("ascii", "replace").strip()
        if active not in versions:
            raise PepperError(f"pepper Secret's 'active' names {active!r}, which it lacks")
        return cls(active, versions)

    @functools.cached_property
    def pads(self) -> dict[str, Pads]:
        """Per version, SHA-256 states that have absorbed the key's inner and outer pads
        (RFC 2104), ready to `.copy()`. HMAC from them gives the same bytes as
        `hmac.digest`, about twice as fast, because the key is not re-absorbed on every
        call; the verifier's decision computes it so on its hot path."""
        return {name: _pads(key) for name, key in self.versions.items()}

    def to_data(self) -> dict[str, bytes]:
        return {**self.versions, ACTIVE: self.active.encode("ascii")}


_BLOCK = 64  # SHA-256's block size


def _pads(key: bytes) -> Pads:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in key)),
            hashlib.sha256(bytes(b ^ 0x5C for b in key)))


def digest(token: str, peppers: Peppers, version: str | None = None) -> str:
    """The hash of `token` under the active pepper (or the given version)."""
    version = version or peppers.active
    mac = hmac.digest(peppers.versions[version], token.encode("utf-8"), "sha256")  # C fast path
    encoded = base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
    return f"{ALGORITHM}:{version}:{encoded}"


def version_of(hashed: str) -> str | None:
    algorithm, _, rest = hashed.partition(":")
    version = rest.partition(":")[0]
    return version if algorithm == ALGORITHM and _VERSION.fullmatch(version) else None


def matches(token: str, hashed: str, peppers: Peppers) -> bool:
    """Whether `token` hashes to `hashed`, compared in constant time."""
    version = version_of(hashed)
    if version is None or version not in peppers.versions:
        return False
    return hmac.compare_digest(digest(token, peppers, version).encode(),
                               hashed.encode("utf-8", "replace"))
