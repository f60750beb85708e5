"""Which ApiKey watch events ask for a reconcile.

Owns: telling, from one watch event's type and object alone, whether the key may need
the operator: a key seen for the first time (created, or listed at start), a spec the
operator has not decided on (`metadata.generation` against `status.observedGeneration`),
an annotation asking for something not yet acted on (rotate, reactivate), or a key said
NeverUsed that has been used since. Everything else, the verifiers' use and credits
written into status first of all, and the echo of the operator's own status write, asks
for nothing: the key's own wake-ups come from the scheduler, not from events.
Must not: do I/O or decide what to do with a key (lifecycle does); it only filters, and
when in doubt it says yes: a reconcile that finds nothing to do writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keywright.core import aging, names

FIRST_SIGHT = (None, "ADDED")  # an object from a list (not a watch event) has no type


def wanted(event: str | None, body: Mapping[str, Any]) -> bool:
    if event in FIRST_SIGHT:
        return True
    if event != "MODIFIED":
        return False
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False  # going: its Secret goes with it (owner reference)
    status = body.get("status") or {}
    if not status.get("phase") or meta.get("generation") != status.get("observedGeneration"):
        return True
    annotations = meta.get("annotations") or {}
    for annotation, acted_on in ((names.ROTATE_ANNOTATION, "lastRotateRequest"),
                                 (names.REACTIVATE_ANNOTATION, "lastReactivateRequest")):
        asked = annotations.get(annotation)
        if asked and asked != status.get(acted_on):
            return True
    return bool(status.get("lastUsedAt")) and any(
        isinstance(c, Mapping) and c.get("type") == aging.USED and c.get("status") == "False"
        for c in status.get("conditions") or ())
