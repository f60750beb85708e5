"""The verifier's HTTP face, as a plain ASGI application (no web framework).

Owns: the routes (`/verify` and anything under it, `/healthz`, `/readyz`, `/metrics`),
turning an HTTP request into a `decision.Ask`, and an `Answer` into the contract's
status, headers and `{"code": ...}` body; one audit line, one metric observation and one
usage note per decision.
Must not: import a server (server.py picks and runs one), block, or let the key reach
anything but `decision.decide`.

`/verify/...` is accepted because Envoy's ext_authz (HTTP mode) appends the original
path to the configured prefix.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from keywright.core import hashing, limits
from keywright.verifier import audit, decision, index, limits_backend, metrics, ratelimit, usage

Scope = Mapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)
WARN_EVERY = 60.0  # seconds between two Warning lines for the same gateway requirement
WARN_BUDGET = 10  # Warning lines about requirements in any WARN_EVERY
JSON = (b"content-type", b"application/json")
CHALLENGE = (b"www-authenticate", b'Bearer realm="keywright"')
SCOPE_HEADER, NAMESPACE_HEADER = "x-keywright-scope", "x-keywright-namespace"
BODIES = {code: json.dumps({"code": code}, separators=(",", ":")).encode()
          for code in decision.STATUS}
CODE_HEADER = b"x-keywright-code"  # every refusal names its code: auth_request drops bodies
HEADERS = {code: [JSON, (CODE_HEADER, code.encode()), *([CHALLENGE] if status == 401 else [])]
           if status != 200 else [JSON] for code, status in decision.STATUS.items()}


@dataclass
class VerifierSettings:
    policy: decision.Policy = field(default_factory=decision.Policy)
    max_staleness: float = 0.0  # seconds; 0: /readyz never fails for staleness
    audit: bool = True


class Verifier:
    """The ASGI callable. `peppers`, `ready` and `staleness` come from the sync loop."""

    def __init__(self, keys: index.Index, peppers: Callable[[], hashing.Peppers | None],
                 ready: Callable[[], bool], staleness: Callable[[], float],
                 settings: VerifierSettings | None = None,
                 shared: limits_backend.RedisLimits | None = None) -> None:
        self.keys, self.peppers, self.ready, self.staleness = keys, peppers, ready, staleness
        self.settings = settings or VerifierSettings()
        self.limits = ratelimit.Limits()  # without the shared backend
        self.shared = shared  # limits on Redis, exact across replicas; else in-process
        self.usage = usage.Usage()
        self._warned: dict[frozenset[str], float] = {}  # requirement -> when last logged
        self.metrics = metrics.Metrics(lambda: float(keys.hash_count()), staleness,
                                       keys.holds)
        if shared is not None:
            self.metrics.watch_backend(lambda: shared.up, lambda: shared.errors)
        self._ready = False
        policy = self.settings.policy
        self._checking = dataclasses.replace(policy, judge_address=False)
        self._wanted = frozenset(name.encode() for name in (
            *policy.key_headers, "authorization", "x-forwarded-for", "x-real-ip",
            SCOPE_HEADER, NAMESPACE_HEADER, *audit.URI_HEADERS))

    def forget(self, namespace: str, name: str) -> None:
        """An ApiKey is gone: drop its in-process limits, pending usage and metrics."""
        self.limits.forget(namespace, name)
        self.usage.forget(namespace, name)
        self.metrics.forget(namespace, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/verify" or path.startswith("/verify/"):
            await self._verify(scope, send)
        elif path == "/check":
            await self._check(scope, send)
        elif path == "/healthz":
            await _respond(send, 200, [JSON], b'{"status":"ok"}')
        elif path == "/readyz":
            await self._readyz(send)
        elif path == "/metrics":
            await _respond(send, 200, [(b"content-type", metrics.CONTENT_TYPE.encode())],
                           self.metrics.render())
        else:
            await _respond(send, 404, [JSON], b'{"code":"NOT_FOUND"}')

    async def _verify(self, scope: Scope, send: Send) -> None:
        started, now = time.perf_counter(), time.time()
        headers: dict[str, list[bytes]] = {}
        wanted = self._wanted
        for name, value in scope["headers"]:
            if name in wanted:
                headers.setdefault(name.decode("latin-1"), []).append(value)
        scopes, namespace = _requirements(headers, scope.get("query_string") or b"")
        client = scope.get("client")
        peer = client[0] if client else ""
        peppers = self.peppers()
        if not self._ready:  # once ready, always: the first list and a pepper stay loaded
            self._ready = self.ready()
        if peppers is None or not self._ready:
            answer = decision.Answer(decision.NOT_READY, client=peer)
        else:
            answer = decision.decide(decision.Ask(headers, peer, scopes, namespace), self.keys,
                                     peppers, now, self.settings.policy)
        limit_headers: list[tuple[bytes, bytes]] = []
        checked = answer.record
        if answer.code == decision.OK and checked is not None and (
                checked.rate is not None or checked.quota is not None):
            answer, limit_headers = (await self._shared_limits(answer)
                                     if self.shared is not None else
                                     self._local_limits(answer, now))
        code, record = answer.code, answer.record
        if code == decision.OK and record is not None:
            response_headers = [JSON, *record.identity, *limit_headers]
            if record.roles:
                response_headers += self.keys.role_headers(record, scopes)
        elif answer.retry_after is not None:
            response_headers = [*HEADERS[code],
                                (b"retry-after", str(answer.retry_after).encode()),
                                *limit_headers]
        else:
            response_headers = [*HEADERS[code], *limit_headers] if limit_headers \
                else HEADERS[code]
        await _respond(send, answer.status, response_headers, BODIES[code])
        if record is not None:
            self.usage.used(record, now)
        if code == decision.INVALID_REQUIREMENT:
            self._misconfigured(scopes, now)
        if self.settings.audit:
            if answer.client is None:  # rejected before the address mattered; audit names it
                found = decision.client_address(peer, headers,
                                                self.settings.policy.trusted_proxies)
                answer = answer._replace(client=str(found) if found is not None else peer)
            audit.emit(answer, scopes, scope.get("method", ""), _uri(headers), now)
        self.metrics.observe(code, time.perf_counter() - started, record)

    async def _check(self, scope: Scope, send: Send) -> None:
        """What /verify would answer for this key and requirement, and whose key it is,
        with no effect: no use recorded, no rate-limit token or credit spent, no audit
        line; the address and the limits are not judged (`kubectl apikey check`)."""
        headers: dict[str, list[bytes]] = {}
        for name, value in scope["headers"]:
            if name in self._wanted:
                headers.setdefault(name.decode("latin-1"), []).append(value)
        scopes, namespace = _requirements(headers, scope.get("query_string") or b"")
        peppers = self.peppers()
        if not self._ready:
            self._ready = self.ready()
        if peppers is None or not self._ready:
            await _respond(send, 503, HEADERS[decision.NOT_READY], BODIES[decision.NOT_READY])
            return
        answer = decision.decide(decision.Ask(headers, "", scopes, namespace), self.keys,
                                 peppers, time.time(), self._checking)
        record = answer.record
        found: dict[str, Any] = {"code": answer.code, "status": answer.status}
        if record is not None:
            found["apikey"] = {"namespace": record.namespace, "name": record.name,
                               "revision": record.revision,
                               "lastCharacters": record.last_characters,
                               "retiresAt": record.retires_at}
        await _respond(send, 200, [JSON], json.dumps(found).encode())

    async def _shared_limits(self, answer: decision.Answer,
                             ) -> tuple[decision.Answer, list[tuple[bytes, bytes]]]:
        """An OK for a key with a rate limit or a quota, checked against the shared
        backend in one round trip."""
        shared, record = self.shared, answer.record
        assert shared is not None
        assert record is not None
        verdict = await shared.check(record)
        found, rate = verdict.decision, verdict.rate
        if found is None:  # the backend is down: as configured, never a 5xx
            closed = (record.quota is not None and shared.on_quota_error == "closed") or (
                record.rate is not None and shared.on_error == "closed")
            if closed:
                return answer._replace(code=decision.LIMITS_UNAVAILABLE, retry_after=1), []
            return answer, []
        return self._judged(answer, found, rate)

    def _local_limits(self, answer: decision.Answer, now: float,
                      ) -> tuple[decision.Answer, list[tuple[bytes, bytes]]]:
        """An OK for a key with a rate limit or a quota, kept in this process."""
        assert answer.record is not None
        return self._judged(answer, self.limits(answer.record, now),
                            ratelimit.rate_of(answer.record))

    def _judged(self, answer: decision.Answer, found: limits.Decision,
                rate: limits.Rate | None,
                ) -> tuple[decision.Answer, list[tuple[bytes, bytes]]]:
        """The limits' decision as the answer, with the headers a client is told."""
        assert answer.record is not None
        self._credits(answer.record, found)
        shown = ratelimit.headers(rate, found) if rate is not None else []
        return (answer if found.allowed else self._refused(answer, found)), shown

    def _credits(self, record: index.KeyRecord, found: limits.Decision) -> None:
        if record.quota is not None and found.credits is not None \
                and found.refilled_at_us is not None:
            self.usage.credits(record, found.credits, found.refilled_at_us / limits.MICROS)

    @staticmethod
    def _refused(answer: decision.Answer, found: limits.Decision) -> decision.Answer:
        code = decision.USAGE_LIMIT_REACHED if found.code == decision.USAGE_LIMIT_REACHED \
            else decision.RATE_LIMITED
        if found.retry_after_us is None:  # a quota with no refill: not by waiting
            return answer._replace(code=code)
        wait = max(1, -(-found.retry_after_us // limits.MICROS))
        return answer._replace(code=code, retry_after=wait)

    def _misconfigured(self, scopes: frozenset[str], now: float) -> None:
        """A Warning line per requirement no key can meet, at most once a minute each: a
        typo in a gateway's configuration shows in the log at once."""
        if now - self._warned.get(scopes, -WARN_EVERY) < WARN_EVERY:
            return
        # a client may add requirements of its own (a header the gateway passes on): at
        # most WARN_BUDGET lines a minute in all, however many distinct ones it makes up
        self._warned = {k: v for k, v in self._warned.items() if now - v < WARN_EVERY}
        if len(self._warned) >= WARN_BUDGET:
            return
        self._warned[scopes] = now
        wrong = decision.not_scopes(scopes)
        why = (f"{[s[:64] for s in wrong[:4]]!r} is not <Area>.<Read|Write|Update|Delete>" if wrong
               else "it names an area no ApiKey grants a scope in")
        log.warning("a gateway requires scopes %r, which no key can ever have (%s): "
                    "answered 500 INVALID_REQUIREMENT; check the gateway's scope "
                    "configuration, and that it drops X-Keywright-Scope headers clients send",
                    sorted(s[:64] for s in scopes)[:8], why)

    async def _readyz(self, send: Send) -> None:
        stale = self.staleness()
        limit = self.settings.max_staleness
        ready = self.ready() and not (limit and stale > limit)
        body = json.dumps({"ready": ready, "secondsSinceSync": round(stale, 3),
                           "keysIndexed": self.keys.hash_count()}, separators=(",", ":")).encode()
        await _respond(send, 200 if ready else 503, [JSON], body)


def _requirements(headers: Mapping[str, list[bytes]], query: bytes,
                  ) -> tuple[frozenset[str], str | None]:
    """The scopes (all required) and the namespace the gateway asks for, from the query
    and the headers together. Naming two namespaces asks for a key in both: none is."""
    scope_headers = tuple(headers.get(SCOPE_HEADER, ()))
    namespace_headers = tuple(headers.get(NAMESPACE_HEADER, ()))
    size = len(query) + sum(map(len, scope_headers)) + sum(map(len, namespace_headers))
    if size <= CACHED_REQUIREMENTS:
        return _cached_requirements(query, scope_headers, namespace_headers)
    return _parse_requirements(query, scope_headers, namespace_headers)


CACHED_REQUIREMENTS = 1024  # bytes: what a gateway's own requirements fit in many times over


def _parse_requirements(query: bytes, scope_headers: tuple[bytes, ...],
                        namespace_headers: tuple[bytes, ...],
                        ) -> tuple[frozenset[str], str | None]:
    scopes: list[str] = []
    namespaces: set[str] = set()
    if query:
        parsed = urllib.parse.parse_qs(query.decode("latin-1"))
        scopes += parsed.get("scope", [])
        namespaces.update(n.strip() for n in parsed.get("namespace", []))
    scopes += [v.decode("latin-1") for v in scope_headers]
    namespaces.update(v.decode("latin-1").strip() for v in namespace_headers)
    required = frozenset(s.strip() for text in scopes for s in text.split(",") if s.strip())
    namespaces.discard("")
    # ',' cannot be in a namespace's name, so two names joined match no key at all
    return required, ",".join(sorted(namespaces)) if namespaces else None


# a gateway sends the same few requirements again and again; the size limit above keeps
# what a client can stuff into the cache (through headers passed on) to a few MB
_cached_requirements = functools.lru_cache(maxsize=4096)(_parse_requirements)


def _uri(headers: Mapping[str, list[bytes]]) -> str | None:
    for name in audit.URI_HEADERS:
        values = headers.get(name)
        if values:
            return values[0].decode("latin-1")[:2048]
    return None


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                   body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
