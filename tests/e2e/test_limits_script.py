"""The limits script on a real redis-server against the reference model (core/limits.py):
the same requests at the same instants get the same answers, through refills, resets,
period edges and a store that lost its data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keywright.core import limits
from keywright.dev.redis import RedisServer
from keywright.verifier import limits_redis

S = limits.MICROS
T0 = 1_796_000_000 * S  # a real epoch time: the script's doubles must stay exact


@pytest.fixture(scope="module")
def store() -> Iterator[redis.Redis]:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


rates = st.none() | st.builds(limits.Rate, st.integers(1, 4),
                              st.sampled_from([1 * S, 2_500_000, 10 * S]))
quotas = st.none() | st.builds(limits.Quota, st.integers(1, 4),
                               st.sampled_from([0, 1 * S, 3 * S]), st.integers(0, 3))
steps = st.lists(st.tuples(
    st.sampled_from([0, 1, 999_999, 1 * S, 2_500_000, 3 * S, 10 * S]) | st.integers(0, 4 * S),
    st.sampled_from(["", "", "", "r1", "r2"]),  # the reset annotation's value
    st.sampled_from([False] * 12 + [True]),  # the store loses its data before this one
), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=rates, quota=quotas, steps=steps)
def test_the_script_decides_as_the_model_does(
        store: redis.Redis, rate: limits.Rate | None, quota: limits.Quota | None,
        steps: list[tuple[int, str, bool]]) -> None:
    script = store.register_script(limits_redis.SCRIPT)
    keys = list(limits_redis.keys("prop", uuid.uuid4().hex))
    state, now, seed, last = limits.State(), T0, limits.NO_SEED, None
    for dt, token, lost in steps:
        now += dt
        if lost and last is not None:
            store.delete(*keys)  # as a Redis restart without persistence would
            state = limits.State()
            seed = limits.Seed(last.credits, last.refilled_at_us)  # status.usage
        expected = limits.decide(state, now, rate, quota, token, seed)
        got = limits_redis.decision(script(keys=keys, args=limits_redis.arguments(
            rate, quota, token, seed, now_us=now)))
        assert got == expected, f"at +{(now - T0) / S:.6f}s"
        last = got


def test_the_script_reads_the_clock_of_redis(store: redis.Redis) -> None:
    script = store.register_script(limits_redis.SCRIPT)
    keys = list(limits_redis.keys("clock", uuid.uuid4().hex))
    seconds, micros = store.time()
    before = seconds * S + micros
    first = limits_redis.decision(script(keys=keys, args=limits_redis.arguments(
        None, limits.Quota(1, 3600 * S))))
    assert first.allowed
    assert first.refilled_at_us is not None
    assert before <= first.refilled_at_us < before + 5 * S
