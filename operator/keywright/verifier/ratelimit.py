"""In-process limits, for a verifier without the shared backend (exact for one replica):
rate limits and quotas kept by the reference model (core/limits.py) in memory, so they
mean exactly what the shared backend's do (a sliding log: N in any period).

Owns: the headers a client is told its rate limit in (whichever backend decided), and
one small state per ApiKey that has a limit and has been used (a rate-limited
key's log holds one entry per allowed request still in its window). Pure but for that
state; the time is a parameter.
Must not: read the clock, or keep anything about a key the index has forgotten
(`forget`).
"""

from __future__ import annotations

import math
import threading

from keywright.core import limits
from keywright.verifier import index


def rate_of(record: index.KeyRecord) -> limits.Rate | None:
    """The key's rate limit in the model's units, or None."""
    if record.rate is None:
        return None
    requests, period = record.rate
    return limits.Rate(requests, round(period * limits.MICROS))


class Limits:
    """Rate limits and quotas per ApiKey, in this process (lost on restart: quotas start
    again from status.usage, as with a store that lost its data)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], limits.State] = {}
        self._lock = threading.Lock()

    def __call__(self, record: index.KeyRecord, now: float) -> limits.Decision:
        """Decide one request of a key with a rate limit or a quota (or both)."""
        with self._lock:
            state = self._state.setdefault((record.namespace, record.name), limits.State())
            return limits.decide(state, round(now * limits.MICROS), rate_of(record),
                                 record.quota, record.reset_token, record.seed)

    def rate_check(self, record: index.KeyRecord, now: float) -> float | None:
        """`decision.decide`'s rate hook (in-process use without HTTP): None when the
        request may pass, else the seconds until it is worth trying again."""
        with self._lock:
            state = self._state.setdefault((record.namespace, record.name), limits.State())
            found = limits.decide(state, round(now * limits.MICROS), rate_of(record), None)
        return None if found.allowed else (found.retry_after_us or 0) / limits.MICROS

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._state.pop((namespace, name), None)


def headers(rate: limits.Rate, decision: limits.Decision) -> list[tuple[bytes, bytes]]:
    """What a client is told about its rate limit, on 200 and 429: the widespread
    X-RateLimit-* trio and the IETF RateLimit-Policy / RateLimit pair."""
    period = max(1, math.ceil(rate.period_us / limits.MICROS))
    remaining = decision.rate_remaining or 0
    reset = max(0, math.ceil((decision.rate_reset_us or 0) / limits.MICROS))
    return [
        (b"x-ratelimit-limit", str(rate.requests).encode()),
        (b"x-ratelimit-remaining", str(remaining).encode()),
        (b"x-ratelimit-reset", str(reset).encode()),
        (b"ratelimit-policy", f'"keywright";q={rate.requests};w={period}'.encode()),
        (b"ratelimit", f'"keywright";r={remaining};t={reset}'.encode()),
    ]
