"""The operator's Prometheus metrics: one set of gauges per ApiKey, served on /metrics.

Owns: the metric names and labels (`keywright_apikey_*`), the board of what each ApiKey's
last watch event said (a few numbers and words per key, replaced on every event, dropped
when the key is deleted), turning it into metric families when scraped, and the HTTP
server (`--metrics-port`).
Must not: call the Kubernetes API, decide anything, or label with anything but an
ApiKey's namespace, name, revision and fixed words: the series are bounded by the keys,
never by requests. Nothing secret reaches it (no hash, no key, no ciphertext).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keywright.core import aging, times

Key = tuple[str, str]
READY = ("True", "False", "Unknown")


@dataclass(frozen=True, slots=True)  # one per ApiKey: no __dict__ each
class Facts:
    """What one ApiKey's metrics say."""

    created: float
    expires: float | None
    last_used: float | None
    by_revision: tuple[tuple[str, float], ...]
    ready: str  # the Ready condition's status, Unknown while there is none
    active: bool
    phase: str
    credits: float | None
    credit_limit: float | None
    expiring_soon: bool


def _seconds(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return times.parse(text).timestamp()
    except ValueError:
        return None


def facts_of(body: Mapping[str, Any]) -> Facts:
    """An ApiKey's metrics from its object as watched; what is malformed is left out."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    status = body.get("status") or {}
    found = {c.get("type"): c.get("status") for c in status.get("conditions") or []
             if isinstance(c, Mapping)}
    usage, quota = status.get("usage") or {}, spec.get("quota") or {}
    by_revision = status.get("lastUsedByRevision") or {}
    return Facts(
        created=_seconds(meta.get("creationTimestamp")) or 0.0,
        expires=_seconds(status.get("expiresAt")),
        last_used=_seconds(status.get("lastUsedAt")),
        by_revision=tuple(sorted((str(r), s) for r, t in by_revision.items()
                                 if (s := _seconds(t)) is not None)),
        ready=str(found["Ready"]) if found.get("Ready") in READY else "Unknown",
        active=spec.get("active", True) is not False,
        phase=str(status.get("phase") or "Pending"),
        credits=float(usage["remaining"]) if isinstance(usage.get("remaining"), int) else None,
        credit_limit=float(quota["limit"]) if isinstance(quota.get("limit"), int) else None,
        expiring_soon=found.get(aging.EXPIRING_SOON) == "True",
    )


class Board:
    """Each ApiKey's facts as its last watch event left them. Written from the event
    loop, read by the scrape thread: one lock, held for a dictionary operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Key, Facts] = {}

    def put(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        found = facts_of(body)
        with self._lock:
            self._keys[namespace, name] = found

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._keys.pop((namespace, name), None)

    def snapshot(self) -> list[tuple[Key, Facts]]:
        with self._lock:
            return list(self._keys.items())


class _Keys(Collector):
    def __init__(self, board: Board) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "name"]

        def gauge(name: str, text: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"keywright_apikey_{name}", text, labels=[*labels, *extra])

        expiration = gauge("expiration_timestamp_seconds",
                           "When the key expires (status.expiresAt); absent for Never.")
        created = gauge("created_timestamp_seconds", "When the ApiKey was created.")
        last_used = gauge("last_used_timestamp_seconds",
                          "The key's last use, any revision (status.lastUsedAt); absent "
                          "if never used.")
        by_revision = gauge("revision_last_used_timestamp_seconds",
                            "Last use of each revision (status.lastUsedByRevision).",
                            ("revision",))
        ready = gauge("ready_status", "The Ready condition: 1 for its current status.",
                      ("condition",))
        info = gauge("info", "1 per ApiKey, with spec.active and status.phase.",
                     ("active", "phase"))
        credits = gauge("credits_remaining",
                        "Quota credits left (status.usage.remaining), for keys with a quota.")
        limit = gauge("credits_limit", "spec.quota.limit, for keys with a quota.")
        soon = gauge("expiring_soon", "1 while the ExpiringSoon condition is True.")
        for (namespace, name), f in self.board.snapshot():
            key = [namespace, name]
            created.add_metric(key, f.created)
            if f.expires is not None:
                expiration.add_metric(key, f.expires)
            if f.last_used is not None:
                last_used.add_metric(key, f.last_used)
            for revision, when in f.by_revision:
                by_revision.add_metric([*key, revision], when)
            for status in READY:
                ready.add_metric([*key, status], 1.0 if f.ready == status else 0.0)
            info.add_metric([*key, "true" if f.active else "false", f.phase], 1.0)
            if f.credits is not None:
                credits.add_metric(key, f.credits)
            if f.credit_limit is not None:
                limit.add_metric(key, f.credit_limit)
            soon.add_metric(key, 1.0 if f.expiring_soon else 0.0)
        yield from (expiration, created, last_used, by_revision, ready, info, credits, limit,
                    soon)


def registry(board: Board) -> CollectorRegistry:
    found = CollectorRegistry()
    prometheus_client.ProcessCollector(registry=found)
    prometheus_client.PlatformCollector(registry=found)
    found.register(_Keys(board))
    return found


def serve(board: Board, host: str, port: int) -> None:
    """/metrics on HOST:PORT, from a thread of its own (prometheus-client's server)."""
    prometheus_client.start_http_server(port, addr=host, registry=registry(board))
