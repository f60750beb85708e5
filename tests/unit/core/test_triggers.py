"""triggers.wanted as a table: which ApiKey watch events ask for a reconcile."""

from __future__ import annotations

from typing import Any

import pytest

from keywright.core import triggers

DECIDED = {"phase": "Active", "observedGeneration": 2}


def body(generation: int = 2, annotations: dict[str, str] | None = None,
         status: dict[str, Any] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "k", "namespace": "pay", "generation": generation,
                            "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    return {"metadata": meta, "spec": {"expiration": "30d"},
            "status": DECIDED if status is None else status}


NEVER_USED = {"type": "Used", "status": "False", "reason": "NeverUsed"}
ROWS = [
    ("a key listed at start is looked at", None, body(), True),
    ("a key just created is looked at", "ADDED", body(status={}), True),
    ("the echo of the operator's own status write is not", "MODIFIED", body(), False),
    ("a spec edit the operator has not decided on is", "MODIFIED", body(generation=3), True),
    ("a key with no phase yet (its first decision failed) is", "MODIFIED",
     body(status={"observedGeneration": 2}), True),
    ("a new rotate request is", "MODIFIED",
     body(annotations={"keywright.dev/rotate": "r2"},
          status={**DECIDED, "lastRotateRequest": "r1"}), True),
    ("a rotate request already acted on is not", "MODIFIED",
     body(annotations={"keywright.dev/rotate": "r1"},
          status={**DECIDED, "lastRotateRequest": "r1"}), False),
    ("a new reactivate request is", "MODIFIED",
     body(annotations={"keywright.dev/reactivate": "now"}), True),
    ("a reactivate request already acted on is not", "MODIFIED",
     body(annotations={"keywright.dev/reactivate": "now"},
          status={**DECIDED, "lastReactivateRequest": "now"}), False),
    ("the verifier recording use is not", "MODIFIED",
     body(status={**DECIDED, "lastUsedAt": "2026-12-01T12:00:00Z",
                  "usage": {"remaining": 5, "refilledAt": "2026-12-01T12:00:00Z"}}), False),
    ("the first use of a key said NeverUsed is", "MODIFIED",
     body(status={**DECIDED, "lastUsedAt": "2026-12-01T12:00:00Z",
                  "conditions": [NEVER_USED]}), True),
    ("a key said NeverUsed and still unused is not", "MODIFIED",
     body(status={**DECIDED, "conditions": [NEVER_USED]}), False),
    ("a key being deleted is not, whatever else changed", "MODIFIED",
     body(generation=3, deleting=True), False),
    ("a deletion is not (the reconciler forgets it instead)", "DELETED", body(), False),
    ("another label or annotation is not", "MODIFIED",
     body(annotations={"team": "payments"}), False),
]


@pytest.mark.parametrize(("what", "event", "obj", "expected"), ROWS,
                         ids=[r[0] for r in ROWS])
def test_which_events_ask_for_a_reconcile(what: str, event: str | None,
                                          obj: dict[str, Any], expected: bool) -> None:
    assert triggers.wanted(event, obj) is expected
