"""Keys for the verifier's tables: a pepper set, a fixed clock, three keys, and an ApiKey
as the operator leaves it (its hash in status)."""

from __future__ import annotations

import ipaddress
from typing import Any

from keywright.core import hashing, tokens
from tests.support import manifests

PEPPERS = hashing.Peppers("v1", {"v1": b"p" * 32, "v2": b"q" * 32})
NOW = 1_800_000_000.0  # 2027-01-15
KEY = tokens.generate("kw")
OLD = tokens.generate("kw")
OTHER = tokens.generate("kw")
PROXY = (ipaddress.ip_network("10.0.0.0/8"),)


def apikey(name: str = "billing", namespace: str = "pay", *, key: str = KEY,
           version: str = "v1", previous: list[dict[str, Any]] | None = None,
           phase: str = "Active", expires: str | None = "2027-06-01T00:00:00Z",
           deactivated: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "revision": 2, "lastCharacters": key[-4:],
                              "hash": hashing.digest(key, PEPPERS, version),
                              "previous": previous or []}
    if expires:
        status["expiresAt"] = expires
    if deactivated:
        status["deactivated"] = deactivated
    return manifests.apikey(name, namespace, status=status, **{
        "expiration": "90d", "scopes": ["Reviews.Write", "Repos.Read"], **spec})
