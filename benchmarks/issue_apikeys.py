"""Apply N ApiKeys to a fresh local control plane with the operator running; print figures.

    .venv/bin/python -m benchmarks.issue_apikeys [--keys 1000] [--concurrency 8] [--restart]

Prints apply-to-Secret latency (p50/p99, from the create call returning to the Secret's
ADDED watch event), the time until every key is Ready, the operator's peak RSS (VmHWM),
the operator's API writes per key (counted from the apiserver's audit log, so Kopf's
own writes are included) and the CPU each process spent per key. With --restart, then
the operator started again over the unchanged keys: its requests (the API server's own
counters), writes and time. Targets (issue 17, on a 2-core machine): 1,000 keys Ready
within 5 s, 10,000 within 60 s, RSS <= 256 MB at 10,000; each figure is printed with its
ratio to the target. Progress is printed while it runs. Not part of the test suite: it
prints, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import wrkload
from keywright import kube
from keywright.core import names
from keywright.dev import binaries, controlplane, install
from keywright.kits import processes

OPERATOR_USER = "keywright-operator"
NAMESPACE = "bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=8, help="the operator's --workers")
    parser.add_argument("--lone", type=int, default=50,
                        help="keys applied one at a time first, each after the last is ready")
    parser.add_argument("--restart", action="store_true",
                        help="then restart the operator with every key unchanged: its "
                             "requests (the API server's metrics), writes and time")
    args = parser.parse_args()
    print(wrkload.hmac_line(), flush=True)

    plane = controlplane.ControlPlane(binaries.ensure_binaries(print), audit=True)
    plane.add_token_user(OPERATOR_USER, ["system:masters"])
    operator = None
    try:
        plane.start()
        admin = kube.Kube.connect(str(plane.kubeconfig))
        install.bootstrap(admin, [NAMESPACE])
        argv = [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
                str(plane.user_kubeconfig(OPERATOR_USER)), "--log-level", "INFO",
                "--workers", str(args.workers)]
        log = plane.workdir / "logs" / "operator.log"
        operator = processes.spawn(argv, log)
        _wait(lambda: "Activity 'login' succeeded" in log.read_text(), "operator start")
        time.sleep(1)
        idle_kib = _vm(operator.pid, "VmRSS")

        secret_seen: dict[str, float] = {}
        ready_seen: dict[str, float] = {}
        stop = threading.Event()
        keys_path = kube.Kube.apikeys_path(NAMESPACE)
        watchers = [
            threading.Thread(target=_watch, args=(
                admin, kube.SECRETS.format(ns=NAMESPACE),
                {"labelSelector": "app.kubernetes.io/managed-by=keywright"}, secret_seen,
                stop), daemon=True),
            threading.Thread(target=_watch, args=(admin, keys_path, {}, ready_seen, stop, True),
                             daemon=True),
        ]
        for thread in watchers:
            thread.start()
        time.sleep(1)  # both watches established before the first create

        created: dict[str, float] = {}

        def create(name: str) -> None:
            created[name] = time.monotonic()  # before the call: latency includes the create
            if len(created) % 2000 == 0:
                print(f"  ... {len(created):,} created", flush=True)
            admin.create_object(keys_path, {
                "apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.KIND,
                "metadata": {"name": name}, "spec": {"expiration": "90d"}})

        # One at a time: the latency of a lone `kubectl apply` on an idle operator.
        lone = [f"lone-{i:03d}" for i in range(args.lone)]
        for name in lone:
            create(name)
            _wait(lambda n=name: n in secret_seen, f"Secret of {name}", timeout=30)
        _report("one at a time", [(secret_seen[n] - created[n]) * 1000 for n in lone])

        key_names = [f"key-{i:05d}" for i in range(args.keys)]

        others = dict(plane.pids)  # the control plane's processes, and this one
        others["benchmark"] = os.getpid()
        requests_before = _requests(plane)
        steal_before = _stolen()
        cpu_before = _cpu_seconds(operator.pid)
        others_before = {name: _cpu_seconds(pid) for name, pid in others.items()}
        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(create, key_names))
        applied = time.monotonic() - started
        _wait(lambda: sum(n in ready_seen for n in key_names) == args.keys, "all keys Ready",
              timeout=300, progress=lambda: f"{sum(n in ready_seen for n in key_names)}/"
                                            f"{args.keys} Ready")
        all_ready = max(ready_seen[n] for n in key_names) - started
        cpu = _cpu_seconds(operator.pid) - cpu_before
        others_cpu = {name: _cpu_seconds(pid) - others_before[name]
                      for name, pid in others.items()}
        requests = _requests(plane) - requests_before
        stolen = _stolen() - steal_before
        time.sleep(2)  # let trailing writes (Kopf's bookkeeping) land in the audit log
        stop.set()

        peak_kib = _vm(operator.pid, "VmHWM")
        settled_kib = _vm(operator.pid, "VmRSS")
        writes = _operator_writes(plane.audit_log)
        print(f"burst: {args.keys} keys created by {args.concurrency} clients in "
              f"{applied:.1f}s ({args.keys / applied:.0f}/s)")
        _report("burst", [(secret_seen[n] - created[n]) * 1000 for n in key_names])
        target = 5.0 * args.keys / 1000 if args.keys <= 1000 else 60.0 * args.keys / 10000
        print(f"all Ready after: {all_ready:.1f} s (target {target:g} s: 5 s per 1,000, 60 s "
              f"per 10,000; ratio {all_ready / target:.2f}); operator CPU "
              f"{cpu:.1f} s ({cpu / all_ready:.0%} of one core), {cpu / args.keys * 1000:.1f} "
              "ms per key")
        print("the rest of the machine until then, CPU per key: " + ", ".join(
            f"{name} {spent / args.keys * 1000:.1f} ms" for name, spent in others_cpu.items())
            + f"; taken by the hypervisor (steal) {stolen:.1f} s")
        print("requests the API server answered until then, per key (all clients; the "
              "benchmark's are one create apikeys each): " + ", ".join(
                  f"{k} {v / args.keys:.2f}" for k, v in sorted(requests.items())
                  if v >= args.keys / 100))
        print(f"operator peak RSS: {peak_kib / 1024:.0f} MB (target 256 MB at 10,000 keys, "
              f"ratio {peak_kib / 1024 / 256:.2f}); idle before the keys {idle_kib / 1024:.0f} MB, "
              f"after them {settled_kib / 1024:.0f} MB")
        keys = args.keys + args.lone
        total = sum(writes.values())
        print(f"operator API writes per key: {total / keys:.2f} "
              f"({', '.join(f'{k} {v / keys:.2f}' for k, v in sorted(writes.items()))})")
        if args.restart:
            processes.terminate(operator)
            operator = _restart(plane, argv, keys, writes)
        return 0
    finally:
        processes.terminate(operator)
        plane.stop()


def _report(label: str, latencies_ms: list[float]) -> None:
    ordered = sorted(latencies_ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"apply-to-Secret latency, {label} ({len(ordered)} keys): p50 {p50:.0f} ms "
          f"(target 300 ms, ratio {p50 / 300:.2f}), p99 {p99:.0f} ms, max {ordered[-1]:.0f} ms",
          flush=True)


def _watch(api: kube.Kube, path: str, query: dict[str, str], seen: dict[str, float],
           stop: threading.Event, ready_only: bool = False) -> None:
    """Notes when each object is first seen (or first Ready), from raw watch events: the
    benchmark's own watching costs as little of the machine as it can."""
    try:
        for kind, obj in api.watch_objects(path, "0", query, timeout=600):
            if kind == "BOOKMARK" or (ready_only and not any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (obj.get("status") or {}).get("conditions") or [])):
                continue
            seen.setdefault(obj["metadata"]["name"], time.monotonic())
    except Exception:
        if not stop.is_set():
            raise


def _restart(plane: controlplane.ControlPlane, argv: list[str], keys: int,
             writes_before: collections.Counter[str]) -> subprocess.Popen[bytes]:
    """The operator started again with every key unchanged: the requests made meanwhile
    (the API server's own request counters: the operator's, and a few of the
    controller-manager's), its writes (audit log), and the time until it is done: its
    CPU idle (under 5% of a core) for 3 s."""
    before = _requests(plane)
    log = plane.workdir / "logs" / "operator-restarted.log"
    began = time.monotonic()
    operator = processes.spawn(argv, log)
    samples = [(began, 0.0)]  # (when, the operator's CPU seconds)
    while time.monotonic() - began < 600:
        time.sleep(0.5)
        samples.append((time.monotonic(), _cpu_seconds(operator.pid)))
        recent = [cpu for when, cpu in samples if when >= samples[-1][0] - 3]
        if samples[-1][0] - began > 5 and recent[-1] - recent[0] < 0.05 * 3:
            break
        if len(samples) % 10 == 0:
            print(f"  ... restarted operator: {samples[-1][1]:.1f} s of CPU so far",
                  flush=True)
    busy_until = next(when for when, cpu in samples if cpu >= samples[-1][1] - 0.05)
    spent = _requests(plane) - before
    writes = _operator_writes(plane.audit_log) - writes_before
    print(f"restart with {keys:,} unchanged keys: done (CPU idle) {busy_until - began:.1f} s "
          f"after start; CPU {samples[-1][1]:.1f} s, peak RSS "
          f"{_vm(operator.pid, 'VmHWM') / 1024:.0f} MB; writes {sum(writes.values())} "
          f"({dict(writes) or 'none'}); requests per key meanwhile: " + ", ".join(
              f"{k} {v / keys:.2f}" for k, v in sorted(spent.items()) if v >= keys / 100),
          flush=True)
    return operator


def _requests(plane: controlplane.ControlPlane) -> collections.Counter[str]:
    """apiserver_request_total from the API server's /metrics, by verb and resource."""
    status, body = plane.fetch("/metrics")
    if status != 200:
        raise SystemExit(f"the API server's /metrics answered {status}")
    counts: collections.Counter[str] = collections.Counter()
    for line in body.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
            sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
            counts[f"{labels.get('verb')} {labels.get('resource')}{sub}"] += \
                int(float(line.rsplit(" ", 1)[1]))
    return counts


def _operator_writes(audit_log: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if entry["user"]["username"] != OPERATOR_USER or ref.get("namespace") != NAMESPACE:
            continue
        resource = ref.get("resource", "?") + (f"/{ref['subresource']}"
                                               if ref.get("subresource") else "")
        counts[f"{entry['verb']} {resource}"] += 1
    return counts


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _stolen() -> float:
    """Seconds of CPU the hypervisor gave to others (all cores, /proc/stat's steal)."""
    return int(Path("/proc/stat").read_text().split()[8]) / os.sysconf("SC_CLK_TCK")


def _vm(pid: int, field: str) -> int:
    """A /proc/PID/status memory figure in KiB (VmRSS now, VmHWM the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def _wait(check: object, what: str, timeout: float = 60,
          progress: object = None) -> None:
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        if progress is not None and time.monotonic() - last_report > 5:
            print(f"  ... {progress()}", flush=True)  # type: ignore[operator]
            last_report = time.monotonic()
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
