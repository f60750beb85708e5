"""The status of ApiKeyRoles and ApiKeyPolicies: Ready, and how many keys each concerns.

Owns: writing those statuses from what the catalog says they should be, coalesced: a
change marks the object, and marked objects are written together at most once per
`DELAY` (a thousand keys created at once move a role's count once, not a thousand
times), each only if it differs from the status last seen, so a restart with nothing
changed writes nothing.
Must not: decide what a key may do, or write anything but these two kinds' status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from keywright import kube
from keywright.controller import catalog
from keywright.core import conditions, models

log = logging.getLogger(__name__)
DELAY = 1.0  # seconds: how long marks gather before they are written

Marked = tuple[str, catalog.Ref]  # (plural, (namespace, name))


class Summaries:
    def __init__(self, api: kube.Kube, found: catalog.Catalog,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api = api
        self.catalog = found
        self.clock = clock
        self._marked: set[Marked] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, objects: Iterable[Marked]) -> None:
        """Have these objects' statuses looked at within DELAY; never blocks."""
        with self._lock:
            before = len(self._marked)
            self._marked.update(objects)
            if len(self._marked) != before:
                self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="summaries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.wait(DELAY):
                return
            with self._lock:
                batch, self._marked = self._marked, set()
                self._wake.clear()
            for plural, (namespace, name) in sorted(batch):
                try:
                    self.write(plural, namespace, name)
                except Exception as exc:  # looked at again with the next mark, or in DELAY
                    log.warning("%s %s/%s: status not written (%s); trying again", plural,
                                namespace, name, exc)
                    self.mark([(plural, (namespace, name))])

    def write(self, plural: str, namespace: str, name: str) -> None:
        """Patch the object's status if it is not what the catalog says it should be."""
        found = self.catalog.status(plural, namespace, name)
        if found is None:
            return  # deleted meanwhile
        wanted, seen = found
        patch = status_patch(wanted, seen, self.clock())
        if not patch:
            return
        try:
            self.api.merge_patch_object(
                f"{self.api.apikeys_path(namespace, plural)}/{name}/status", {"status": patch})
        except kube.KubeError as exc:
            if exc.status == 404:
                return
            raise


def status_patch(wanted: dict[str, Any], seen: catalog.Seen, now: datetime) -> dict[str, Any]:
    """The merge patch from the status seen to the one wanted; empty when they agree."""
    status, reason, message = wanted["ready"]
    before = models.ApiKeyPolicyStatus.model_validate(
        {k: v for k, v in seen.status.items() if k in ("conditions",)})
    ready = (conditions.true if status == "True" else conditions.false)("Ready", reason,
                                                                         message)
    merged = conditions.merge(before.conditions, [ready], now, seen.generation)
    full: dict[str, Any] = {
        "conditions": [c.model_dump(exclude_none=True) for c in merged],
        "observedGeneration": seen.generation,
        **{k: v for k, v in wanted.items() if k != "ready"}}
    return {k: v for k, v in full.items() if seen.status.get(k) != v}
