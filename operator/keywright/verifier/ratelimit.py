"""Per-key token buckets: `rateLimit.requests` per `rateLimit.period`, bursts up to it.

Owns: the bucket state, one small entry per ApiKey that has a rate limit and has been
used. Pure but for that state; the time is a parameter.
"""

from __future__ import annotations

import threading

from keywright.verifier import index


class Buckets:
    def __init__(self) -> None:
        self._state: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, record: index.KeyRecord, now: float) -> float | None:
        """Take one token: None if there was one, else the seconds until there is."""
        assert record.rate is not None
        capacity, period = record.rate
        per_second = capacity / period
        key = (record.namespace, record.name)
        with self._lock:
            tokens, last = self._state.get(key, (float(capacity), now))
            tokens = min(float(capacity), tokens + max(0.0, now - last) * per_second)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return None
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / per_second

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._state.pop((namespace, name), None)
