"""When each key was last used, and the status patches that tell people.

Owns: remembering the last use of each (ApiKey, revision) and, for a key with a quota,
its credits after the latest decision, and handing out at most one `status.lastUsedAt`
/ `status.lastUsedByRevision` / `status.usage` merge patch per ApiKey per interval.
Pure but for that memory; the time is a parameter and the caller sends the patches.
Must not: touch any status field but those three (the operator owns the rest).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from keywright.core import times
from keywright.verifier import index

INTERVAL = 60.0  # the contract: at most once a minute per key

Patch = tuple[str, str, dict[str, Any]]  # namespace, name, the status fields to merge


class Usage:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._seen: dict[tuple[str, str, int], float] = {}  # last use not yet reported
        self._patched: dict[tuple[str, str], float] = {}  # when each ApiKey was last patched
        # remaining, refilled at, the reset annotation they count from
        self._credits: dict[tuple[str, str], tuple[int, float, str]] = {}
        self._lock = threading.Lock()

    def used(self, record: index.KeyRecord, now: float) -> None:
        """A request presented this key (whatever the answer). Cheap: runs per request,
        without the lock; a use landing in the very moment `due` swaps the map is lost,
        and the next use of that key records it again."""
        self._seen[(record.namespace, record.name, record.revision)] = now

    def credits(self, record: index.KeyRecord, remaining: int, refilled_at: float) -> None:
        """A quota's state after a decision, for status.usage (the latest wins)."""
        self._credits[(record.namespace, record.name)] = (remaining, refilled_at,
                                                          record.reset_token)

    def due(self, now: float) -> list[Patch]:
        """The patches to send now: for each ApiKey used since its last patch, unless
        that patch is younger than the interval. What is not due stays remembered."""
        with self._lock:
            seen, self._seen = self._seen, {}
            waiting: dict[tuple[str, str, int], float] = {}
            grouped: dict[tuple[str, str], dict[int, float]] = {}
            for (namespace, name, revision), when in seen.items():
                if now - self._patched.get((namespace, name), -self.interval) < self.interval:
                    waiting[(namespace, name, revision)] = when
                else:
                    grouped.setdefault((namespace, name), {})[revision] = when
            for key, when in waiting.items():  # keep what is not due, unless newer came in
                self._seen[key] = max(when, self._seen.get(key, when))
            patches = []
            for (namespace, name), revisions in sorted(grouped.items()):
                self._patched[(namespace, name)] = now
                fields: dict[str, Any] = {
                    "lastUsedAt": _stamp(max(revisions.values())),
                    "lastUsedByRevision": {str(r): _stamp(t) for r, t in revisions.items()},
                }
                credits = self._credits.pop((namespace, name), None)
                if credits is not None:
                    fields["usage"] = usage_field(*credits)
                patches.append((namespace, name, fields))
            return patches

    def failed(self, patch: Patch, now: float) -> None:
        """A patch did not reach the API server: try it again after the interval."""
        namespace, name, fields = patch
        with self._lock:
            for revision, stamp in fields["lastUsedByRevision"].items():
                key = (namespace, name, int(revision))
                when = times.parse(stamp).timestamp()
                self._seen[key] = max(when, self._seen.get(key, when))

    def forget(self, namespace: str, name: str) -> None:
        """The ApiKey is gone: nothing to report for it any more."""
        with self._lock:
            self._patched.pop((namespace, name), None)
            self._credits.pop((namespace, name), None)
            # a snapshot: requests add to _seen without the lock (list() of it is atomic)
            for key in [k for k in list(self._seen) if k[:2] == (namespace, name)]:
                self._seen.pop(key, None)


def usage_field(remaining: int, refilled_at: float, reset: str) -> dict[str, Any]:
    """status.usage for a quota with `remaining` credits, last refilled at that time,
    counted since the reset annotation had the value `reset` (None in a merge patch
    removes an earlier value)."""
    return {"remaining": remaining, "refilledAt": _stamp(refilled_at),
            "resetQuota": reset or None}


def _stamp(when: float) -> str:
    return times.timestamp(datetime.fromtimestamp(when, UTC))
