"""The shared limits backend: exact rate limits across verifier replicas, on Redis.

Owns: the connection (redis-py's asyncio client with hiredis; the only module that
imports it), checking at start that the URL, the password and scripting work (one clear
line and the verifier stops, never serving with limits silently off), loading the
script once and calling it by SHA (loading it again when Redis restarted and forgot it),
the per-call timeout, the circuit breaker that makes a dead Redis cost no latency, what
happens then (`on_error`: open lets the request through, closed answers 429), one log
line per state change, and the backend's metrics.
Must not: decide (the script and core/limits.py do), block the event loop, or turn a
backend failure into a 5xx or a hung request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis
import redis.asyncio
import redis.exceptions

from keywright.core import errors, limits
from keywright.verifier import index, limits_redis

log = logging.getLogger(__name__)

URL_ENV = "KEYWRIGHT_REDIS_URL"
DEFAULT_TIMEOUT = 0.05  # seconds per call: a verification is worth more than a limit
COOLDOWN = (0.25, 4.0)  # seconds the breaker stays open: doubling from, up to
OnError = Literal["open", "closed"]


class BackendConfigError(errors.KeywrightError):
    """The limits backend is misconfigured (URL, password, scripting): the verifier must
    not start, since it would serve with limits silently off."""


@dataclass(frozen=True)
class Verdict:
    """The backend's answer for one request: a Decision, or None when the backend is
    down and `on_error` let the request through (or, closed, refused it)."""

    decision: limits.Decision | None
    rate: limits.Rate | None


def url_with_password(url: str, password_file: Path | None) -> str:
    """The URL, with the password from a mounted file when given (not on a command
    line, where `ps` would show it)."""
    if password_file is None:
        return url
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        raise BackendConfigError(f"--redis-password-file {password_file}: "
                                 f"{exc.strerror}") from None
    try:
        parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise BackendConfigError(f"--redis-url is not a Redis URL ({exc}); "
                                 "expected redis://, rediss:// or unix://") from None
    if "password" in parsed:
        raise BackendConfigError("--redis-url has a password and --redis-password-file "
                                 "gives one too: keep one")
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        return f"{url}{'&' if '?' in url else '?'}password={password}"
    return f"{scheme}://:{password}@{rest}"


def check(url: str, timeout: float = 2.0) -> str | None:
    """At start, before serving: the URL parses, the password is right and Redis runs
    scripts. A misconfiguration raises BackendConfigError (one clear line); a Redis that
    is merely unreachable returns why, for a warning (an outage like any other)."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
    except ValueError as exc:
        raise BackendConfigError(f"--redis-url is not a Redis URL ({exc}); "
                                 "expected redis://, rediss:// or unix://") from None
    try:
        client.script_load(limits_redis.SCRIPT)
    except redis.exceptions.AuthenticationError:
        raise BackendConfigError("Redis refused the password in --redis-url "
                                 "(or --redis-password-file)") from None
    except redis.exceptions.NoPermissionError as exc:
        raise BackendConfigError(f"Redis refused to load the limits script ({exc}); "
                                 "the verifier's user needs SCRIPT, EVALSHA and the "
                                 "commands the script runs") from None
    except redis.exceptions.ResponseError as exc:
        raise BackendConfigError(f"Redis refused the limits script ({exc})") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


class RedisLimits:
    """One per event loop (the verifier's worker). `now` is only for the breaker."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 on_error: OnError = "open", on_quota_error: OnError = "closed",
                 now: Callable[[], float] = time.monotonic) -> None:
        self.url, self.timeout, self._now = url, timeout, now
        self.on_error, self.on_quota_error = on_error, on_quota_error
        self._client: redis.asyncio.Redis | None = None
        self._sha: str | None = None
        self.up = True
        self._open_until = 0.0
        self._cooldown = COOLDOWN[0]
        self.errors = 0  # for the metrics: calls that failed or timed out

    def rate(self, record: index.KeyRecord) -> limits.Rate | None:
        if record.rate is None:
            return None
        requests, period = record.rate
        return limits.Rate(requests, round(period * limits.MICROS))

    async def check(self, record: index.KeyRecord) -> Verdict:
        """One round trip for a key with a rate limit or a quota (both checked at once):
        the script's decision, or None (down)."""
        rate = self.rate(record)
        if self._now() < self._open_until:
            return Verdict(None, rate)  # the breaker is open: no call, no wait
        try:
            reply = await asyncio.wait_for(self._call(record, rate), self.timeout)
        except Exception as exc:  # any failure of the backend is an outage
            self._failed(exc)
            return Verdict(None, rate)
        if not self.up:
            self.up = True
            self._cooldown = COOLDOWN[0]
            log.warning("limits backend: Redis answers again; limits are shared and exact")
        return Verdict(limits_redis.decision(reply), rate)

    async def _call(self, record: index.KeyRecord, rate: limits.Rate | None) -> Any:
        client = self._client
        if client is None:
            client = self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                health_check_interval=0)
        keys = limits_redis.keys(record.namespace, record.name)
        argv = limits_redis.arguments(rate, record.quota, record.reset_token, record.seed)
        if self._sha is None:
            self._sha = await client.script_load(limits_redis.SCRIPT)
        try:
            return await client.evalsha(self._sha, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:  # Redis restarted and forgot it
            self._sha = await client.script_load(limits_redis.SCRIPT)
            return await client.evalsha(self._sha, len(keys), *keys, *argv)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._open_until = self._now() + self._cooldown
        self._cooldown = min(COOLDOWN[1], self._cooldown * 2)
        if self.up:
            self.up = False

            def what(mode: OnError) -> str:
                return "lets them through" if mode == "open" else "refuses them (429)"
            log.warning("limits backend: Redis failed (%s); until it answers again, for "
                        "keys with a rate limit the verifier %s, for keys with a quota "
                        "it %s", _describe(exc), what(self.on_error),
                        what(self.on_quota_error))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer within the timeout"
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


class WriteClaims:
    """At most one status write per ApiKey per interval across every replica: before a
    replica sends a key's usage patch it claims the key in Redis (SET NX with an
    expiry); a replica that finds it claimed keeps its note for later. Synchronous: the
    usage thread calls it, with a connection of its own. If Redis cannot be asked, the
    replica writes anyway (usage is never lost; the bound is then per replica)."""

    def __init__(self, url: str, interval: float, timeout: float = 0.5) -> None:
        self.interval = interval
        self._client = redis.Redis.from_url(url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)

    def claim(self, namespace: str, name: str) -> bool:
        key = limits_redis.keys(namespace, name)[0].replace(":rate", ":written")
        try:
            return bool(self._client.set(key, "1", nx=True,
                                         px=max(1, int(self.interval * 1000))))
        except (redis.exceptions.RedisError, OSError):
            return True

    def credits(self, namespace: str, name: str) -> tuple[int, float] | None:
        """The key's quota as Redis holds it (credits, refilled at, in seconds), or None
        (no quota there, or Redis cannot be asked). Before a refill that is due but not
        yet applied, this counts fewer credits than there are: restarting from it never
        hands out a credit twice."""
        key = limits_redis.keys(namespace, name)[1]
        try:
            credits, refilled = self._client.hmget(key, ["credits", "refilled_at"])
        except (redis.exceptions.RedisError, OSError):
            return None
        if credits is None or refilled is None:
            return None
        return max(0, int(credits)), int(refilled) / limits.MICROS

    def close(self) -> None:
        self._client.close()
