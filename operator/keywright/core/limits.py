"""Rate limits and usage quotas: the pure reference model of what the shared limits
backend decides (the Lua script in verifier/limits_redis.py does the same arithmetic
inside Redis, and a property test holds the two together).

Owns: the arithmetic, in whole microseconds:
- a rate limit of `requests` per `period` is a sliding log: a request is allowed when
  fewer than `requests` allowed requests lie in the half-open window (now - period, now].
  That is exact for every window of that length, wherever it starts (a token bucket or
  GCRA with a burst of `requests` lets up to 2 x requests - 1 through in the first
  period); it costs one log entry per allowed request still in the window;
- a quota is a number of credits: each allowed request spends one; a key starts with
  `limit` credits (or, after the store lost its data, with what status last said);
  every `refill.every` after the last refill, lazily, credits become
  min(limit, credits + amount); a reset (a new value of the reset annotation) sets
  `limit` credits and restarts the refill schedule; a new `limit` takes effect at the
  next refill or reset;
- order: an exhausted quota answers USAGE_LIMIT_REACHED (whatever the rate); else the
  rate limit may answer RATE_LIMITED; only an allowed request is logged or spends.
Must not: read the clock (now is a parameter), or do I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

MICROS = 1_000_000


@dataclass(frozen=True)
class Rate:
    requests: int
    period_us: int


@dataclass(frozen=True)
class Quota:
    limit: int
    every_us: int = 0  # 0: never refilled
    amount: int = 0  # credits added per refill; 0 means `limit`

    @property
    def refill(self) -> int:
        return self.amount or self.limit


@dataclass(frozen=True)
class Seed:
    """Where a quota starts when the store has no state for the key (first use, or the
    store lost its data): `status.usage` as last written, if any."""

    remaining: int | None = None
    refilled_at_us: int | None = None


NO_SEED = Seed()


@dataclass
class State:
    """One key's state, as the store keeps it."""

    log: list[int] = field(default_factory=list)  # allowed requests' times, ascending
    credits: int | None = None  # None: no quota state yet
    refilled_at_us: int = 0
    reset_token: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str  # OK, RATE_LIMITED or USAGE_LIMIT_REACHED
    retry_after_us: int | None  # when it is worth trying again; None: not by waiting
    rate_remaining: int | None  # requests left in the window after this one
    rate_reset_us: int | None  # until the oldest request counted leaves the window
    credits: int | None  # credits left after this one
    refilled_at_us: int | None


def decide(state: State, now_us: int, rate: Rate | None, quota: Quota | None,
           reset_token: str = "", seed: Seed = NO_SEED) -> Decision:
    """Decide one request at `now_us`, updating `state` as the store would."""
    if rate is not None:
        cutoff = now_us - rate.period_us
        del state.log[:bisect.bisect_right(state.log, cutoff)]
    credits: int | None = None
    if quota is not None:
        credits = _refill(state, now_us, quota, reset_token, seed)
        if credits <= 0:
            retry = (state.refilled_at_us + quota.every_us - now_us) if quota.every_us \
                else None
            return Decision(False, "USAGE_LIMIT_REACHED", retry, *_rate_view(state, now_us,
                                                                               rate, 0),
                            0, state.refilled_at_us)
    if rate is not None and len(state.log) >= rate.requests:
        wait = state.log[0] + rate.period_us - now_us
        return Decision(False, "RATE_LIMITED", wait, 0, wait, credits,
                        state.refilled_at_us if quota is not None else None)
    if rate is not None:
        state.log.append(now_us)
    if quota is not None:
        assert credits is not None
        credits -= 1
        state.credits = credits
    remaining, reset = _rate_view(state, now_us, rate, 0)
    return Decision(True, "OK", None, remaining, reset, credits,
                    state.refilled_at_us if quota is not None else None)


def _refill(state: State, now_us: int, quota: Quota, reset_token: str, seed: Seed) -> int:
    if state.credits is None:
        state.credits = quota.limit if seed.remaining is None else min(seed.remaining,
                                                                       quota.limit)
        state.refilled_at_us = now_us if seed.refilled_at_us is None else min(
            seed.refilled_at_us, now_us)
        state.reset_token = reset_token
    if reset_token != state.reset_token:
        state.credits = quota.limit
        state.refilled_at_us = now_us
        state.reset_token = reset_token
    if quota.every_us > 0 and now_us >= state.refilled_at_us + quota.every_us:
        times = (now_us - state.refilled_at_us) // quota.every_us
        state.credits = min(quota.limit, state.credits + times * quota.refill)
        state.refilled_at_us += times * quota.every_us
    return state.credits


def _rate_view(state: State, now_us: int, rate: Rate | None,
               _: int) -> tuple[int | None, int | None]:
    if rate is None:
        return None, None
    remaining = max(0, rate.requests - len(state.log))
    reset = (state.log[0] + rate.period_us - now_us) if state.log else 0
    return remaining, reset
