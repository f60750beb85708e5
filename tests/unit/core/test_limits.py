"""The limits reference model as tables: a sequence of requests at given times, and what
each one is answered. Times are seconds from the first request; one row, one story."""

from __future__ import annotations

import pytest

from keywright.core import limits

S = limits.MICROS


def run(times: list[float], rate: limits.Rate | None = None,
        quota: limits.Quota | None = None, tokens: list[str] | None = None,
        seed: limits.Seed = limits.NO_SEED) -> list[limits.Decision]:
    state = limits.State()
    return [limits.decide(state, int(t * S), rate, quota,
                          (tokens or [""] * len(times))[i], seed)
            for i, t in enumerate(times)]


def codes(decisions: list[limits.Decision]) -> list[str]:
    return [d.code for d in decisions]


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        pytest.param([0, 0, 0, 0], ["OK", "OK", "OK", "RATE_LIMITED"],
                     id="3 per 10s: a burst of 3 passes, the 4th waits"),
        pytest.param([0, 0, 0, 9.999999, 10], ["OK", "OK", "OK", "RATE_LIMITED", "OK"],
                     id="a slot frees exactly one period after the request that took it"),
        pytest.param([0, 5, 9, 10, 14, 15], ["OK", "OK", "OK", "OK", "RATE_LIMITED", "OK"],
                     id="any 10s window holds at most 3, wherever it starts"),
        pytest.param([0, 0, 0, 0, 0, 10, 10, 10, 10],
                     ["OK", "OK", "OK", "RATE_LIMITED", "RATE_LIMITED", "OK", "OK", "OK",
                      "RATE_LIMITED"],
                     id="denied requests take no slot: exactly 3 per window under load"),
    ],
)
def test_a_rate_limit_is_a_sliding_log(times: list[float], expected: list[str]) -> None:
    assert codes(run(times, rate=limits.Rate(3, 10 * S))) == expected


def test_retry_after_and_the_window_view_are_exact() -> None:
    decisions = run([0, 2, 4, 5], rate=limits.Rate(3, 10 * S))
    assert [(d.rate_remaining, d.rate_reset_us) for d in decisions[:3]] == [
        (2, 10 * S), (1, 8 * S), (0, 6 * S)]
    assert decisions[3].retry_after_us == 5 * S  # the request at 0 leaves at 10
    assert decisions[3].rate_remaining == 0


@pytest.mark.parametrize(
    ("quota", "times", "tokens", "expected", "credits"),
    [
        pytest.param(limits.Quota(2), [0, 1, 2], None,
                     ["OK", "OK", "USAGE_LIMIT_REACHED"], [1, 0, 0],
                     id="2 credits, no refill: the third is refused, for good"),
        pytest.param(limits.Quota(2, 10 * S), [0, 1, 2, 10], None,
                     ["OK", "OK", "USAGE_LIMIT_REACHED", "OK"], [1, 0, 0, 1],
                     id="refilled to the limit one period after the start"),
        pytest.param(limits.Quota(5, 10 * S, 1), [0, 1, 2, 3, 4, 5, 10, 10], None,
                     ["OK"] * 5 + ["USAGE_LIMIT_REACHED", "OK", "USAGE_LIMIT_REACHED"],
                     [4, 3, 2, 1, 0, 0, 0, 0], id="a refill of 1 adds one credit"),
        pytest.param(limits.Quota(3, 10 * S, 1), [0, 35], None, ["OK", "OK"], [2, 2],
                     id="missed refills add up, never above the limit"),
        pytest.param(limits.Quota(2), [0, 1, 2, 3], ["a", "a", "a", "b"],
                     ["OK", "OK", "USAGE_LIMIT_REACHED", "OK"], [1, 0, 0, 1],
                     id="a new reset token restores the credits"),
    ],
)
def test_a_quota_spends_one_credit_per_allowed_request(
        quota: limits.Quota, times: list[float], tokens: list[str] | None,
        expected: list[str], credits: list[int]) -> None:
    decisions = run(times, quota=quota, tokens=tokens)
    assert codes(decisions) == expected
    assert [d.credits for d in decisions] == credits


def test_an_empty_quota_says_when_the_next_refill_comes() -> None:
    decisions = run([0, 4], quota=limits.Quota(1, 10 * S))
    assert decisions[1].code == "USAGE_LIMIT_REACHED"
    assert decisions[1].retry_after_us == 6 * S
    assert run([0, 4], quota=limits.Quota(1))[1].retry_after_us is None  # no refill: never


def test_an_exhausted_quota_answers_first_and_rate_denials_spend_nothing() -> None:
    decisions = run([0, 0, 0, 1], rate=limits.Rate(1, 10 * S), quota=limits.Quota(2))
    assert codes(decisions) == ["OK", "RATE_LIMITED", "RATE_LIMITED", "RATE_LIMITED"]
    assert [d.credits for d in decisions] == [1, 1, 1, 1]
    drained = run([0, 20, 40], rate=limits.Rate(1, 10 * S), quota=limits.Quota(2))
    assert codes(drained) == ["OK", "OK", "USAGE_LIMIT_REACHED"]


def test_a_store_that_lost_its_data_starts_from_what_status_said() -> None:
    seed = limits.Seed(remaining=1, refilled_at_us=0)
    decisions = run([5, 6], quota=limits.Quota(10, 100 * S), seed=seed)
    assert codes(decisions) == ["OK", "USAGE_LIMIT_REACHED"]
    assert decisions[1].retry_after_us == 94 * S  # refilled at 0: next refill at 100


def test_a_new_limit_applies_at_the_next_refill() -> None:
    state = limits.State()
    first = limits.decide(state, 0, None, limits.Quota(5, 10 * S))
    assert first.credits == 4
    lowered = limits.Quota(2, 10 * S)
    assert limits.decide(state, 1 * S, None, lowered).credits == 3  # not yet
    assert limits.decide(state, 10 * S, None, lowered).credits == 1  # refilled to 2, spent 1
