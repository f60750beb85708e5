"""Given an ApiKey, what exists and the time, decide what to do. Pure: `now` is a parameter.

Owns: phases, conditions, which events a change deserves, when a key is issued or
rotated, how a Secret written before a crash is adopted, retirement of previous keys,
restarts of workloads, and the next instant the key needs attention.
Must not: do I/O, generate keys, or see a plaintext: the Secret is known only by its
metadata (`secretview.SecretView`).

Writing a key is two steps so that a crash between them is harmless: the Secret is
written first, carrying hash, revision and what the status needs as annotations; the
status is then derived from those annotations ("adopted"). A restart after the first step
adopts the same Secret, so there is never a hash without its Secret, nor a second
plaintext for one revision, and the key being replaced moves to `previous` in the same
status write that brings in its successor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keywright.core import (
    aging,
    compliance,
    conditions,
    durations,
    models,
    names,
    recipients,
    rotation,
    secretview,
    times,
    tokens,
)

NORMAL, WARNING = conditions.NORMAL, conditions.WARNING
NO_RECIPIENT = recipients.NONE
Event = conditions.Event
ROTATE = names.ROTATE_ANNOTATION
# A foreign Secret sends no event the operator watches (it watches only its own), so a
# conflict is looked at again: soon at first, then as often as it has lasted, up to a
# minute apart. Once the other Secret is gone, the key is issued within seconds.
CONFLICT_RECHECK = (timedelta(seconds=1), timedelta(seconds=60))


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    uid: str
    generation: int
    created: datetime
    spec: models.ApiKeySpec | models.SpecError
    status: models.ApiKeyStatus
    secret: secretview.SecretView
    default_prefix: str
    rotate_request: str | None = None  # the keywright.dev/rotate annotation
    facts: compliance.Facts = compliance.NONE  # its namespace's policies, its roles
    seal_to: tuple[str, ...] = ()  # the keywright.dev/seal-to annotation's recipients
    reactivate_request: str | None = None  # the keywright.dev/reactivate annotation
    watch: aging.Watch = aging.DEFAULT  # the operator's expiry warnings and unused settings


@dataclass(frozen=True)
class Issue:
    """Write a new key into the Secret: create it, or replace the data of our own."""

    secret_name: str
    data_key: str
    prefix: str
    revision: int
    labels: dict[str, str]
    annotations: dict[str, str]
    replace: bool
    request: str | None = None  # recorded on the Secret: the rotate request it answers
    secret: bool = True  # False: no Secret; the key is sealed and adopted in one write
    recipients: tuple[str, ...] = ()  # age recipients to seal it to (may be none)


@dataclass(frozen=True)
class Plan:
    issue: Issue | None = None
    status: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    restarts: tuple[models.RestartTarget, ...] = ()  # done before `status` is written
    next_due: datetime | None = None
    broken: tuple[str, ...] = ()  # the ApiKeyPolicies the key breaks, by name


def seal_recipients(o: Observed, spec: models.ApiKeySpec) -> tuple[str, ...]:
    """Whom a new key is sealed to: the spec's recipients, then the annotation's."""
    return tuple(dict.fromkeys((*spec.delivery.age.recipients, *o.seal_to)))


def secret_name(o: Observed) -> str:
    if o.status.secretName:
        return o.status.secretName  # fixed at issue: a Secret never moves under a key
    spec = o.spec if isinstance(o.spec, models.ApiKeySpec) else None
    return (spec.secret.name if spec else None) or o.name


def decide(o: Observed, now: datetime) -> Plan:
    request = rotation.pending_request(o.rotate_request, o.status)
    if isinstance(o.spec, models.SpecError):
        return _failed(o, now, "InvalidSpec", str(o.spec), request)
    spec = o.spec
    s = o.secret
    name = secret_name(o)
    if s.exists and s.owner_uid != o.uid:
        return _failed(o, now, "SecretConflict",
                       f"Secret {name} exists and is not owned by this ApiKey; "
                       "Keywright never overwrites it. Delete it or set spec.secret.name",
                       request)
    expires = _expires_at(o, spec)
    current = o.status.revision or 0
    verdict = compliance.judge(o.name, spec, spec.prefix or o.default_prefix, o.facts,
                               o.status.conditions)
    if (s.exists and s.hash and s.revision == current + 1 and s.last_characters
            and s.has_key and not s.data_changed_by_others):
        return _adopt(o, spec, now, expires, verdict)
    sealable = spec.secret.create or bool(seal_recipients(o, spec))
    if not o.status.hash:
        if expires is not None and now >= expires:
            return _never_issued_expired(o, now, expires)
        if not sealable:
            return _failed(o, now, "InvalidSpec", NO_RECIPIENT, request)
        return Plan(issue=_issue(o, spec, name, revision=current + 1,
                                 request=o.rotate_request))
    expired = expires is not None and now >= expires
    if (not expired and spec.active and not verdict.deactivating and sealable
            and not _aging(o, spec, now, expires, verdict, o.status)[1].unused):
        due = rotation.next_rotation(spec, o.status, expires,
                                     rotation.schedule_since(spec, o.status, now))
        if request or (due is not None and now >= due):
            return Plan(issue=_issue(o, spec, name, revision=current + 1,
                                     request=request or o.status.lastRotateRequest))
    return _steady(o, spec, now, expires, verdict, events=(), refused=request)


def _issue(o: Observed, spec: models.ApiKeySpec, name: str, revision: int,
           request: str | None) -> Issue:
    return Issue(
        secret_name=name, data_key=spec.secret.key, prefix=spec.prefix or o.default_prefix,
        revision=revision,
        labels={**spec.secret.labels, names.MANAGED_BY: names.MANAGED_BY_VALUE,
                names.APIKEY_LABEL: o.name},
        annotations=dict(spec.secret.annotations), replace=o.secret.exists, request=request,
        secret=spec.secret.create, recipients=seal_recipients(o, spec))


def _expires_at(o: Observed, spec: models.ApiKeySpec) -> datetime | None:
    if o.status.createdAt:  # fixed at creation: a later spec edit never moves it
        return times.parse(o.status.expiresAt) if o.status.expiresAt else None
    lifetime = durations.parse_expiration(spec.expiration)
    return o.created + lifetime if lifetime is not None else None


def _adopt(o: Observed, spec: models.ApiKeySpec, now: datetime,
           expires: datetime | None, verdict: compliance.Verdict) -> Plan:
    s = o.secret
    assert s.revision is not None
    assert s.last_characters is not None
    prefix = spec.prefix or o.default_prefix
    preview = tokens.preview(prefix, s.last_characters)
    issued_at = times.parse(s.issued_at) if s.issued_at else now
    adopted: dict[str, Any] = dict(
        revision=s.revision, hash=s.hash, prefix=prefix, lastCharacters=s.last_characters,
        keyPreview=preview, secretName=secret_name(o) if spec.secret.create else None,
        createdAt=o.status.createdAt or times.timestamp(o.created),
        expiresAt=times.timestamp(expires) if expires else None,
        lastRotateRequest=s.rotate_request or o.status.lastRotateRequest,
        # the new key sealed, or no ciphertext at all: never an older revision's
        sealed={"revision": s.revision, "recipients": list(s.sealed_to),
                "ciphertext": s.sealed} if s.sealed else None,
    )
    previous = list(o.status.previous)
    if o.status.hash:  # a rotation: the replaced key leaves now, or after its grace
        previous = rotation.previous_after_rotation(o.status, issued_at,
                                                    rotation.grace(spec), expires)
        adopted.update(rotatedAt=times.timestamp(issued_at),
                       previous=[p.model_dump() for p in previous], lastRotateRefused=None)
        kept_old = previous and previous[-1].revision == o.status.revision
        after = f"valid until {previous[-1].retiresAt}" if kept_old else "invalid from now on"
        event = Event(NORMAL, "Rotated", f"Rotated to key {preview} (revision {s.revision}); "
                      f"previous key {o.status.keyPreview} is {after}")
    else:
        where = f"into Secret {adopted['secretName']}" if spec.secret.create else "with no Secret"
        event = Event(NORMAL, "Issued", f"Issued key {preview} (revision {s.revision}) {where}")
    if s.sealed:
        event = dataclasses.replace(event, message=f"{event.message}; sealed to "
                                    f"{len(s.sealed_to)} age recipient"
                                    f"{'' if len(s.sealed_to) == 1 else 's'}")
    base = o.status.model_copy(update={**adopted, "previous": previous})
    extra = {k: v for k, v in adopted.items()
             if v is not None or k in ("lastRotateRefused", "sealed")}
    return _steady(o, spec, now, expires, verdict, events=(event,), refused=None, base=base,
                   extra=extra)


def _steady(o: Observed, spec: models.ApiKeySpec, now: datetime, expires: datetime | None,
            verdict: compliance.Verdict, events: tuple[Event, ...], refused: str | None,
            base: models.ApiKeyStatus | None = None,
            extra: dict[str, Any] | None = None) -> Plan:
    status = base or o.status
    preview = status.keyPreview or ""
    expired = expires is not None and now >= expires
    reactivation, told = _aging(o, spec, now, expires, verdict, status)
    if expired:
        phase, ready = "Expired", conditions.false("Ready", "Expired",
                                                   f"key expired at {status.expiresAt}")
    elif not spec.active:
        phase, ready = "Inactive", conditions.false("Ready", "Deactivated",
                                                    "spec.active is false")
    elif verdict.deactivating:
        phase, ready = "Inactive", conditions.false(
            "Ready", compliance.VIOLATION, "deactivated: " + "; ".join(
                str(v) for v in verdict.deactivating))
    elif told.unused:
        phase, ready = "Inactive", conditions.false("Ready", aging.UNUSED,
                                                    f"deactivated as {told.unused}")
    else:
        until = f"until {status.expiresAt}" if expires else "and never expires"
        phase, ready = "Active", conditions.true("Ready", "Active",
                                                 f"key {preview} is valid {until}")
    more = list(events)
    patch: dict[str, Any] = {**(extra or {}), **reactivation, **told.status}
    last_refused = status.lastRotateRefused
    sealable = spec.secret.create or bool(seal_recipients(o, spec))
    if refused:  # an Inactive or Expired key, or one no new key could reach
        patch.update(lastRotateRequest=refused, lastRotateRefused=refused)
        last_refused = refused
        why = (f"the key is {phase}; it is not queued, request again once the key is Active"
               if phase != "Active" else f"{NO_RECIPIENT}; it is not queued")
        more.append(Event(WARNING, "RotationRefused",
                          f"rotation request {ROTATE}={refused} refused: {why}"))
    if last_refused and phase != "Active":
        ready = ready.model_copy(update={
            "message": f"{ready.message}; rotation request {last_refused!r} was refused"})
    expiry = (conditions.true("Expired", "Expired", f"expired at {status.expiresAt}")
              if expired else conditions.false(
                  "Expired", "NotExpired",
                  f"expires at {status.expiresAt}" if expires else "expiration is Never"))
    synced = secretview.condition(o.secret, status, status.secretName or secret_name(o)) \
        if spec.secret.create else None
    new_conditions = conditions.merge(
        status.conditions,
        [ready, *([synced] if synced else []), expiry, *verdict.conditions, *told.conditions],
        now, o.generation,
        (*verdict.dropped, *told.dropped, *([] if synced else ["SecretSynced"])))
    more += verdict.events
    more += told.events
    more += _transition_events(o.status, phase, synced, status, ready)
    patch["deactivated"] = _deactivation(o.status, ready, now) \
        if phase == "Inactive" and spec.active else None
    more += _expiration_warning(o, spec, expires, status)
    kept, retired = rotation.retire(status.previous, now)
    if retired:
        patch["previous"] = [p.model_dump() for p in kept]
        more += [Event(NORMAL, "Retired", f"Previous key {status.prefix}_..."
                       f"{p.lastCharacters} (revision {p.revision}) retired at {p.retiresAt}")
                 for p in retired]
    # judged on the status before this decision: a key adopting its first Secret has no
    # schedule to move, it counts from creation
    since = rotation.schedule_since(spec, o.status, now)
    next_rotation = rotation.next_rotation(spec, status, expires, since) if sealable else None
    restarts: tuple[models.RestartTarget, ...] = ()
    if (o.status.revision or 1) > (o.status.restartedRevision or 1) and base is None:
        restarts = tuple(spec.rotation.restartTargets)
        patch["restartedRevision"] = o.status.revision
    patch.update({
        "phase": phase, "observedGeneration": o.generation,
        "nextRotationAt": times.timestamp(next_rotation) if next_rotation else None,
        "scheduledEvery": spec.rotation.every,
        "scheduleSince": since,
        "conditions": [c.model_dump(exclude_none=True) for c in new_conditions]})
    due = [t for t in (None if expired else expires, rotation.next_retirement(kept),
                       next_rotation if phase == "Active" else None, told.next_due)
           if t is not None]
    return Plan(status=_changed(o.status, patch), events=tuple(more), restarts=restarts,
                next_due=min(due, default=None),
                broken=tuple(sorted({v.policy for v in verdict.violations})))



def _expiration_warning(o: Observed, spec: models.ApiKeySpec, expires: datetime | None,
                        status: models.ApiKeyStatus) -> list[Event]:
    if o.generation == o.status.observedGeneration or not o.status.createdAt:
        return []
    wanted = durations.parse_expiration(spec.expiration)
    if ((o.created + wanted) if wanted is not None else None) == expires:
        return []
    return [Event(WARNING, "ExpirationImmutable",
                  f"spec.expiration is now {spec.expiration}, but expiration is fixed at "
                  f"creation: expiresAt stays {status.expiresAt or 'absent (Never)'}")]


def _aging(o: Observed, spec: models.ApiKeySpec, now: datetime, expires: datetime | None,
           verdict: compliance.Verdict, status: models.ApiKeyStatus,
           ) -> tuple[dict[str, Any], aging.Aging]:
    """What time says of an issued key (aging), and the reactivation this decision
    records, which restarts its unused clock."""
    reactivation = _reactivation(o, spec, now)
    restarted = reactivation.get("reactivatedAt") or status.reactivatedAt
    return reactivation, aging.judge(aging.Key(
        preview=status.keyPreview or "", created=o.created, expires=expires,
        last_used=times.parse(status.lastUsedAt) if status.lastUsedAt else None,
        reactivated=times.parse(restarted) if restarted else None,
        warned=status.expiryWarning, used=conditions.find(status.conditions, aging.USED),
        unused_after=aging.unused_window(spec, o.facts.policies),
        live=not (expires is not None and now >= expires) and spec.active
        and not verdict.deactivating), o.watch, now)


def _reactivation(o: Observed, spec: models.ApiKeySpec, now: datetime) -> dict[str, Any]:
    """A new keywright.dev/reactivate value, or spec.active turned true on a key that
    was Inactive for it: the unused clock restarts now (status.reactivatedAt)."""
    if o.reactivate_request and o.reactivate_request != o.status.lastReactivateRequest:
        return {"reactivatedAt": times.timestamp(now),
                "lastReactivateRequest": o.reactivate_request}
    if spec.active and o.status.phase == "Inactive" and o.status.deactivated is None:
        return {"reactivatedAt": times.timestamp(now)}
    return {}


def _deactivation(old: models.ApiKeyStatus, ready: models.Condition,
                  now: datetime) -> dict[str, str]:
    """status.deactivated for a key Keywright keeps from working although spec.active
    is true; `since` stays from when it began."""
    since = old.deactivated.since if old.deactivated else times.timestamp(now)
    return {"reason": ready.reason, "message": ready.message, "since": since}


def _transition_events(old: models.ApiKeyStatus, phase: str, synced: models.Condition | None,
                       status: models.ApiKeyStatus, ready: models.Condition) -> list[Event]:
    events = []
    if old.phase != phase:
        if phase == "Expired":
            events.append(Event(NORMAL, "Expired", f"Key {status.keyPreview} expired at "
                                f"{status.expiresAt}"))
        elif phase == "Inactive" and ready.reason in (compliance.VIOLATION, aging.UNUSED):
            events.append(Event(WARNING, "Deactivated", f"Key {status.keyPreview} "
                                f"{ready.message}"))
        elif phase == "Inactive":
            events.append(Event(NORMAL, "Deactivated", f"Key {status.keyPreview} deactivated"))
        elif phase == "Active" and old.phase == "Inactive":
            events.append(Event(NORMAL, "Activated", f"Key {status.keyPreview} activated"))
    before = conditions.find(old.conditions, "SecretSynced")
    if synced is None:
        return events
    if synced.status == "False" and (before is None or before.reason != synced.reason):
        events.append(Event(WARNING, synced.reason, synced.message))
    elif synced.status == "True" and before is not None and before.status == "False":
        events.append(Event(NORMAL, "SecretSynced", synced.message))
    return events


def _failed(o: Observed, now: datetime, reason: str, message: str,
            refused: str | None) -> Plan:
    """Failed: nothing is written to the Secret, but an issued key still expires and its
    previous keys still retire on time (the verifier checks both by the clock)."""
    ready = conditions.false("Ready", reason, message)
    found = [ready]
    if reason == "SecretConflict":
        found.append(conditions.false("SecretSynced", reason, message))
    merged = conditions.merge(o.status.conditions, found, now, o.generation)
    before = conditions.find(o.status.conditions, "Ready")
    events = [] if before is not None and (before.reason, before.message) == (reason, message) \
        else [Event(WARNING, reason, message)]
    patch: dict[str, Any] = {"phase": "Failed", "observedGeneration": o.generation,
                             "conditions": [c.model_dump(exclude_none=True) for c in merged]}
    if refused:
        patch.update(lastRotateRequest=refused, lastRotateRefused=refused)
        events.append(Event(WARNING, "RotationRefused",
                            f"rotation request {ROTATE}={refused} refused: the ApiKey is "
                            f"Failed ({reason}); it is not queued"))
    kept, retired = rotation.retire(o.status.previous, now)
    if retired:
        patch["previous"] = [p.model_dump() for p in kept]
    expires = times.parse(o.status.expiresAt) if o.status.expiresAt else None
    due = [t for t in (expires if expires and expires > now else None,
                       rotation.next_retirement(kept),
                       _conflict_recheck(o, now) if reason == "SecretConflict" else None)
           if t is not None]
    return Plan(status=_changed(o.status, patch), events=tuple(events),
                next_due=min(due, default=None))


def _conflict_recheck(o: Observed, now: datetime) -> datetime:
    """Back off by doubling: the next look comes after as long as the conflict has lasted
    (at least 1 s, at most 60 s). It began when SecretSynced turned False for it: Ready
    may have been False before, for another reason, and kept its transition time."""
    synced = conditions.find(o.status.conditions, "SecretSynced")
    began = times.parse(synced.lastTransitionTime) \
        if synced is not None and synced.reason == "SecretConflict" else now
    first, last = CONFLICT_RECHECK
    return now + min(last, max(first, now - began))


def _never_issued_expired(o: Observed, now: datetime, expires: datetime) -> Plan:
    message = f"expired at {times.timestamp(expires)} before a key was issued; none was"
    merged = conditions.merge(o.status.conditions, [
        conditions.false("Ready", "Expired", message),
        conditions.true("Expired", "Expired", message)], now, o.generation)
    patch = {"phase": "Expired", "observedGeneration": o.generation,
             "createdAt": times.timestamp(o.created), "expiresAt": times.timestamp(expires),
             "conditions": [c.model_dump(exclude_none=True) for c in merged]}
    events = () if o.status.phase == "Expired" else (Event(NORMAL, "Expired", message),)
    return Plan(status=_changed(o.status, patch), events=events)


def _changed(old: models.ApiKeyStatus, patch: dict[str, Any]) -> dict[str, Any]:
    """Only the fields whose value differs: an unchanged status costs no API write. A
    None removes a field (JSON merge patch), and is kept only if the field is there."""
    current = old.model_dump(exclude_none=True)
    return {k: v for k, v in patch.items() if current.get(k) != v}
