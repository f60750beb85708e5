"""One timer for all keys: a plan of (instant, key), popped earliest first."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from keywright.kits import scheduler

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Fake:
    """A scheduler on a clock that moves only when told to."""

    def __init__(self) -> None:
        self.box: list[datetime] = [T0]
        self.called: list[str] = []
        self.plan: scheduler.Scheduler[str] = scheduler.Scheduler(
            self.called.append, clock=lambda: self.box[0])

    def pop_at(self, seconds: float) -> list[str]:
        self.box[0] = at(seconds)
        return self.plan.pop_due()


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        pytest.param(-1.0, [], id="one second before the instant nothing is due"),
        pytest.param(-0.000001, [], id="a microsecond before the instant nothing is due"),
        pytest.param(0.0, ["a"], id="at the instant the key is due"),
        pytest.param(1.0, ["a"], id="after the instant the key is due"),
        pytest.param(86400.0, ["a"], id="a day late the key is still due"),
    ],
)
def test_pop_due_before_at_and_after_the_instant(offset: float, expected: list[str]) -> None:
    fake = Fake()
    fake.plan.set("a", at(10))
    assert fake.pop_at(10 + offset) == expected
    assert len(fake.plan) == 1 - len(expected)


def test_a_popped_key_is_gone() -> None:
    fake = Fake()
    fake.plan.set("a", at(10))
    assert fake.pop_at(10) == ["a"]
    assert fake.pop_at(20) == []
    assert len(fake.plan) == 0
    assert fake.plan.next_due() is None
    assert fake.called == []  # pop_due hands keys back; only the thread calls back


def test_set_none_forgets_a_key() -> None:
    fake = Fake()
    fake.plan.set("a", at(10))
    fake.plan.set("b", at(20))
    fake.plan.set("a", None)
    assert len(fake.plan) == 1
    assert fake.plan.next_due() == at(20)
    assert fake.pop_at(100) == ["b"]


def test_set_none_for_an_unknown_key_is_harmless() -> None:
    fake = Fake()
    fake.plan.set("nobody", None)
    assert len(fake.plan) == 0
    assert fake.pop_at(100) == []


def test_a_forgotten_key_can_be_planned_again() -> None:
    fake = Fake()
    fake.plan.set("a", at(10))
    fake.plan.set("a", None)
    fake.plan.set("a", at(30))
    assert fake.pop_at(10) == []
    assert fake.pop_at(30) == ["a"]
    assert fake.pop_at(100) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(10.0, 20.0, id="a later plan replaces an earlier one"),
        pytest.param(20.0, 10.0, id="an earlier plan replaces a later one"),
    ],
)
def test_a_new_plan_replaces_the_old_one(first: float, second: float) -> None:
    fake = Fake()
    fake.plan.set("a", at(first))
    fake.plan.set("a", at(second))
    assert len(fake.plan) == 1
    assert fake.plan.next_due() == at(second)
    assert fake.pop_at(min(first, second) - 1) == []
    if first < second:
        assert fake.pop_at(first) == []  # the old instant no longer wakes it
    assert fake.pop_at(second) == ["a"]
    assert fake.pop_at(1000) == []  # only one entry was ever due


def test_going_back_to_an_old_plan_pops_once() -> None:
    fake = Fake()
    for seconds in (10, 20, 10, 20, 10):
        fake.plan.set("a", at(seconds))
    assert len(fake.plan) == 1
    assert fake.pop_at(10) == ["a"]
    assert fake.pop_at(1000) == []


def test_setting_the_same_instant_twice_pops_once() -> None:
    fake = Fake()
    fake.plan.set("a", at(10))
    fake.plan.set("a", at(10))
    assert fake.pop_at(10) == ["a"]
    assert fake.pop_at(1000) == []


def test_many_replacements_of_one_key_pop_once_at_the_last_instant() -> None:
    fake = Fake()
    for seconds in range(1, 1001):
        fake.plan.set("a", at(seconds))
    assert len(fake.plan) == 1
    assert fake.plan.next_due() == at(1000)
    assert fake.pop_at(999) == []
    assert fake.pop_at(1000) == ["a"]
    assert fake.pop_at(10**6) == []


def test_several_keys_come_out_earliest_first() -> None:
    fake = Fake()
    fake.plan.set("c", at(3))
    fake.plan.set("a", at(1))
    fake.plan.set("d", at(4))
    fake.plan.set("b", at(2))
    assert fake.pop_at(3.5) == ["a", "b", "c"]
    assert len(fake.plan) == 1
    assert fake.plan.next_due() == at(4)
    assert fake.pop_at(4) == ["d"]


def test_keys_due_at_the_same_instant_all_come_out() -> None:
    fake = Fake()
    for key in ("x", "y", "z"):
        fake.plan.set(key, at(5))
    assert sorted(fake.pop_at(5)) == ["x", "y", "z"]


def test_keys_need_not_be_orderable() -> None:
    first, second = object(), object()
    box = [T0]
    plan: scheduler.Scheduler[object] = scheduler.Scheduler(lambda key: None,
                                                            clock=lambda: box[0])
    plan.set(first, at(5))
    plan.set(second, at(5))
    box[0] = at(5)
    popped = plan.pop_due()
    assert len(popped) == 2
    assert set(map(id, popped)) == {id(first), id(second)}


def test_len_counts_live_keys() -> None:
    fake = Fake()
    assert len(fake.plan) == 0
    fake.plan.set("a", at(1))
    fake.plan.set("b", at(2))
    fake.plan.set("a", at(3))  # replaced, still one key
    fake.plan.set("c", at(4))
    fake.plan.set("b", None)  # forgotten
    assert len(fake.plan) == 2
    fake.pop_at(3)
    assert len(fake.plan) == 1


def test_next_due_is_the_earliest_live_instant() -> None:
    fake = Fake()
    assert fake.plan.next_due() is None
    fake.plan.set("a", at(30))
    assert fake.plan.next_due() == at(30)
    fake.plan.set("b", at(10))
    assert fake.plan.next_due() == at(10)
    fake.plan.set("b", at(40))  # moved later: a is now first
    assert fake.plan.next_due() == at(30)
    fake.plan.set("a", None)
    assert fake.plan.next_due() == at(40)
    fake.plan.set("b", None)
    assert fake.plan.next_due() is None


# --- with the real clock and the thread ------------------------------------------------------


class Recorder:
    """A callback that notes what it got and when, on the monotonic clock."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float]] = []
        self.arrived = threading.Event()

    def __call__(self, key: str) -> None:
        self.got.append((key, time.monotonic()))
        self.arrived.set()


@pytest.mark.timeout(10)
def test_the_thread_calls_back_when_a_key_is_due() -> None:
    recorder = Recorder()
    plan: scheduler.Scheduler[str] = scheduler.Scheduler(recorder)
    before = set(threading.enumerate())
    plan.start()
    ours = set(threading.enumerate()) - before
    try:
        started = time.monotonic()
        plan.set("soon", datetime.now(UTC) + timedelta(seconds=0.3))
        assert recorder.arrived.wait(2.0), "the callback never came"
    finally:
        plan.stop()
    assert [key for key, _ in recorder.got] == ["soon"]
    elapsed = recorder.got[0][1] - started
    assert 0.3 <= elapsed <= 1.0
    assert [thread.name for thread in ours] == ["keywright-scheduler"]
    assert not any(thread.is_alive() for thread in ours)  # stop() returned and it is gone
    assert len(plan) == 0


@pytest.mark.timeout(10)
def test_an_earlier_key_wakes_a_thread_waiting_for_a_later_one() -> None:
    recorder = Recorder()
    consulted = threading.Event()

    def clock() -> datetime:
        if threading.current_thread().name == "keywright-scheduler":
            consulted.set()  # it holds the lock until it waits, so `set` comes after
        return datetime.now(UTC)

    plan: scheduler.Scheduler[str] = scheduler.Scheduler(recorder, clock)
    plan.set("later", datetime.now(UTC) + timedelta(hours=1))
    plan.start()
    try:
        assert consulted.wait(2.0), "the thread never looked at the time"
        started = time.monotonic()
        plan.set("sooner", datetime.now(UTC) + timedelta(seconds=0.2))
        assert recorder.arrived.wait(2.0), "the thread slept through the earlier key"
    finally:
        plan.stop()
    assert [key for key, _ in recorder.got] == ["sooner"]
    assert recorder.got[0][1] - started <= 1.0
    assert len(plan) == 1


@pytest.mark.timeout(10)
def test_a_failing_callback_does_not_stop_the_thread() -> None:
    got: list[str] = []
    done = threading.Event()

    def due(key: str) -> None:
        got.append(key)
        if key == "boom":
            raise RuntimeError("lifecycle failed")
        done.set()

    plan: scheduler.Scheduler[str] = scheduler.Scheduler(due)
    plan.start()
    try:
        now = datetime.now(UTC)
        plan.set("boom", now + timedelta(seconds=0.05))
        plan.set("fine", now + timedelta(seconds=0.25))
        assert done.wait(2.0), "the key after a failure never came"
    finally:
        plan.stop()
    assert got == ["boom", "fine"]


@pytest.mark.timeout(10)
def test_stop_without_start_returns() -> None:
    plan: scheduler.Scheduler[str] = scheduler.Scheduler(lambda key: None)
    plan.stop()
    assert len(plan) == 0


@pytest.mark.timeout(30)
def test_ten_thousand_keys_cost_one_thread() -> None:
    called: list[str] = []
    plan: scheduler.Scheduler[str] = scheduler.Scheduler(called.append)
    far = datetime(2100, 1, 1, tzinfo=UTC)
    offsets = [(i * 7919) % 10_000 for i in range(10_000)]  # every offset once, shuffled
    assert sorted(offsets) == list(range(10_000))
    before = set(threading.enumerate())
    plan.start()
    ours = set(threading.enumerate()) - before
    try:
        for offset in offsets:
            plan.set(f"key-{offset}", far + timedelta(minutes=offset))
        assert [thread.name for thread in ours] == ["keywright-scheduler"]  # one for all
        assert len(plan) == 10_000
        assert plan.next_due() == far
        plan.set("key-0", None)
        assert plan.next_due() == far + timedelta(minutes=1)
    finally:
        plan.stop()
    assert not any(thread.is_alive() for thread in ours)
    assert called == []

