"""The shared limits backend's wire: the Lua script (limits_script.lua) and how a
request's limits become its keys and arguments, and its reply a decision.

Owns: the Redis key names (one hash tag per ApiKey, so both keys of a key share a
cluster slot), the argument order the script expects, and the reply's meaning
(core.limits.Decision). The arithmetic is core/limits.py's, checked against the script
by a property test on a real Redis.
Must not: decide anything itself, or reach Redis (the backend that calls the script
owns the connection).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keywright.core import limits

SCRIPT = Path(__file__).with_name("limits_script.lua").read_text()


def keys(namespace: str, name: str) -> tuple[str, str]:
    """The sliding log's key and the quota's, in one hash slot."""
    tag = f"{{kw:{namespace}/{name}}}"
    return f"{tag}:rate", f"{tag}:quota"


def arguments(rate: limits.Rate | None, quota: limits.Quota | None, reset_token: str = "",
              seed: limits.Seed = limits.NO_SEED, now_us: int | None = None) -> list[str]:
    """ARGV for the script; `now_us` only in tests (the script reads Redis's clock)."""
    return [
        str(rate.requests if rate else 0), str(rate.period_us if rate else 0),
        str(quota.limit if quota else 0), str(quota.every_us if quota else 0),
        str(quota.amount if quota else 0), reset_token,
        "" if seed.remaining is None else str(seed.remaining),
        "" if seed.refilled_at_us is None else str(seed.refilled_at_us),
        "" if now_us is None else str(now_us),
    ]


def decision(reply: Sequence[Any]) -> limits.Decision:
    """The script's reply as a Decision (-1 stands for none)."""
    allowed, code, retry, remaining, reset, credits, refilled = reply
    return limits.Decision(int(allowed) == 1, code.decode() if isinstance(code, bytes)
                           else str(code), _value(retry), _value(remaining), _value(reset),
                           _value(credits), _value(refilled))


def _value(item: Any) -> int | None:
    number = int(item)
    return None if number == -1 else number
