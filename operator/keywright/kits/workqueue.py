"""A de-duplicating work queue served by a few threads (controller-runtime's pattern).

Owns: which keys wait for work, and that a key is never worked on by two threads at once.
A key added while it waits is not queued twice; a key added while it is being worked on
is queued again once that work ends, so the latest change is never missed. Memory is one
entry per waiting key, however many events arrive for it.
Must not: know what the work is, or retry by itself (the caller's `work` decides).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(self, work: Callable[[K], None], workers: int, name: str = "work") -> None:
        self._work = work
        self._workers = workers
        self._name = name
        self._queue: collections.deque[K] = collections.deque()
        self._waiting: set[K] = set()
        self._busy: set[K] = set()
        self._changed = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def __len__(self) -> int:
        with self._changed:
            return len(self._waiting)

    def add(self, key: K) -> None:
        with self._changed:
            if key in self._waiting:
                return
            self._waiting.add(key)
            if key not in self._busy:
                self._queue.append(key)
                self._changed.notify()

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"{self._name}-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Let running work finish; waiting keys are dropped (a restart relists them)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    def _take(self) -> K | None:
        with self._changed:
            while not self._queue and not self._stopping:
                self._changed.wait()
            if self._stopping:
                return None
            key = self._queue.popleft()
            self._waiting.discard(key)
            self._busy.add(key)
            return key

    def _done(self, key: K) -> None:
        with self._changed:
            self._busy.discard(key)
            if key in self._waiting:  # added again while we worked on it
                self._queue.append(key)
                self._changed.notify()

    def _run(self) -> None:
        while (key := self._take()) is not None:
            try:
                self._work(key)
            except Exception:
                log.exception("work on %s failed", key)
            finally:
                self._done(key)
