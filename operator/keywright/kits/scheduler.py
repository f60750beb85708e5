"""One timer for all keys: wakes at the next due instant (expiry, retirement, rotation).

Owns: a heap of (instant, key) with at most one live entry per key, and one thread that
sleeps until the earliest instant and then hands the key to a callback. 10,000 keys cost
one thread and one heap, not 10,000 timers.
Must not: know what is due or why (lifecycle decides), or talk to Kubernetes.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class Scheduler(Generic[K]):
    def __init__(
        self,
        due: Callable[[K], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._due = due
        self._clock = clock
        self._heap: list[tuple[datetime, int, K]] = []
        self._when: dict[K, datetime] = {}
        self._counter = 0  # tie-breaker: keys need not be orderable
        self._changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._changed:
            return len(self._when)

    def set(self, key: K, when: datetime | None) -> None:
        """Wake for `key` at `when` (replacing any earlier plan); None forgets it."""
        with self._changed:
            if when is None:
                self._when.pop(key, None)
                return
            if self._when.get(key) == when:
                return
            self._when[key] = when
            self._counter += 1
            heapq.heappush(self._heap, (when, self._counter, key))
            if self._heap[0][2] == key:
                self._changed.notify()
            if len(self._heap) > 2 * len(self._when) + 64:
                self._compact()

    def next_due(self) -> datetime | None:
        with self._changed:
            self._drop_stale()
            return self._heap[0][0] if self._heap else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keywright-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def pop_due(self) -> list[K]:
        """Keys whose instant has come, removed from the plan, earliest first."""
        now = self._clock()
        ready: list[K] = []
        with self._changed:
            while True:
                self._drop_stale()
                if not self._heap or self._heap[0][0] > now:
                    return ready
                _, _, key = heapq.heappop(self._heap)
                del self._when[key]
                ready.append(key)

    def _run(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                self._drop_stale()
                if self._heap:
                    wait = (self._heap[0][0] - self._clock()).total_seconds()
                    if wait > 0:
                        self._changed.wait(min(wait, 3600.0))
                        continue
                else:
                    self._changed.wait()
                    continue
            for key in self.pop_due():
                try:
                    self._due(key)
                except Exception:
                    log.exception("scheduled work for %s failed", key)

    def _drop_stale(self) -> None:
        while self._heap and self._when.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if self._when.get(entry[2]) == entry[0]]
        heapq.heapify(self._heap)
