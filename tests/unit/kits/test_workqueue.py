"""The work queue: one entry per waiting key, one worker per key, no change missed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from keywright.kits import workqueue
from tests.support.waiting import eventually


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_key_added_many_times_while_waiting_is_worked_on_once() -> None:
    seen: list[str] = []
    queue = workqueue.WorkQueue(seen.append, workers=1)
    for _ in range(100):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    queue.start()
    _stop_after(queue, seen, 2)
    assert seen == ["a", "b"]


def test_a_key_added_while_being_worked_on_runs_again_after_and_never_in_parallel(
    gate: threading.Event,
) -> None:
    running: list[str] = []
    overlaps: list[str] = []
    calls: list[str] = []
    lock = threading.Lock()

    def work(key: str) -> None:
        with lock:
            if key in running:
                overlaps.append(key)
            running.append(key)
            calls.append(key)
        if len(calls) == 1:
            gate.wait(5)
        with lock:
            running.remove(key)

    queue = workqueue.WorkQueue(work, workers=4)
    queue.start()
    queue.add("a")
    while not calls:
        time.sleep(0.01)
    queue.add("a")  # arrives while the first run is blocked
    queue.add("a")
    time.sleep(0.2)
    assert calls == ["a"]  # the other three workers did not take it in parallel
    gate.set()
    _stop_after(queue, calls, 2)
    assert calls == ["a", "a"]
    assert overlaps == []


def test_work_that_raises_does_not_stop_the_worker() -> None:
    done: list[str] = []

    def work(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        done.append(key)

    queue = workqueue.WorkQueue(work, workers=1)
    queue.start()
    queue.add("bad")
    queue.add("good")
    try:
        eventually(lambda: done, timeout=5, interval=0.01, what="a run after the failed one")
    finally:
        queue.stop()
    assert done == ["good"]


def _stop_after(queue: workqueue.WorkQueue[str], done: list[str], count: int) -> None:
    """Stop the queue once `count` runs are recorded (or 5 s passed), plus a moment in
    which an unwanted extra run would show."""
    try:
        eventually(lambda: len(done) >= count, timeout=5, interval=0.01, what=f"{count} runs")
        time.sleep(0.1)
    finally:
        queue.stop()
