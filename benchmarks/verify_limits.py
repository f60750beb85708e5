"""What rate limits and quotas cost `keywright verifier`, in-process and on Redis, in one run.

    .venv/bin/python -m benchmarks.verify_limits [--keys 10000] [--seconds 15]

Starts a local control plane and writes two sets of N ApiKeys with their hashes in status
(as the operator would; verifier_plane.py, shared with verify_http): `plain-*`, with no
limit, and `limited-*`, with `rateLimit: {requests: 1000000000, period: 1m}` and
`quota: {limit: 1000000000}` (no refill), so that every request does the limits' work and
none is refused. Then real `keywright verifier` processes, all pinned to core 0, all
indexing all 2N keys: A without `--redis-url` (in-process limits), B with `--redis-url`
(and `--redis-password-file`) to a redis-server of its own on loopback
(keywright.dev.redis.RedisServer, password, no persistence) and the default
`--redis-timeout` (0.05 s), and C, the same as B but for `--redis-timeout 0.5`
(--compare-timeout). Redis is pinned to core 1, where wrk runs: with 2 cores it shares
its CPU with the load generator, so its figures (and the Redis configuration's) are what
a Redis sharing a busy core gives, not a Redis of its own. One verifier is driven at a
time; the others idle beside it (their watches and usage threads only).

wrk on core 1 drives /verify?scope=Reviews.Read over keep-alive connections with 1,000
different keys of a set, flat out (--connections, 50), in each configuration one after
the other:

1. no limits: plain keys on A (the baseline);
2. in-process limits: limited keys on A (rate limit and quota kept in A's memory);
3. Redis limits: limited keys on B (one EVALSHA of the limits script per request);
4. no limits on B: the baseline again, in the process with a Redis client (a control);

then each of 1-3 at half load: the closed-loop connection count whose rate is closest to
half of that configuration's OWN saturating rate (wrkload.half_load_connections), for
p50/p99; then no limits on A at the most of --overload-connections (is 50 its most?);
then overload (--overload-connections: 90, then 200) on B and then on C: whether
the verifier's own queueing makes its Redis calls exceed --redis-timeout (all of them
pipelined on one connection per verifier), and what the circuit breaker then answers (a
key with a quota fails closed: 429 LIMITS_UNAVAILABLE);
then nginx `return 200` on core 0, the ceiling. Throughput ratios count OK answers only.
Two are printed: at --connections (50), and of each configuration's most over the
connection counts it ran at (no limits on A: 50 and the most of --overload-connections;
Redis on B: 50 and each of them), since a configuration whose every request waits for a
round trip to Redis needs more requests in flight to keep the verifier busy.

The verifiers run as a user that may list and watch ApiKeys and read the pepper but not
patch ApiKeys' status (verifier_plane.READER): they send their usage patches (each key in
use, at once and then a minute later) and the API server refuses them (403). Written,
they had the control plane (not pinned: it shares both cores) take 29-58% of a core,
writing them and sending each to three watchers, in whichever phase they fell; a
cluster's control plane runs elsewhere. The
cost of written patches is in verify_http's figures. Before each phase, 2 s of the same
load warms the verifier (Redis connections, limits' state), and the script waits until
the usage patches that causes have been sent.

Per phase it also reads: the verifier's /metrics before and after (decisions, the decision
duration histogram: its mean and how many took over 5, 25 and 50 ms; the limits backend's
errors, i.e. Redis calls that failed or timed out; usage patches sent), the verifier's CPU
time (its process and its granian worker) per request, the control plane's CPU, each
core's idle and steal time (/proc/stat), and Redis's own view: EVALSHA calls, the
server-side time per call and its p50/p99/p99.9/max (INFO commandstats and latencystats,
reset before each phase), and Redis's CPU. Throughout, a thread of this process pinned
to core 1 calls the same script by SHA on keys of its own with redis-py (hiredis) every
5 ms (--probe-every): the Redis round trip as a client on a loaded machine sees it (its
calls are counted apart). Redis's INFO stats give the pipelining depth: the verifier's
commands per read Redis made from its sockets.

Targets (issue 13): Redis-backed throughput >= 0.5 of no-limit throughput; p99 <= 2 ms at
half load. Prints figures and ratios; never passes or fails. Loopback only.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import wrkload
from benchmarks.verifier_plane import Bench, Verifier
from keywright.core import limits
from keywright.dev.redis import RedisServer
from keywright.kits import processes
from keywright.verifier import limits_redis

PATH = "/verify?scope=Reviews.Read"
LIMITED_SPEC = {"rateLimit": {"requests": 1_000_000_000, "period": "1m"},
                "quota": {"limit": 1_000_000_000}}
RATIO_TARGET, P99_TARGET_MS = 0.5, 2.0
SLOW_MS = (5, 25, 50)  # decision-duration buckets whose excess is counted
PROBE_EVERY = 0.005  # seconds between two calls of the round-trip probe
IN_USE = 1000  # different keys per wrk script


@dataclass
class Reading:
    """What is read just before and just after a phase."""

    at: float
    cpu: float  # the verifier's CPU seconds (process and children)
    decisions: dict[str, float]  # code -> count
    buckets: dict[float, float]  # decision-duration histogram: le (s) -> cumulative count
    duration_sum: float
    backend_errors: float
    redis_cpu: float
    plane_cpu: float  # etcd, kube-apiserver and kube-controller-manager: CPU seconds
    patches: float  # usage patches the verifier has sent
    cores: dict[str, list[int]]  # /proc/stat's cpuN lines: user nice system idle ... steal


@dataclass
class RedisView:
    calls: int  # EVALSHA calls in the phase, the probe's included
    probe_calls: int
    usec_per_call: float
    percentiles: dict[str, float]  # server-side, microseconds: p50, p99, p99.9, p100
    cpu_share: float  # of one core
    reads: int = 0  # reads Redis made from its clients' sockets (INFO stats)


@dataclass
class Phase:
    label: str
    result: wrkload.Result
    connections: int
    seconds: float
    decisions: float
    codes: dict[str, float]  # decisions by code
    cpu_us: float  # verifier CPU per request, microseconds
    cpu_share: float  # of core 0
    mean_decision_us: float
    over: dict[int, float]  # ms -> decisions that took longer
    backend_errors: float
    redis: RedisView
    cores: dict[str, tuple[float, float]]  # cpuN -> (share idle, share stolen by the host)
    plane_share: float  # of one core, the control plane's
    patches: float  # usage patches the verifier sent during the phase
    probe: list[float] = field(default_factory=list)  # round trips seen from core 1, ms

    @property
    def ok_rate(self) -> float:
        """wrk's rate counting OK answers only: a request the breaker refused (429
        LIMITS_UNAVAILABLE) or let through without asking Redis is not a Redis-checked
        verification (the second kind cannot be told apart: see backend_errors)."""
        return self.result.rate * self.codes.get("OK", 0.0) / max(1.0, self.decisions)


class Probe:
    """Calls the limits script by SHA every `every` seconds from a thread pinned to the
    load core, timing each round trip; `take` hands over what was measured since the
    last `take`. With `every` 0 it does nothing."""

    def __init__(self, url: str, every: float = PROBE_EVERY) -> None:
        self.every = every
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.sha = self.client.script_load(limits_redis.SCRIPT)
        # 25 keys of its own, each called about as often as one of the 1,000 wrk cycles
        # through at 5,000-10,000/s: sliding logs of about the same length
        self.keys = [limits_redis.keys("bench-probe", f"probe-{i}") for i in range(25)]
        rate = limits.Rate(1_000_000_000, 60 * limits.MICROS)
        self.argv = limits_redis.arguments(rate, limits.Quota(1_000_000_000, 0))
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="redis probe")

    def start(self) -> None:
        if self.every:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.client.close()

    def take(self) -> list[float]:
        taken, self._samples = self._samples, []
        return taken

    def _run(self) -> None:
        os.sched_setaffinity(0, {int(wrkload.LOAD_CORE)})  # this thread only
        calls = 0
        while not self._stop.wait(self.every):
            keys = self.keys[calls % len(self.keys)]
            calls += 1
            began = time.perf_counter()
            self.client.evalsha(self.sha, len(keys), *keys, *self.argv)
            self._samples.append((time.perf_counter() - began) * 1e3)


def code_version() -> str:
    """The commit measured, and whether the operator's code had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True,
                              text=True, check=False).stdout.strip()
    changed = git("status", "--porcelain", "--", "operator/keywright").splitlines()
    return (f"code: commit {git('rev-parse', '--short', 'HEAD')}"
            + (f", with uncommitted changes to {', '.join(c.split()[-1] for c in changed)}"
               if changed else ", no uncommitted changes under operator/keywright"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000, help="per set (two sets)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--overload-connections", type=_counts, default=[90, 200],
                        help="connections of the overload phases on B and C, comma-"
                        "separated (default: 90,200; 0: none)")
    parser.add_argument("--compare-timeout", type=float, default=0.5,
                        help="C's --redis-timeout, for the overload phase (0: no C)")
    parser.add_argument("--redis-timeout", type=float, default=None,
                        help="B's --redis-timeout (default: the verifier's, 0.05 s)")
    parser.add_argument("--probe-every", type=float, default=PROBE_EVERY,
                        help="seconds between the round-trip probe's calls (0: no probe)")
    parser.add_argument("--redis-core", default=wrkload.LOAD_CORE,
                        help="the core redis-server is pinned to (default: wrk's, 1)")
    args = parser.parse_args()
    wrkload.ensure_tools()
    print(code_version())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with RedisServer() as server, Bench() as bench:  # Redis stops after the verifiers
        pin_all_threads(server.pid, args.redis_core)
        store = redis.Redis.from_url(server.url)
        store.config_set("latency-tracking-info-percentiles", "50 99 99.9 100")
        print(f"redis-server {store.info('server')['redis_version']} on "
              f"{server.address}, pid {server.pid}, pinned to core {args.redis_core} "
              f"(wrk's is {wrkload.LOAD_CORE}, the verifiers' {wrkload.SERVER_CORE})")
        plain = bench.write_keys(args.keys, name="plain")
        limited = bench.write_keys(args.keys, name="limited", spec=LIMITED_SPEC)
        a = bench.start_verifier(suffix="-a", status_writes=False)
        redis_options = ["--redis-url", server.address,
                         "--redis-password-file", str(server.password_file)]
        if args.redis_timeout is not None:
            redis_options += ["--redis-timeout", str(args.redis_timeout)]
        b = bench.start_verifier(*redis_options, suffix="-b", status_writes=False)
        c = bench.start_verifier(*redis_options[:4], "--redis-timeout",
                                 str(args.compare_timeout), suffix="-c",
                                 status_writes=False) \
            if args.compare_timeout and args.overload_connections else None
        for verifier in (a, b, c):
            if verifier is not None:
                verifier.wait_indexed(2 * args.keys)
        check_answers(a, b, plain[0], limited[0])

        probe = Probe(server.url, args.probe_every)
        probe.start()
        try:
            phases = run_phases(args, a, b, c, plain[:IN_USE], limited[:IN_USE], store,
                                probe, list(bench.plane.pids.values()))
            with wrkload.Nginx(processes.free_port()) as nginx:
                ceiling = wrkload.run(f"http://127.0.0.1:{nginx.port}/", None,
                                      args.connections, args.seconds)
        finally:
            probe.stop()
        report(phases, ceiling, args, bench.logs)


def run_phases(args: argparse.Namespace, a: Verifier, b: Verifier, c: Verifier | None,
               plain: list[str], limited: list[str], store: redis.Redis,
               probe: Probe, plane: list[int]) -> dict[str, Phase]:
    sat, seconds = args.connections, args.seconds
    scripts = {"plain": wrkload.lua(plain, PATH), "limited": wrkload.lua(limited, PATH)}

    def prepare(verifier: Verifier, keys: str) -> None:
        """Warm (Redis connections, limits' state), then wait until the usage patches
        that causes (refused: the verifiers run as READER) have been sent."""
        wrkload.run(verifier.url + PATH, scripts[keys], sat, 2)
        waited, sent = settle(verifier)
        if sent:
            print(f"    ({sent:,.0f} usage patches went out in the {waited:.0f} s before "
                  "the next phase)", flush=True)

    def measure(label: str, verifier: Verifier, keys: str, connections: int,
                length: float = seconds) -> Phase:
        prepare(verifier, keys)
        found = phase(label, verifier, scripts[keys], connections, length, store, probe,
                      plane)
        print(f"  {label}: {found.result.line()}", flush=True)
        return found

    phases = {
        "none": measure("no limits, A", a, "plain", sat),
        "local": measure("in-process limits, A", a, "limited", sat),
        "redis": measure("Redis limits, B", b, "limited", sat),
        "none-b": measure("no limits, B (control)", b, "plain", sat),
    }
    for key, verifier, keys in (("none", a, "plain"), ("local", a, "limited"),
                                ("redis", b, "limited")):
        prepare(verifier, keys)
        count = wrkload.half_load_connections(verifier.url + PATH, scripts[keys],
                                              phases[key].result.rate)
        phases[f"{key}-half"] = measure(f"{phases[key].label} at half load", verifier,
                                        keys, count)
    if args.overload_connections:  # is the baseline's rate at 50 connections its most?
        most = max(args.overload_connections)
        phases["none-most"] = measure(f"no limits, A, {most} connections", a, "plain", most)
    for count in args.overload_connections:
        phases[f"redis-over-{count}"] = measure(
            f"Redis limits, B (--redis-timeout {args.redis_timeout or 0.05:g}), "
            f"{count} connections", b, "limited", count)
        if c is not None:
            phases[f"redis-over-c-{count}"] = measure(
                f"Redis limits, C (--redis-timeout {args.compare_timeout:g}), "
                f"{count} connections", c, "limited", count)
    return phases


def settle(verifier: Verifier, quiet_for: int = 3, at_most: float = 120) -> tuple[float, float]:
    """Until the verifier has sent no usage patch for `quiet_for` seconds (it sends each
    key's due patches once a second, at most 200 a second); returns the seconds waited
    and the patches sent meanwhile."""
    started, quiet = time.monotonic(), 0
    first = last = _scrape(verifier)[0].get("keywright_verifier_usage_patches_total", 0.0)
    while quiet < quiet_for and time.monotonic() - started < at_most:
        time.sleep(1)
        sent = _scrape(verifier)[0].get("keywright_verifier_usage_patches_total", 0.0)
        quiet = quiet + 1 if sent == last else 0
        last = sent
    return time.monotonic() - started, last - first


def _counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if int(n) > 0]


def phase(label: str, verifier: Verifier, script: str, connections: int, seconds: float,
          store: redis.Redis, probe: Probe, plane: list[int]) -> Phase:
    store.config_resetstat()
    probe.take()
    before = read(verifier, store, plane)
    result = wrkload.run(verifier.url + PATH, script, connections, seconds)
    after = read(verifier, store, plane)
    samples = probe.take()
    stats = store.info("commandstats").get("cmdstat_evalsha", {})
    latency = store.info("latencystats").get("latency_percentiles_usec_evalsha", {})
    reads = int(store.info("stats").get("total_reads_processed", 0))
    elapsed = after.at - before.at
    codes = {code: after.decisions[code] - before.decisions.get(code, 0.0)
             for code in after.decisions}
    decisions = sum(codes.values())
    calls = int(stats.get("calls", 0))
    redis_view = RedisView(
        calls, len(samples), float(stats.get("usec_per_call", 0.0)),
        {str(k): float(v) for k, v in latency.items()},
        (after.redis_cpu - before.redis_cpu) / elapsed, reads)
    over = {ms: (after.buckets[float("inf")] - after.buckets[ms / 1000])
            - (before.buckets[float("inf")] - before.buckets[ms / 1000]) for ms in SLOW_MS}
    return Phase(
        label, result, connections, elapsed, decisions,
        {code: count for code, count in codes.items() if count},
        (after.cpu - before.cpu) / max(1.0, decisions) * 1e6,
        (after.cpu - before.cpu) / elapsed,
        (after.duration_sum - before.duration_sum) / max(1.0, decisions) * 1e6,
        over, after.backend_errors - before.backend_errors, redis_view,
        core_shares(before, after), (after.plane_cpu - before.plane_cpu) / elapsed,
        after.patches - before.patches, samples)


def read(verifier: Verifier, store: redis.Redis, plane: list[int]) -> Reading:
    samples, buckets, codes = _scrape(verifier)
    cpu = store.info("cpu")
    return Reading(
        time.monotonic(), tree_cpu(verifier.popen.pid), codes, buckets,
        samples.get("keywright_verifier_decision_duration_seconds_sum", 0.0),
        samples.get("keywright_limits_backend_errors_total", 0.0),
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        sum(tree_cpu(pid) for pid in plane),
        samples.get("keywright_verifier_usage_patches_total", 0.0), core_times())


def _scrape(verifier: Verifier,
            ) -> tuple[dict[str, float], dict[float, float], dict[str, float]]:
    """The verifier's /metrics: samples by name (labels summed), the decision-duration
    buckets (le -> cumulative count) and the decisions by code."""
    _, body = wrkload.get(verifier.url + "/metrics")
    samples: dict[str, float] = {}
    buckets: dict[float, float] = {}
    codes: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "keywright_verifier_decision_duration_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "keywright_verifier_decisions_total":
                codes[sample.labels["code"]] = sample.value
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples, buckets, codes


def core_times() -> dict[str, list[int]]:
    return {line.split()[0]: [int(n) for n in line.split()[1:]]
            for line in Path("/proc/stat").read_text().splitlines()
            if re.match(r"cpu\d", line)}


def core_shares(before: Reading, after: Reading) -> dict[str, tuple[float, float]]:
    """Per core, the share of the phase it was idle and the share the hypervisor gave
    to someone else (steal): what else ran is in neither."""
    shares = {}
    for core, now in after.cores.items():
        spent = [a - b for a, b in zip(now, before.cores[core], strict=True)]
        total = max(1, sum(spent[:8]))  # user .. steal (guest time is inside user)
        shares[core] = (spent[3] / total, spent[7] / total)
    return shares


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants, alive ones."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def pin_all_threads(pid: int | None, core: str) -> None:
    """Pin every thread of `pid` (redis-server has background I/O threads) to `core`."""
    assert pid is not None
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {int(core)})


def check_answers(a: Verifier, b: Verifier, plain: str, limited: str) -> None:
    """One request per configuration before any load: all 200, rate-limit headers on
    B's limited key (its answer came through Redis) and on no plain key's."""
    shown = {}
    for name, verifier, key in (("A, plain key", a, plain), ("A, limited key", a, limited),
                                ("B, plain key", b, plain), ("B, limited key", b, limited)):
        status, headers = verifier.answer(key, PATH)
        shown[name] = headers.get("x-ratelimit-limit")
        if status != 200:
            raise SystemExit(f"{name}: answered {status}")
    if shown["A, plain key"] or shown["B, plain key"] or not shown["B, limited key"]:
        raise SystemExit(f"unexpected x-ratelimit-limit headers: {shown}")
    print(f"one request each: 200; x-ratelimit-limit on limited keys: A "
          f"{shown['A, limited key']}, B {shown['B, limited key']}; on plain keys: none")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def report(phases: Mapping[str, Phase], ceiling: wrkload.Result, args: argparse.Namespace,
           logs: Path) -> None:
    none, local, redis_phase = phases["none"], phases["local"], phases["redis"]
    print()
    print(f"verifiers on core {wrkload.SERVER_CORE}; wrk on core {wrkload.LOAD_CORE}; "
          f"redis-server on core {args.redis_core} (sharing it with wrk); logs in {logs}")
    print("saturating, 1,000 keys per set, "
          f"{args.connections} connections, {args.seconds:g} s each:")
    for key in ("none", "local", "redis", "none-b", "none-most"):
        if key in phases:
            print(f"  {_phase_line(phases[key])}")
    ratio = redis_phase.ok_rate / none.ok_rate
    print(f"ratios (OK answers per second): in-process / no limits "
          f"{local.ok_rate / none.ok_rate:.2f}; Redis / no limits {ratio:.2f} (target >= "
          f"{RATIO_TARGET}: ratio to target {ratio / RATIO_TARGET:.2f}); Redis / no limits "
          f"on the same process B {redis_phase.ok_rate / phases['none-b'].ok_rate:.2f}")
    # throughput: a configuration's most OK answers a second, at whichever connection
    # count gave it (a longer round trip takes more connections to keep the verifier busy)
    tried = [key for key in phases if key.startswith("redis-over-") and "-c-" not in key]
    best_none = max((phases[key] for key in ("none", "none-most") if key in phases),
                    key=lambda found: found.ok_rate)
    best_redis = max((phases[key] for key in ("redis", *tried)),
                     key=lambda found: found.ok_rate)
    most = best_redis.ok_rate / best_none.ok_rate
    print(f"throughput (each configuration's most OK answers a second, over "
          f"{', '.join(str(phases[key].connections) for key in ('redis', *tried))} "
          f"connections): no limits {best_none.ok_rate:,.0f}/s ({best_none.connections} "
          f"connections), Redis limits {best_redis.ok_rate:,.0f}/s "
          f"({best_redis.connections}); Redis / no limits {most:.2f} (target >= "
          f"{RATIO_TARGET}: ratio to target {most / RATIO_TARGET:.2f})")
    if redis_phase.backend_errors or redis_phase.redis.calls - redis_phase.redis.probe_calls \
            < redis_phase.decisions * 0.99:
        print(f"  NOTE: in the Redis phase {redis_phase.backend_errors:.0f} Redis calls failed "
              "or timed out and the breaker skipped Redis for some requests: its rate is not "
              "all Redis-checked work")
    print("half load (half of each configuration's own saturating rate, closed loop):")
    for key in ("none-half", "local-half", "redis-half"):
        found = phases[key]
        p50 = found.result.percentiles.get("50", float("nan"))
        p99 = found.result.percentiles.get("99", float("nan"))
        print(f"  {found.label}: {found.connections} connections, "
              f"{found.result.rate:,.0f} req/s; p50 {p50:.3f} ms, p99 {p99:.3f} ms "
              f"(target <= {P99_TARGET_MS} ms: ratio {p99 / P99_TARGET_MS:.2f}); "
              f"mean decision {found.mean_decision_us:.0f} us")
    over = [key for key in phases if key.startswith("redis-over")]
    if over:
        print("overload (more connections than saturate the verifier):")
        for key in over:
            print(f"  {_phase_line(phases[key])}")
    print("the Redis round trip:")
    for key in ("none", "redis", "redis-half", *over):
        if key in phases:
            label = "Redis with the probe only (during no limits, A)" if key == "none" \
                else phases[key].label
            print(f"  {label}: {_redis_line(phases[key])}")
    added = phases["redis-half"].mean_decision_us - phases["local-half"].mean_decision_us
    print(f"  the verifier's own view: at half load the Redis round trip adds {added:,.0f} us "
          "to the mean decision (Redis half load minus in-process half load; the decision "
          "time runs from the request's arrival in the app to its answer)")
    errors = sum(p.backend_errors for key, p in phases.items() if key not in over)
    print(f"limits backend errors (Redis calls failed or over --redis-timeout): {errors:.0f} "
          f"outside the overload phases, "
          f"{sum(phases[key].backend_errors for key in over):.0f} in them")
    for suffix in ("-b", "-c"):
        path = logs / f"verifier{suffix}.log"
        text = path.read_text() if path.exists() else ""
        reasons = collections.Counter(re.findall(r"Redis failed \((.*?)\); until", text))
        if reasons:
            shown = "; ".join(f"{why} ({n})" for why, n in reasons.most_common())
            print(f"  verifier{suffix}.log, outages by their first failure: {shown}")
    print(f"nginx return 200 on core {wrkload.SERVER_CORE} (ceiling): {ceiling.line()}; "
          f"no limits / ceiling {none.result.rate / ceiling.rate:.2f}")
    print(wrkload.hmac_line())
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _phase_line(found: Phase) -> str:
    slow = ", ".join(f">{ms} ms {found.over[ms]:.0f}" for ms in SLOW_MS)
    codes = ", ".join(f"{code} {count:,.0f}" for code, count in found.codes.items())
    ok = f" ({found.ok_rate:,.0f} OK/s)" if set(found.codes) - {"OK"} else ""
    return (f"{found.label}: {found.result.line()}{ok}; answers {codes}; verifier CPU "
            f"{found.cpu_us:.0f} us/request ({found.cpu_share:.0%} of a core); mean decision "
            f"{found.mean_decision_us:.0f} us; decisions {slow}; backend errors "
            f"{found.backend_errors:.0f}; usage patches {found.patches:,.0f}; control plane "
            f"CPU {found.plane_share:.0%} of a core; cores idle/steal "
            + ", ".join(f"{core[3:]} {idle:.0%}/{steal:.0%}"
                        for core, (idle, steal) in found.cores.items()))


def _redis_line(found: Phase) -> str:
    view = found.redis

    def show(name: str) -> str:
        return f"{view.percentiles.get(name, float('nan')):.0f}"
    probe = found.probe
    verifier_calls = max(0, view.calls - view.probe_calls)
    # each probe call is one read; the reads left are the verifier's (and a few INFOs)
    verifier_reads = max(1, view.reads - view.probe_calls)
    depth = (f", {verifier_calls / verifier_reads:.1f} per read (pipelined)"
             if verifier_calls > view.probe_calls else "")
    return (f"EVALSHA {view.calls:,} (the verifier's about "
            f"{verifier_calls:,} for {found.decisions:,.0f} decisions{depth}); in Redis "
            f"{view.usec_per_call:.1f} us/call, p50 {show('p50')} p99 {show('p99')} "
            f"p99.9 {show('p99.9')} max {show('p100')} us; Redis CPU "
            f"{view.cpu_share:.0%} of core; probe round trip (n={len(probe)}) "
            f"p50 {percentile(probe, 0.5):.3f} p99 {percentile(probe, 0.99):.3f} "
            f"p99.9 {percentile(probe, 0.999):.3f} max "
            f"{max(probe, default=float('nan')):.3f} ms{_mean(probe)}")


def _mean(values: list[float]) -> str:
    return f", mean {statistics.fmean(values):.3f} ms" if values else ""


if __name__ == "__main__":
    main()
