"""The verifier's in-memory index: hash -> what a decision needs. No I/O.

Owns: turning ApiKey objects (as the API returns them) into `KeyRecord`s, one per valid
hash (the current key and each key still in its grace period), and swapping them in
atomically per ApiKey. Reads no Secret and never sees a plaintext.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from keywright import durations, hashing, models, times

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class KeyRecord:
    namespace: str
    name: str
    revision: int
    last_characters: str
    scopes: frozenset[str]
    usable: bool  # active, and not Failed
    expires_at: float | None  # epoch seconds; None for Never
    retires_at: float | None  # a previous key's end of grace; None for the current key
    allowlist: tuple[Network, ...]  # empty: any origin
    context: tuple[tuple[str, str], ...]
    rate: tuple[int, float] | None  # (requests, period in seconds)


def records(apikey: Mapping[str, Any]) -> list[KeyRecord]:
    """The records an ApiKey contributes: none until it has a hash; a spec the operator
    could not accept makes its keys unusable rather than unchecked."""
    meta, status = apikey.get("metadata") or {}, apikey.get("status") or {}
    if not status.get("hash"):
        return []
    try:
        spec: models.ApiKeySpec | None = models.validate_spec(apikey.get("spec"))
    except models.SpecError:
        spec = None
    expires = status.get("expiresAt")
    current = KeyRecord(
        namespace=meta.get("namespace", ""), name=meta.get("name", ""),
        revision=int(status.get("revision") or 1),
        last_characters=str(status.get("lastCharacters") or ""),
        scopes=frozenset(spec.scopes) if spec else frozenset(),
        usable=bool(spec and spec.active and status.get("phase") != "Failed"),
        expires_at=times.parse(expires).timestamp() if expires else None,
        retires_at=None,
        allowlist=tuple(ipaddress.ip_network(n) for n in spec.ipAllowlist) if spec else (),
        context=tuple(sorted(spec.context.items())) if spec else (),
        rate=(spec.rateLimit.requests, durations.parse(spec.rateLimit.period).total_seconds())
        if spec and spec.rateLimit else None,
    )
    return [current] + [
        dataclasses.replace(current, revision=int(p["revision"]),
                            last_characters=str(p["lastCharacters"]),
                            retires_at=times.parse(p["retiresAt"]).timestamp())
        for p in status.get("previous") or []]


def hashes(apikey: Mapping[str, Any]) -> list[str]:
    status = apikey.get("status") or {}
    current = [status["hash"]] if status.get("hash") else []
    return current + [p["hash"] for p in status.get("previous") or []]


class Index:
    """Thread-safe for one writer (the watch) and many readers (requests). A watch event
    changes only that ApiKey's entries; the outer mapping is replaced, never resized in
    place, so a reader iterating it never sees it change under it."""

    def __init__(self) -> None:
        self._by_object: dict[tuple[str, str], tuple[str, ...]] = {}
        # pepper version -> raw HMAC bytes -> record: what a request looks up, so the
        # hot path never formats a hash string
        self._tables: dict[str, dict[bytes, KeyRecord]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_object)

    @property
    def tables(self) -> dict[str, dict[bytes, KeyRecord]]:
        """Per pepper version in use, raw HMAC-SHA-256 -> record."""
        return self._tables

    def upsert(self, apikey: Mapping[str, Any]) -> None:
        meta = apikey.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        new = dict(zip(hashes(apikey), records(apikey), strict=True))
        with self._lock:
            self._drop(self._by_object.pop(key, ()))
            for hashed, record in new.items():
                self._add(hashed, record)
            if new:
                self._by_object[key] = tuple(new)

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._drop(self._by_object.pop((namespace, name), ()))

    def replace_all(self, apikeys: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._by_object, self._tables = {}, {}
        for apikey in apikeys:
            self.upsert(apikey)

    def _add(self, hashed: str, record: KeyRecord) -> None:
        found = _split(hashed)
        if found is None:
            return
        version, raw = found
        if version not in self._tables:
            self._tables = {**self._tables, version: {}}
        self._tables[version][raw] = record

    def _drop(self, hashed_all: Iterable[str]) -> None:
        for hashed in hashed_all:
            found = _split(hashed)
            if found is None:
                continue
            version, raw = found
            table = self._tables.get(version, {})
            table.pop(raw, None)
            if not table and version in self._tables:
                self._tables = {v: t for v, t in self._tables.items() if v != version}


def _split(hashed: str) -> tuple[str, bytes] | None:
    """`hmac-sha256:v1:<base64url>` -> ("v1", the 32 raw bytes)."""
    version = hashing.version_of(hashed)
    if version is None:
        return None
    return version, base64.urlsafe_b64decode(hashed.rpartition(":")[2] + "==")
