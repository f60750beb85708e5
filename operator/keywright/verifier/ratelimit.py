"""In-process limits, for a verifier without the shared backend (exact for one replica):
per-key token buckets (`rateLimit.requests` per `rateLimit.period`, bursts up to it),
and quotas kept by the reference model (core/limits.py) in memory.

Owns: the bucket and quota state, one small entry per ApiKey that has a limit and has
been used. Pure but for that state; the time is a parameter.
"""

from __future__ import annotations

import threading

from keywright.core import limits
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


class Quotas:
    """Credits per ApiKey, in this process (lost on restart: they start again from
    status.usage, as with a store that lost its data)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], limits.State] = {}
        self._lock = threading.Lock()

    def __call__(self, record: index.KeyRecord, now: float) -> limits.Decision:
        assert record.quota is not None
        with self._lock:
            state = self._state.setdefault((record.namespace, record.name), limits.State())
            return limits.decide(state, round(now * limits.MICROS), None, record.quota,
                                 record.reset_token, record.seed)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._state.pop((namespace, name), None)
