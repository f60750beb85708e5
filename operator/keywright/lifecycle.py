"""Given an ApiKey, what exists and the time, decide what to do. Pure: `now` is a parameter.

Owns: phases, conditions, which events a change deserves, when a key must be issued, how a
Secret written before a crash is adopted, and the next instant the key needs attention.
Must not: do I/O, generate keys, or see a plaintext: the Secret is known only by its
metadata (`SecretView`).

Issuing is two steps so that a crash between them is harmless: the Secret is written
first, carrying the hash and revision as annotations; the status is then derived from
those annotations ("adopted"). A restart after the first step adopts the same Secret, so
there is never a hash without its Secret, nor a second plaintext for one revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keywright import conditions, durations, models, tokens

MANAGER = "keywright"
MANAGED_BY = "app.kubernetes.io/managed-by"
APIKEY_LABEL = "keywright.dev/apikey"
HASH_ANNOTATION = "keywright.dev/hash"
REVISION_ANNOTATION = "keywright.dev/revision"
LAST_CHARACTERS_ANNOTATION = "keywright.dev/last-characters"
ISSUED_AT_ANNOTATION = "keywright.dev/issued-at"

NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True)
class SecretView:
    """What the operator knows of a Secret without reading the plaintext it holds."""

    exists: bool
    owner_uid: str | None = None
    hash: str | None = None
    revision: int | None = None
    last_characters: str | None = None
    issued_at: str | None = None
    has_key: bool = False
    data_changed_by_others: bool = False


MISSING = SecretView(exists=False)


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime
    spec: models.ApiKeySpec | models.SpecError
    status: models.ApiKeyStatus
    secret: SecretView
    default_prefix: str


@dataclass(frozen=True)
class Issue:
    """Write a new key into the Secret (create it, or replace our own unusable one)."""

    secret_name: str
    data_key: str
    prefix: str
    revision: int
    labels: dict[str, str]
    annotations: dict[str, str]
    replace: bool


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    issue: Issue | None = None
    status: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    next_due: datetime | None = None


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def secret_name(o: Observed) -> str:
    if o.status.secretName:
        return o.status.secretName  # fixed at issue: a Secret never moves under a key
    spec = o.spec if isinstance(o.spec, models.ApiKeySpec) else None
    return (spec.secret.name if spec else None) or o.name


def view_secret(raw: dict[str, Any] | None, data_key: str) -> SecretView:
    """A SecretView of a Secret as the API returns it (camelCase dict), or MISSING."""
    if raw is None:
        return MISSING
    meta = raw.get("metadata") or {}
    notes = meta.get("annotations") or {}
    owner = next((ref.get("uid") for ref in meta.get("ownerReferences") or []
                  if ref.get("controller")), None)
    revision = notes.get(REVISION_ANNOTATION, "")
    foreign = any(
        entry.get("manager") != MANAGER
        and f"f:{data_key}" in ((entry.get("fieldsV1") or {}).get("f:data") or {})
        for entry in meta.get("managedFields") or []
    )
    return SecretView(
        exists=True,
        owner_uid=owner,
        hash=notes.get(HASH_ANNOTATION),
        revision=int(revision) if revision.isdigit() else None,
        last_characters=notes.get(LAST_CHARACTERS_ANNOTATION),
        issued_at=notes.get(ISSUED_AT_ANNOTATION),
        has_key=bool((raw.get("data") or {}).get(data_key)),
        data_changed_by_others=foreign,
    )


def decide(o: Observed, now: datetime) -> Plan:
    if isinstance(o.spec, models.SpecError):
        return _failed(o, now, "InvalidSpec", str(o.spec))
    spec = o.spec
    s = o.secret
    name = secret_name(o)
    if s.exists and s.owner_uid != o.uid:
        return _failed(o, now, "SecretConflict",
                       f"Secret {name} exists and is not owned by this ApiKey; "
                       "Keywright never overwrites it. Delete it or set spec.secret.name")
    expires = _expires_at(o, spec)
    current = o.status.revision or 0
    if s.exists and s.hash and s.revision and s.revision > current and s.last_characters:
        return _adopt(o, spec, now, expires)
    if not o.status.hash:
        if expires is not None and now >= expires:
            return _never_issued_expired(o, now, expires)
        return Plan(issue=Issue(
            secret_name=name,
            data_key=spec.secret.key,
            prefix=spec.prefix or o.default_prefix,
            revision=current + 1,
            labels={**spec.secret.labels, MANAGED_BY: MANAGER, APIKEY_LABEL: o.name},
            annotations=dict(spec.secret.annotations),
            replace=s.exists,
        ))
    return _steady(o, spec, now, expires, events=())


def _expires_at(o: Observed, spec: models.ApiKeySpec) -> datetime | None:
    if o.status.createdAt:  # fixed at creation: a later spec edit never moves it
        return parse_time(o.status.expiresAt) if o.status.expiresAt else None
    lifetime = durations.parse_expiration(spec.expiration)
    return o.created + lifetime if lifetime is not None else None


def _adopt(o: Observed, spec: models.ApiKeySpec, now: datetime,
           expires: datetime | None) -> Plan:
    s = o.secret
    assert s.revision is not None
    assert s.last_characters is not None
    prefix = spec.prefix or o.default_prefix
    issued = dict(
        revision=s.revision, hash=s.hash, prefix=prefix, lastCharacters=s.last_characters,
        keyPreview=tokens.preview(prefix, s.last_characters), secretName=secret_name(o),
        createdAt=o.status.createdAt or timestamp(o.created),
        expiresAt=timestamp(expires) if expires else None,
    )
    adopted = o.status.model_copy(update=issued)
    event = Event(NORMAL, "Issued", f"Issued key {issued['keyPreview']} (revision "
                  f"{s.revision}) into Secret {issued['secretName']}")
    return _steady(o, spec, now, expires, events=(event,), base=adopted,
                   extra={k: v for k, v in issued.items() if v is not None})


def _steady(o: Observed, spec: models.ApiKeySpec, now: datetime, expires: datetime | None,
            events: tuple[Event, ...], base: models.ApiKeyStatus | None = None,
            extra: dict[str, Any] | None = None) -> Plan:
    status = base or o.status
    preview = status.keyPreview or ""
    expired = expires is not None and now >= expires
    if expired:
        phase, ready = "Expired", conditions.false("Ready", "Expired",
                                                   f"key expired at {status.expiresAt}")
    elif not spec.active:
        phase, ready = "Inactive", conditions.false("Ready", "Deactivated",
                                                    "spec.active is false")
    else:
        until = f"until {status.expiresAt}" if expires else "and never expires"
        phase, ready = "Active", conditions.true("Ready", "Active",
                                                 f"key {preview} is valid {until}")
    expiry = (conditions.true("Expired", "Expired", f"expired at {status.expiresAt}")
              if expired else conditions.false(
                  "Expired", "NotExpired",
                  f"expires at {status.expiresAt}" if expires else "expiration is Never"))
    synced = _secret_condition(o, status)
    new_conditions = conditions.merge(status.conditions, [ready, synced, expiry], now,
                                      o.generation)
    more = list(events) + _transition_events(o.status, phase, synced, expires, status)
    if o.generation != o.status.observedGeneration and o.status.createdAt:
        wanted = durations.parse_expiration(spec.expiration)
        moved = (o.created + wanted) if wanted is not None else None
        if moved != expires:
            more.append(Event(WARNING, "ExpirationImmutable",
                              f"spec.expiration is now {spec.expiration}, but expiration is "
                              f"fixed at creation: expiresAt stays "
                              f"{status.expiresAt or 'absent (Never)'}"))
    patch: dict[str, Any] = {**(extra or {}), "phase": phase,
                             "observedGeneration": o.generation,
                             "conditions": [c.model_dump(exclude_none=True)
                                            for c in new_conditions]}
    return Plan(status=_changed(o.status, patch), events=tuple(more),
                next_due=expires if expires is not None and not expired else None)


def _secret_condition(o: Observed, status: models.ApiKeyStatus) -> models.Condition:
    s = o.secret
    name = status.secretName or secret_name(o)
    if not s.exists:
        return conditions.false("SecretSynced", "SecretMissing",
                                f"Secret {name} is gone; the key is unchanged: request a "
                                "rotation to write a new one")
    problems = []
    if s.hash != status.hash or s.revision != status.revision:
        problems.append("its hash or revision annotation does not match status")
    if not s.has_key:
        problems.append("its data key is missing or empty")
    if s.data_changed_by_others:
        problems.append("its data was written by someone other than Keywright")
    if problems:
        return conditions.false("SecretSynced", "SecretModified",
                                f"Secret {name} was altered: {'; '.join(problems)}. The key "
                                "is unchanged: request a rotation to write a new one")
    return conditions.true("SecretSynced", "Synced", f"Secret {name} holds revision "
                           f"{status.revision}")


def _transition_events(old: models.ApiKeyStatus, phase: str, synced: models.Condition,
                       expires: datetime | None, status: models.ApiKeyStatus) -> list[Event]:
    events = []
    if old.phase != phase:
        if phase == "Expired":
            events.append(Event(NORMAL, "Expired", f"Key {status.keyPreview} expired at "
                                f"{status.expiresAt}"))
        elif phase == "Inactive":
            events.append(Event(NORMAL, "Deactivated", f"Key {status.keyPreview} deactivated"))
        elif phase == "Active" and old.phase == "Inactive":
            events.append(Event(NORMAL, "Activated", f"Key {status.keyPreview} activated"))
    before = conditions.find(old.conditions, "SecretSynced")
    if synced.status == "False" and (before is None or before.reason != synced.reason):
        events.append(Event(WARNING, synced.reason, synced.message))
    elif synced.status == "True" and before is not None and before.status == "False":
        events.append(Event(NORMAL, "SecretSynced", synced.message))
    return events


def _failed(o: Observed, now: datetime, reason: str, message: str) -> Plan:
    ready = conditions.false("Ready", reason, message)
    found = [ready]
    if reason == "SecretConflict":
        found.append(conditions.false("SecretSynced", reason, message))
    merged = conditions.merge(o.status.conditions, found, now, o.generation)
    before = conditions.find(o.status.conditions, "Ready")
    events = () if before is not None and (before.reason, before.message) == (reason, message) \
        else (Event(WARNING, reason, message),)
    patch = {"phase": "Failed", "observedGeneration": o.generation,
             "conditions": [c.model_dump(exclude_none=True) for c in merged]}
    return Plan(status=_changed(o.status, patch), events=events)


def _never_issued_expired(o: Observed, now: datetime, expires: datetime) -> Plan:
    message = f"expired at {timestamp(expires)} before a key was issued; none was"
    merged = conditions.merge(o.status.conditions, [
        conditions.false("Ready", "Expired", message),
        conditions.true("Expired", "Expired", message)], now, o.generation)
    patch = {"phase": "Expired", "observedGeneration": o.generation,
             "createdAt": timestamp(o.created), "expiresAt": timestamp(expires),
             "conditions": [c.model_dump(exclude_none=True) for c in merged]}
    events = () if o.status.phase == "Expired" else (Event(NORMAL, "Expired", message),)
    return Plan(status=_changed(o.status, patch), events=events)


def _changed(old: models.ApiKeyStatus, patch: dict[str, Any]) -> dict[str, Any]:
    """Only the fields whose value differs: an unchanged status costs no API write."""
    current = old.model_dump(exclude_none=True)
    return {k: v for k, v in patch.items() if current.get(k) != v}
