"""A key over time: warnings before it expires, and what happens when nobody uses it.

Owns: the ExpiringSoon condition and its Warning events (one per warning threshold the
key crosses while it lives), the Used condition (False, NeverUsed, once a key has gone
unused since creation for the operator's --never-used-after), deactivation of a key
unused for spec.deactivateAfterUnused (or its namespace's policy default), restarting
that clock on reactivation, and the next instant any of this changes.
Must not: do I/O or read a clock (`now` is given), or decide the key's phase: lifecycle
does, from what `judge` says. Every message is a function of the status, never of `now`,
so a decision that changes nothing writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keywright.core import conditions, durations, models, policy, times

Event = conditions.Event
EXPIRING_SOON = "ExpiringSoon"  # condition type and event reason
USED, NEVER_USED = "Used", "NeverUsed"  # condition type; its False reason and event
UNUSED = "Unused"  # Ready's reason and status.deactivated.reason for an unused key
DEFAULT_EXPIRY_WARNINGS = (timedelta(days=14), timedelta(days=1))
DEFAULT_NEVER_USED_AFTER = timedelta(days=7)


@dataclass(frozen=True)
class Watch:
    """The operator's settings for all keys."""

    expiry_warnings: tuple[timedelta, ...] = DEFAULT_EXPIRY_WARNINGS  # any order
    never_used_after: timedelta | None = DEFAULT_NEVER_USED_AFTER  # None: no Used


DEFAULT = Watch()
QUIET = Watch(expiry_warnings=(), never_used_after=None)  # neither condition, ever


@dataclass(frozen=True)
class Key:
    """What the judgement needs of one issued key."""

    preview: str
    created: datetime
    expires: datetime | None
    last_used: datetime | None
    reactivated: datetime | None  # the unused clock's latest restart, if any
    warned: str | None  # status.expiryWarning: the shortest threshold already told
    used: models.Condition | None  # the Used condition as it stands
    unused_after: tuple[timedelta, str] | None  # the window and where it comes from
    live: bool  # Active but for what this module says: issued, unexpired, spec.active


@dataclass(frozen=True)
class Aging:
    conditions: tuple[models.Condition, ...] = ()
    dropped: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    unused: str | None = None  # the key is deactivated as unused: why, in words
    status: dict[str, Any] = field(default_factory=dict)
    next_due: datetime | None = None


def unused_window(spec: models.ApiKeySpec, policies: tuple[policy.Policy, ...],
                  ) -> tuple[timedelta, str] | None:
    """spec.deactivateAfterUnused, else the shortest default of the namespace's
    policies; with where it comes from, for messages."""
    if spec.deactivateAfterUnused:
        return (durations.parse(spec.deactivateAfterUnused),
                f"spec.deactivateAfterUnused {spec.deactivateAfterUnused}")
    defaults = [(durations.parse(p.spec.deactivateAfterUnused), p.name) for p in policies
                if p.spec.deactivateAfterUnused]
    if not defaults:
        return None
    window, name = min(defaults)
    return window, f"ApiKeyPolicy {name}'s deactivateAfterUnused {durations.format(window)}"


def judge(key: Key, watch: Watch, now: datetime) -> Aging:
    parts = [_expiring_soon(key, watch, now), _used(key, watch, now), _unused(key, now)]
    dues = [p.next_due for p in parts if p.next_due is not None]
    return Aging(
        conditions=tuple(c for p in parts for c in p.conditions),
        dropped=tuple(d for p in parts for d in p.dropped),
        events=tuple(e for p in parts for e in p.events),
        unused=next((p.unused for p in parts if p.unused), None),
        status={k: v for p in parts for k, v in p.status.items()},
        next_due=min(dues, default=None))


def _expiring_soon(key: Key, watch: Watch, now: datetime) -> Aging:
    """True from the longest threshold before expiry until expiry; one Warning event per
    threshold crossed while the key lived (a threshold at least as long as the key's
    whole life is not an event: its owner chose that), the shortest only when several
    are crossed at once (the operator was away)."""
    if key.expires is None or now >= key.expires or not watch.expiry_warnings:
        return Aging(dropped=(EXPIRING_SOON,))
    crossed = [t for t in watch.expiry_warnings if key.expires - t <= now]
    ahead = [key.expires - t for t in watch.expiry_warnings if key.expires - t > now]
    due = min(ahead, default=None)
    if not crossed:
        return Aging(dropped=(EXPIRING_SOON,), next_due=due)
    shortest = min(crossed)
    at = times.timestamp(key.expires)
    told = durations.format(shortest)
    found = conditions.true(EXPIRING_SOON, EXPIRING_SOON,
                            f"key {key.preview} expires at {at}, within {told}")
    if key.warned is not None and durations.parse(key.warned) <= shortest:
        return Aging(conditions=(found,), next_due=due)
    lived_past = key.expires - shortest > key.created
    events = (Event(conditions.WARNING, EXPIRING_SOON,
                    f"Key {key.preview} expires at {at}, in less than {told}; expiration is "
                    "fixed: issue a new ApiKey for its users before then"),) \
        if lived_past and key.live else ()
    return Aging(conditions=(found,), events=events, status={"expiryWarning": told},
                 next_due=due)


def _used(key: Key, watch: Watch, now: datetime) -> Aging:
    """Said only of a key that went unused since creation for `never_used_after`:
    False (NeverUsed) then, True once it is used at last."""
    if watch.never_used_after is None:
        return Aging(dropped=(USED,))
    before = key.used
    if key.last_used is not None:
        if before is None or before.status == "True":
            return Aging()
        return Aging(conditions=(conditions.true(
            USED, USED, f"first used after {durations.format(watch.never_used_after)} "
            "without use"),), events=(Event(conditions.NORMAL, USED,
                                            f"Key {key.preview} is used at last"),))
    since = key.created + watch.never_used_after
    if now < since:
        return Aging(next_due=since if key.live else None)
    if not key.live and before is None:
        return Aging()  # an inactive or expired key that nobody uses says nothing new
    found = conditions.false(USED, NEVER_USED, f"not used since creation at "
                             f"{times.timestamp(key.created)}")
    events = () if before is not None and before.reason == NEVER_USED else (
        Event(conditions.WARNING, NEVER_USED, f"Key {key.preview} has not been used in the "
              f"{durations.format(watch.never_used_after)} since its creation"),)
    return Aging(conditions=(found,), events=events)


def _unused(key: Key, now: datetime) -> Aging:
    """Deactivated once the window has passed since the key's last use, creation or
    reactivation, whichever is latest; active again as soon as that is no longer so (a
    reactivation, a longer window, or none)."""
    if key.unused_after is None or not key.live:
        return Aging()
    window, source = key.unused_after
    latest = max(t for t in (key.created, key.last_used, key.reactivated) if t is not None)
    deadline = latest + window
    if now < deadline:
        return Aging(next_due=deadline)
    what = "used" if key.last_used is not None and key.last_used == latest else \
        "reactivated" if key.reactivated is not None and key.reactivated == latest else \
        "created"
    return Aging(unused=f"unused: last {what} at {times.timestamp(latest)}, "
                        f"{durations.format(window)} ago or more ({source})")
