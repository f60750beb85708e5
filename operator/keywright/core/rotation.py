"""Rotation decisions: when a key is due, what becomes of the previous key, when it retires.

Pure: every function takes the time it needs as a parameter.
Must not: do I/O or see a plaintext.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from keywright.core import durations, models, times


def pending_request(annotation: str | None, status: models.ApiKeyStatus) -> str | None:
    """The `keywright.dev/rotate` value not yet acted on (performed or refused), if any."""
    return annotation if annotation and annotation != status.lastRotateRequest else None


SCHEDULED_GRACE_SHARE = 10  # a schedule's default grace: a tenth of `every` ...
SCHEDULED_GRACE_CAP = timedelta(hours=24)  # ... but never more than a day


def grace(spec: models.ApiKeySpec) -> timedelta:
    """How long a replaced key stays valid: `gracePeriod` when it is set (0s means invalid
    at once); else, for a key with a schedule, min(every/10, 24h), so that a scheduled
    rotation never cuts off the key in use unannounced; else 0s."""
    if spec.rotation.gracePeriod is not None:
        return durations.parse(spec.rotation.gracePeriod)
    if spec.rotation.every is not None:
        share = durations.parse(spec.rotation.every) / SCHEDULED_GRACE_SHARE
        whole = timedelta(seconds=math.ceil(share.total_seconds()))  # status has seconds
        return min(whole, SCHEDULED_GRACE_CAP)
    return timedelta(0)


def schedule_since(spec: models.ApiKeySpec, status: models.ApiKeyStatus,
                   now: datetime) -> str | None:
    """Since when the schedule in `spec` counts, if later than the last rotation: the
    moment `every` was added to an issued key; for a shortened `every`, that moment too,
    but never so late that the rotation comes after the one the old schedule promised.
    A longer `every`, or one set at creation, counts from the last rotation (or
    creation) as before."""
    every = spec.rotation.every
    if every is None or not status.createdAt:
        return None
    # before status.scheduledEvery existed, a nextRotationAt meant the schedule ran
    before = status.scheduledEvery or (every if status.nextRotationAt else None)
    if before is None:
        return times.timestamp(now)
    shorter, longer = durations.parse(every), durations.parse(before)
    if shorter < longer:
        counted = times.parse(status.rotatedAt or status.createdAt)
        if status.scheduleSince:
            counted = max(counted, times.parse(status.scheduleSince))
        return times.timestamp(min(now, counted + longer - shorter))
    return status.scheduleSince


def next_rotation(spec: models.ApiKeySpec, status: models.ApiKeyStatus,
                  expires: datetime | None, since: str | None) -> datetime | None:
    """`rotation.every` after the last rotation, creation, or `since` (the moment the
    schedule was added or shortened: `schedule_since`), whichever is latest; None if
    that is never, or not before the key expires anyway."""
    if spec.rotation.every is None or not status.createdAt:
        return None
    base = times.parse(status.rotatedAt or status.createdAt)
    if since is not None:
        base = max(base, times.parse(since))
    due = base + durations.parse(spec.rotation.every)
    return None if expires is not None and due >= expires else due


def previous_after_rotation(status: models.ApiKeyStatus, rotated_at: datetime,
                            grace: timedelta, expires: datetime | None = None,
                            ) -> list[models.PreviousKey]:
    """`status.previous` once the current key is replaced at `rotated_at`: the current key
    joins it for `grace` (with 0s it is invalid at once), never past the key's expiry;
    each earlier one keeps its own retiresAt."""
    kept = list(status.previous)
    retires = rotated_at + grace if expires is None else min(rotated_at + grace, expires)
    if retires > rotated_at and status.hash and status.revision and status.lastCharacters:
        kept.append(models.PreviousKey(
            revision=status.revision, hash=status.hash,
            lastCharacters=status.lastCharacters, retiresAt=times.timestamp(retires)))
    return kept


def retire(previous: Sequence[models.PreviousKey], now: datetime,
           ) -> tuple[list[models.PreviousKey], list[models.PreviousKey]]:
    """(still valid, retired now): a previous key retires at its retiresAt exactly."""
    kept = [p for p in previous if times.parse(p.retiresAt) > now]
    return kept, [p for p in previous if times.parse(p.retiresAt) <= now]


def next_retirement(previous: Sequence[models.PreviousKey]) -> datetime | None:
    return min((times.parse(p.retiresAt) for p in previous), default=None)
