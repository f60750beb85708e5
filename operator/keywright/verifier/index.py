"""The verifier's in-memory index: hash -> what a decision needs. No I/O.

Owns: turning ApiKey objects (as the API returns them) into `KeyRecord`s, one per valid
hash (the current key and each key still in its grace period), and swapping them in
atomically per ApiKey. Reads no Secret and never sees a plaintext.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from keywright.core import durations, hashing, limits, models, names, permissions

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class KeyRecord:
    namespace: str
    name: str
    revision: int
    last_characters: str
    scopes: frozenset[str]
    granted: frozenset[str]  # the scopes with what they imply: `X.Write` grants `X.Read`
    usable: bool  # active, not deactivated by the operator, and not Failed
    expires_at: float | None  # epoch seconds; None for Never
    retires_at: float | None  # a previous key's end of grace; None for the current key
    allowlist: tuple[Network, ...]  # empty: any origin
    context: tuple[tuple[str, str], ...]
    rate: tuple[int, float] | None  # (requests, period in seconds)
    quota: limits.Quota | None = None
    reset_token: str = ""  # the reset-quota annotation's value: a new one refills
    seed: limits.Seed = limits.NO_SEED  # status.usage: where a quota restarts from
    # the 200 answer's identity headers, made once here rather than on every request
    identity: tuple[tuple[bytes, bytes], ...] = ()
    roles: tuple[str, ...] = ()  # spec.roles: ApiKeyRoles of its namespace


SHARED_SPECS = 4096  # specs whose parts are kept for the next key with an equal spec


@dataclass(frozen=True, slots=True)
class _Parts:
    """What a record takes from its spec alone: made once per distinct spec and shared
    by every key with an equal one (at 100,000 keys from a few templates, a few copies
    instead of 100,000 of each frozenset and header)."""
    active: bool
    scopes: frozenset[str]
    granted: frozenset[str]
    allowlist: tuple[Network, ...]
    context: tuple[tuple[str, str], ...]
    rate: tuple[int, float] | None
    quota: limits.Quota | None
    roles: tuple[str, ...]
    headers: tuple[tuple[bytes, bytes], ...]  # the identity headers after name


_parts_made: dict[str, _Parts] = {}
_parts_lock = threading.Lock()
_namespace_headers: dict[str, tuple[bytes, bytes]] = {}


def _parts(spec_text: str, raw: Any) -> _Parts:
    """The spec's parts, from those kept (by the spec's canonical JSON) or made now; a
    spec the operator could not accept makes its keys unusable rather than unchecked."""
    found = _parts_made.get(spec_text)
    if found is not None:
        return found
    try:
        spec: models.ApiKeySpec | None = models.validate_spec(raw)
    except models.SpecError:
        spec = None
    scopes = frozenset(spec.scopes) if spec else frozenset()
    context = tuple(sorted(spec.context.items())) if spec else ()
    roles = tuple(spec.roles) if spec else ()
    static = () if roles else permission_headers(permissions.effective(scopes, (), {}, {}))
    made = _Parts(
        active=bool(spec and spec.active), scopes=scopes,
        granted=implied(scopes),
        allowlist=tuple(ipaddress.ip_network(n) for n in spec.ipAllowlist) if spec else (),
        context=context,
        rate=(spec.rateLimit.requests, durations.parse(spec.rateLimit.period).total_seconds())
        if spec and spec.rateLimit else None,
        quota=_quota(spec.quota) if spec and spec.quota else None,
        roles=roles,
        headers=((b"x-keywright-scopes", ",".join(sorted(scopes)).encode()),
                 *((f"x-keywright-context-{key}".lower().encode(), value.encode())
                   for key, value in context), *static))
    with _parts_lock:
        while len(_parts_made) >= SHARED_SPECS:  # the oldest goes: a bound, not a cache
            _parts_made.pop(next(iter(_parts_made)))
        _parts_made[spec_text] = made
    return made


def _spec_text(apikey: Mapping[str, Any]) -> str:
    return json.dumps(apikey.get("spec"), sort_keys=True, separators=(",", ":"))


def records(apikey: Mapping[str, Any], spec_text: str | None = None) -> list[KeyRecord]:
    """The records an ApiKey contributes: none until it has a hash; a spec the operator
    could not accept makes its keys unusable rather than unchecked."""
    meta, status = apikey.get("metadata") or {}, apikey.get("status") or {}
    if not status.get("hash"):
        return []
    parts = _parts(_spec_text(apikey) if spec_text is None else spec_text,
                   apikey.get("spec"))
    expires = status.get("expiresAt")
    namespace, name = sys.intern(str(meta.get("namespace", ""))), str(meta.get("name", ""))
    current = KeyRecord(
        namespace=namespace, name=name,
        revision=int(status.get("revision") or 1),
        last_characters=str(status.get("lastCharacters") or ""),
        scopes=parts.scopes, granted=parts.granted,
        # status.deactivated: the operator keeps it from working (a policy it breaks)
        usable=parts.active and status.get("phase") != "Failed"
        and not status.get("deactivated"),
        expires_at=_epoch(expires) if expires else None,
        retires_at=None,
        allowlist=parts.allowlist, context=parts.context, rate=parts.rate,
        quota=parts.quota,
        reset_token=_reset_token(meta),
        seed=_seed(status.get("usage"), _reset_token(meta)),
        identity=(_namespace_header(namespace), (b"x-keywright-name", name.encode()),
                  *parts.headers),
        roles=parts.roles,
    )
    return [current] + [
        dataclasses.replace(current, revision=int(p["revision"]),
                            last_characters=str(p["lastCharacters"]),
                            retires_at=_epoch(p["retiresAt"]))
        for p in status.get("previous") or []]


def _namespace_header(namespace: str) -> tuple[bytes, bytes]:
    found = _namespace_headers.get(namespace)
    if found is None:
        found = _namespace_headers.setdefault(
            namespace, (b"x-keywright-namespace", namespace.encode()))
    return found


def permission_headers(found: permissions.Effective, asked: frozenset[str] = frozenset(),
                       ) -> tuple[tuple[bytes, bytes], ...]:
    """X-Keywright-Roles (the roles found, when there are any), X-Keywright-Permissions
    (every Area.Action granted, implied ones included) and X-Keywright-Filters (the row
    filters of the areas asked for, all when none was)."""
    roles = ((b"x-keywright-roles", ",".join(found.roles).encode()),) if found.roles else ()
    return (*roles,
            (b"x-keywright-permissions", ",".join(sorted(found.granted)).encode()),
            (b"x-keywright-filters", permissions.filters_header(found, asked)))


def implied(scopes: frozenset[str]) -> frozenset[str]:
    """The scopes and what they imply (core/permissions.py's grammar)."""
    return permissions.implied_scopes(scopes)


def fingerprint(apikey: Mapping[str, Any], spec_text: str | None = None) -> bytes:
    """A digest of what `records` reads of an ApiKey: equal fingerprints, equal records
    (16 bytes kept per key rather than the text)."""
    status = apikey.get("status") or {}
    reset = ((apikey.get("metadata") or {}).get("annotations") or {}).get(
        names.RESET_QUOTA_ANNOTATION)
    text = json.dumps([reset, *(status.get(k) for k in _READ)], sort_keys=True)
    spec = _spec_text(apikey) if spec_text is None else spec_text
    return hashlib.blake2b(f"{spec}\n{text}".encode(), digest_size=16).digest()


# status.usage too: where a quota restarts if the store lost its data (a key with a
# quota is re-indexed when the verifiers write it, at most once a minute)
_READ = ("hash", "phase", "revision", "lastCharacters", "expiresAt", "previous", "usage",
         "deactivated")


def entries(apikey: Mapping[str, Any], spec_text: str | None = None,
            ) -> dict[tuple[str, bytes], KeyRecord]:
    """(pepper version, raw hash) -> record for each key the ApiKey holds. A status this
    cannot read (edited by hand, say) gives no entries, so its keys are refused, and is
    logged; it never stops the other ApiKeys from being indexed."""
    try:
        found = {}
        for hashed, record in zip(hashes(apikey), records(apikey, spec_text), strict=True):
            split = _split(hashed)
            if split is not None:
                found[split] = record
        return found
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        meta = apikey.get("metadata") or {}
        log.warning("ApiKey %s/%s has a status the verifier cannot read (%s: %s); its keys "
                    "are refused until it is fixed", meta.get("namespace"), meta.get("name"),
                    type(exc).__name__, exc)
        return {}


def _quota(quota: models.Quota) -> limits.Quota:
    refill = quota.refill
    every = round(durations.parse(refill.every).total_seconds() * limits.MICROS) if refill \
        else 0
    return limits.Quota(quota.limit, every, (refill.amount or 0) if refill else 0)


def _reset_token(meta: Mapping[str, Any]) -> str:
    return str((meta.get("annotations") or {}).get(names.RESET_QUOTA_ANNOTATION, ""))


def _seed(usage: Any, reset_token: str) -> limits.Seed:
    """status.usage as the verifier last wrote it: where a quota restarts if the limits
    store lost its data; nothing if the credits there were counted before the latest
    reset (the reset gives `limit` credits, whatever was spent before it)."""
    if not isinstance(usage, Mapping) or str(usage.get("resetQuota") or "") != reset_token:
        return limits.NO_SEED
    try:
        return limits.Seed(int(usage["remaining"]),
                           round(_epoch(str(usage["refilledAt"])) * limits.MICROS))
    except (KeyError, TypeError, ValueError):
        return limits.NO_SEED


def _epoch(text: str) -> float:
    """RFC 3339 as Kubernetes writes it, with or without fractions of a second."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def hashes(apikey: Mapping[str, Any]) -> list[str]:
    status = apikey.get("status") or {}
    current = [status["hash"]] if status.get("hash") else []
    return current + [p["hash"] for p in status.get("previous") or []]


RESOLVED_KEPT = 65536  # resolved permissions cached, one per KeyRecord with roles


class Index:
    """Thread-safe for one writer per namespace set (the watches) and many readers
    (requests). Readers only `.get()` from the per-version tables; a table set that
    gains or loses a version is replaced, never resized in place, and a re-list swaps
    in tables built aside, so a request never sees a key missing in between."""

    def __init__(self) -> None:
        self._by_object: dict[tuple[str, str], tuple[tuple[str, bytes], ...]] = {}
        # which ApiKey object holds each name: another of the same name is another key
        self._uids: dict[tuple[str, str], str] = {}
        # pepper version -> raw HMAC bytes -> record: what a request looks up, so the
        # hot path never formats a hash string
        self._tables: dict[str, dict[bytes, KeyRecord]] = {}
        self._fingerprints: dict[tuple[str, str], bytes] = {}
        self._areas: frozenset[str] | None = None  # worked out again after a change
        self._lock = threading.Lock()
        # namespace -> ApiKeyRole name -> its permissions (replaced, never changed in
        # place), and per namespace a version each change of its roles bumps, after the
        # swap: a key's resolved permissions are worked out again on its next request
        self._roles: dict[str, dict[str, tuple[permissions.Permission, ...]]] = {}
        self._role_versions: dict[str, int] = {}
        self._resolved: dict[int, tuple[KeyRecord, int, permissions.Effective]] = {}
        self._headers: dict[tuple[int, frozenset[str]], tuple[
            permissions.Effective, tuple[tuple[bytes, bytes], ...]]] = {}

    def __len__(self) -> int:
        """ApiKeys with at least one usable hash."""
        return len(self._by_object)

    def names(self, namespace: str | None = None) -> set[tuple[str, str]]:
        """(namespace, name) of the ApiKeys indexed, in one namespace or all."""
        with self._lock:
            return {k for k in self._by_object if namespace is None or k[0] == namespace}

    def holds(self, namespace: str, name: str) -> bool:
        """Whether that ApiKey has a key indexed (no lock: one dict lookup)."""
        return (namespace, name) in self._by_object

    def uids(self, namespace: str | None = None) -> dict[tuple[str, str], str]:
        """(namespace, name) -> metadata.uid of the ApiKeys indexed, in one namespace or
        all: a name that comes back with another uid was deleted and created again."""
        with self._lock:
            return {k: v for k, v in self._uids.items() if namespace is None or k[0] == namespace}

    def areas(self) -> frozenset[str]:
        """The areas some indexed key grants a scope in, or some role a permission in: a
        requirement outside them can never be met (a gateway's typo, not a caller's
        missing scope)."""
        found = self._areas
        if found is None:
            with self._lock:  # the watches add to the tables in place: iterate under it
                found = frozenset(
                    {scope.rpartition(".")[0] for table in self._tables.values()
                     for record in table.values() for scope in record.granted} |
                    {permission.area for roles in self._roles.values()
                     for granted in roles.values() for permission in granted})
                self._areas = found
        return found

    # -- roles ------------------------------------------------------------------------

    def effective(self, record: KeyRecord) -> permissions.Effective:
        """The key's effective permissions, its roles resolved in its namespace (worked
        out once per record and roles version)."""
        version = self._role_versions.get(record.namespace, 0)  # before the roles
        cached = self._resolved.get(id(record))
        if cached is not None and cached[0] is record and cached[1] == version:
            return cached[2]
        found = permissions.effective(record.scopes, record.roles,
                                      self._roles.get(record.namespace, {}),
                                      dict(record.context))
        if len(self._resolved) >= RESOLVED_KEPT:  # records replaced over time: anew
            self._resolved = {}
        self._resolved[id(record)] = (record, version, found)
        return found

    def role_headers(self, record: KeyRecord, asked: frozenset[str],
                     ) -> tuple[tuple[bytes, bytes], ...]:
        """permission_headers for a key with roles, made once per resolution and set of
        scopes asked (a gateway asks for the same few)."""
        found = self.effective(record)
        cached = self._headers.get((id(found), asked))
        if cached is not None and cached[0] is found:
            return cached[1]
        made = permission_headers(found, asked)
        if len(self._headers) >= RESOLVED_KEPT:
            self._headers = {}
        self._headers[(id(found), asked)] = (found, made)
        return made

    def set_role(self, namespace: str, name: str,
                 granted: tuple[permissions.Permission, ...] | None) -> None:
        """An ApiKeyRole as it is now; None (a spec that cannot be read) grants nothing,
        as if it were missing."""
        with self._lock:
            roles = dict(self._roles.get(namespace, {}))
            if granted is None:
                roles.pop(name, None)
            else:
                roles[name] = granted
            self._swap_roles(namespace, roles)

    def remove_role(self, namespace: str, name: str) -> None:
        self.set_role(namespace, name, None)

    def replace_roles(self, roles: Iterable[tuple[str, str,
                                                  tuple[permissions.Permission, ...] | None]],
                      namespace: str | None = None) -> None:
        """What a full list of ApiKeyRoles says, for the whole cluster or one namespace:
        (namespace, name, permissions or None) each."""
        fresh: dict[str, dict[str, tuple[permissions.Permission, ...]]] = {}
        for where, name, granted in roles:
            if granted is not None:
                fresh.setdefault(where, {})[name] = granted
        with self._lock:
            touched = set(fresh) | {ns for ns in self._roles
                                    if namespace is None or ns == namespace}
            for where in touched:
                self._swap_roles(where, fresh.get(where, {}))

    def _swap_roles(self, namespace: str,
                    roles: dict[str, tuple[permissions.Permission, ...]]) -> None:
        self._roles = {**self._roles, namespace: roles}  # then the version: see __init__
        self._role_versions[namespace] = self._role_versions.get(namespace, 0) + 1
        self._areas = None

    def hash_count(self) -> int:
        """Hashes indexed: current keys and keys in their grace period."""
        return sum(len(table) for table in self._tables.values())

    @property
    def tables(self) -> dict[str, dict[bytes, KeyRecord]]:
        """Per pepper version in use, raw HMAC-SHA-256 -> record."""
        return self._tables

    def upsert(self, apikey: Mapping[str, Any]) -> None:
        meta = apikey.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        spec_text = _spec_text(apikey)
        seen = fingerprint(apikey, spec_text)
        if self._fingerprints.get(key) == seen:
            return  # e.g. the verifier's own lastUsedAt patch coming back: nothing changed
        new = entries(apikey, spec_text)
        with self._lock:
            self._fingerprints[key] = seen
            old = self._by_object.pop(key, ())
            # add (or overwrite) before dropping, so a hash kept across the change (the
            # current key moving to `previous`, say) is never missing for a reader
            for hashed, record in new.items():
                self._tables = _add(self._tables, hashed, record)
            self._tables = _drop(self._tables, [h for h in old if h not in new])
            self._uids.pop(key, None)
            if new:
                self._by_object[key] = tuple(new)
                self._uids[key] = _uid(apikey)
            self._areas = None

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._fingerprints.pop((namespace, name), None)
            self._uids.pop((namespace, name), None)
            self._tables = _drop(self._tables, self._by_object.pop((namespace, name), ()))
            self._areas = None

    def replace_all(self, apikeys: Iterable[Mapping[str, Any]],
                    namespace: str | None = None) -> dict[tuple[str, str], str]:
        """What a full list says, for the whole cluster or for one namespace: built
        aside as the objects come (each dropped once read), then swapped in at once.
        Returns (namespace, name) -> uid of every ApiKey listed."""
        by_object: dict[tuple[str, str], tuple[tuple[str, bytes], ...]] = {}
        listed: dict[tuple[str, str], str] = {}
        fingerprints: dict[tuple[str, str], bytes] = {}
        tables: dict[str, dict[bytes, KeyRecord]] = {}
        for apikey in apikeys:  # the slow part (parsing specs), outside the lock
            meta = apikey.get("metadata") or {}
            key = (sys.intern(str(meta.get("namespace", ""))), str(meta.get("name", "")))
            spec_text = _spec_text(apikey)
            new = entries(apikey, spec_text)
            fingerprints[key] = fingerprint(apikey, spec_text)
            listed[key] = _uid(apikey)
            for hashed, record in new.items():
                tables = _add(tables, hashed, record)
            if new:
                by_object[key] = tuple(new)
        with self._lock:
            kept = {k: v for k, v in self._by_object.items()
                    if namespace is not None and k[0] != namespace}
            for version, table in self._tables.items():
                for raw, record in table.items():
                    if (record.namespace, record.name) in kept:
                        tables = _add(tables, (version, raw), record)
            kept.update(by_object)
            self._uids = {**{k: v for k, v in self._uids.items()
                             if namespace is not None and k[0] != namespace},
                          **{k: listed[k] for k in by_object}}
            self._by_object = kept
            self._tables = {v: t for v, t in tables.items() if t}
            self._fingerprints = {k: v for k, v in self._fingerprints.items()
                                  if namespace is not None and k[0] != namespace}
            self._fingerprints.update(fingerprints)
            self._areas = None
        return listed


def _uid(apikey: Mapping[str, Any]) -> str:
    return str((apikey.get("metadata") or {}).get("uid") or "")


def _add(tables: dict[str, dict[bytes, KeyRecord]], hashed: tuple[str, bytes],
         record: KeyRecord) -> dict[str, dict[bytes, KeyRecord]]:
    version, raw = hashed
    if version not in tables:
        tables = {**tables, version: {}}
    tables[version][raw] = record
    return tables


def _drop(tables: dict[str, dict[bytes, KeyRecord]],
          hashed_all: Iterable[tuple[str, bytes]]) -> dict[str, dict[bytes, KeyRecord]]:
    for version, raw in hashed_all:
        if version not in tables:
            continue
        tables[version].pop(raw, None)
        if not tables[version]:
            tables = {v: t for v, t in tables.items() if v != version}
    return tables


def _split(hashed: str) -> tuple[str, bytes] | None:
    """`hmac-sha256:v1:<base64url>` -> ("v1", the 32 raw bytes)."""
    version = hashing.version_of(hashed)
    if version is None:
        return None
    return sys.intern(version), base64.urlsafe_b64decode(hashed.rpartition(":")[2] + "==")
