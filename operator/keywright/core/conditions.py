"""metav1.Condition bookkeeping: build conditions and merge them into a list, and the
Kubernetes Events decisions ask for. Pure.

A condition's lastTransitionTime moves only when its status flips, as Kubernetes expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from keywright.core import models, times

_PLACEHOLDER = "1970-01-01T00:00:00Z"  # replaced by merge()
NORMAL, WARNING = "Normal", "Warning"


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event a decision asks to be posted about the object."""

    type: str
    reason: str
    message: str


def true(kind: str, reason: str, message: str) -> models.Condition:
    return models.Condition(type=kind, status="True", reason=reason, message=message,
                            lastTransitionTime=_PLACEHOLDER)


def false(kind: str, reason: str, message: str) -> models.Condition:
    return models.Condition(type=kind, status="False", reason=reason, message=message,
                            lastTransitionTime=_PLACEHOLDER)


def find(existing: Sequence[models.Condition], kind: str) -> models.Condition | None:
    return next((c for c in existing if c.type == kind), None)


def merge(existing: Sequence[models.Condition], updates: Sequence[models.Condition],
          now: datetime, generation: int, dropped: Sequence[str] = ()) -> list[models.Condition]:
    """`existing` with `updates` applied and the types in `dropped` removed; conditions
    not named are kept as they were."""
    stamp = times.timestamp(now)
    merged = {c.type: c for c in existing if c.type not in dropped}
    for update in updates:
        before = merged.get(update.type)
        kept = before.lastTransitionTime if before and before.status == update.status else None
        merged[update.type] = update.model_copy(update={
            "lastTransitionTime": kept or stamp,
            "observedGeneration": generation,
        })
    order = {c.type: i for i, c in enumerate(existing)}
    return sorted(merged.values(), key=lambda c: order.get(c.type, len(order)))
