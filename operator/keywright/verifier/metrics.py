"""The verifier's Prometheus metrics, on a registry of its own.

Owns: metric names, labels and buckets, and rendering them for `/metrics`.
Must not: label anything with a key, a hash or a client address (unbounded, and the
first is a secret). Labels are decision codes, fixed words and, on the per-ApiKey
counter only, the ApiKey's namespace and name: resource names that anyone who may list
ApiKeys sees, never the key or its hash (neither reaches this module). That counter is
bounded by the ApiKeys indexed, four series each, and an ApiKey's series go with it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from keywright.verifier import decision, index

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
# a decision takes microseconds; the tail that matters to a gateway is in milliseconds
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 1.0)
# the statuses counted per ApiKey: what a key that matched one can be answered (a 500 is
# the gateway's mistake, not the key's, and a 503 comes before any key is looked up)
KEY_STATUSES = ("200", "401", "403", "429")
_KEY_SLOT = {code: KEY_STATUSES.index(str(status)) for code, status in decision.STATUS.items()
             if str(status) in KEY_STATUSES}


class Metrics:
    def __init__(self, keys_indexed: Callable[[], float],
                 seconds_since_sync: Callable[[], float],
                 indexed: Callable[[str, str], bool] = lambda namespace, name: True) -> None:
        self.registry = CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        # decisions and their latency are counted in plain numbers by the one event-loop
        # thread and turned into metric families only when scraped: a Counter and a
        # Histogram would take two locks per request
        self._counts = dict.fromkeys(decision.STATUS, 0)
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._sum = 0.0
        # (namespace, name) -> answers by KEY_STATUSES, for keys that matched an ApiKey;
        # `indexed` says at scrape time whether the ApiKey is still there
        self._by_key: dict[tuple[str, str], list[int]] = {}
        self.indexed = indexed
        self.registry.register(_Decisions(self))
        Gauge("keywright_verifier_keys_indexed",
              "Key hashes in the index: current keys and keys in their grace period.",
              registry=self.registry).set_function(keys_indexed)
        Gauge("keywright_verifier_seconds_since_sync",
              "Seconds since the index was last known to match the API server (0 while "
              "its watches are connected).", registry=self.registry,
              ).set_function(seconds_since_sync)
        self.usage_patches = Counter("keywright_verifier_usage_patches",
                                     "status.lastUsedAt patches sent, by result.",
                                     ["result"], registry=self.registry)
        self.watch_restarts = Counter("keywright_verifier_watch_restarts",
                                      "Watches that ended with an error and were restarted.",
                                      ["resource"], registry=self.registry)

    def watch_backend(self, up: Callable[[], bool], errors: Callable[[], int]) -> None:
        """The shared limits backend's health (only when the verifier has one)."""
        Gauge("keywright_limits_backend_up",
              "1 while the shared limits backend (Redis) answers, 0 while it is down.",
              registry=self.registry).set_function(lambda: float(up()))
        self.registry.register(_BackendErrors(errors))

    def observe(self, code: str, seconds: float,
                record: index.KeyRecord | None = None) -> None:
        """One decision, and the ApiKey the key presented matched, if any. Called from
        the event loop only (no lock)."""
        self._counts[code] += 1
        self._buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sum += seconds
        if record is not None:
            slot = _KEY_SLOT.get(code)
            if slot is not None:
                key = (record.namespace, record.name)
                counts = self._by_key.get(key)
                if counts is None:
                    counts = self._by_key[key] = [0] * len(KEY_STATUSES)
                counts[slot] += 1

    def forget(self, namespace: str, name: str) -> None:
        """The ApiKey is gone: its series go too (from the watch thread: one dict pop)."""
        self._by_key.pop((namespace, name), None)

    def decisions(self) -> dict[str, int]:
        return dict(self._counts)

    def key_decisions(self) -> dict[tuple[str, str], list[int]]:
        """Answers per ApiKey still indexed, by KEY_STATUSES. Drops the counts of one
        that is not: a decision made with a record just before its ApiKey was deleted
        may count after `forget`, and must not bring its series back for good."""
        found = {}
        for key, counts in list(self._by_key.items()):  # list(): forget may pop meanwhile
            if self.indexed(*key):
                found[key] = list(counts)
            else:
                self._by_key.pop(key, None)
        return found

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _Decisions(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        counts = CounterMetricFamily("keywright_verifier_decisions",
                                     "Verification decisions by code.",
                                     labels=["code", "status"])
        for code, count in m.decisions().items():
            counts.add_metric([code, str(decision.STATUS[code])], count)
        yield counts
        per_key = CounterMetricFamily(
            "keywright_verifier_apikey_decisions",
            "Verification decisions for keys that matched an ApiKey, by HTTP status.",
            labels=["namespace", "name", "status"])
        for (namespace, name), by_status in sorted(m.key_decisions().items()):
            for status, count in zip(KEY_STATUSES, by_status, strict=True):
                per_key.add_metric([namespace, name, status], count)
        yield per_key
        latency = HistogramMetricFamily(
            "keywright_verifier_decision_duration_seconds",
            "Time from a /verify request's arrival to its answer being handed to the server.")
        cumulative = list(itertools.accumulate(m._buckets))
        latency.add_metric([], [*((repr(b), c) for b, c in zip(LATENCY_BUCKETS, cumulative,
                                                                 strict=False)),
                                ("+Inf", cumulative[-1])], m._sum)
        yield latency


class _BackendErrors(Collector):
    def __init__(self, errors: Callable[[], int]) -> None:
        self.errors = errors

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("keywright_limits_backend_errors",
                                     "Calls to the shared limits backend that failed or "
                                     "timed out.")
        family.add_metric([], self.errors())
        yield family
