"""Apply N ApiKeys to a fresh local control plane with the operator running; print figures.

    .venv/bin/python benchmarks/issue_apikeys.py [--keys 1000] [--concurrency 8]

Prints apply-to-Secret latency (p50/p99, from the create call returning to the Secret's
ADDED watch event), the time until every key is Ready, the operator's peak RSS (VmHWM),
and the operator's API writes per key (counted from the apiserver's audit log, so Kopf's
own writes are included). Targets on a 2-core machine: p50 <= 300 ms, all 1,000 Ready
within 30 s, RSS <= 150 MB; each figure is printed with its ratio to the target.
Not part of the test suite: it prints, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch

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
    args = parser.parse_args()

    plane = controlplane.ControlPlane(binaries.ensure_binaries(print), audit=True)
    plane.add_token_user(OPERATOR_USER, ["system:masters"])
    operator = None
    try:
        plane.start()
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        api.configuration.connection_pool_maxsize = args.concurrency * 2
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        admin = kube.Kube.connect(str(plane.kubeconfig))
        install.bootstrap(admin, [NAMESPACE])
        log = plane.workdir / "logs" / "operator.log"
        operator = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
             str(plane.user_kubeconfig(OPERATOR_USER)), "--log-level", "INFO",
             "--workers", str(args.workers)], log)
        _wait(lambda: "Activity 'login' succeeded" in log.read_text(), "operator start")
        time.sleep(1)
        idle_kib = _vm(operator.pid, "VmRSS")

        secret_seen: dict[str, float] = {}
        ready_seen: dict[str, float] = {}
        stop = threading.Event()
        watchers = [
            threading.Thread(target=_watch_secrets, args=(core, secret_seen, stop), daemon=True),
            threading.Thread(target=_watch_ready, args=(custom, ready_seen, stop), daemon=True),
        ]
        for thread in watchers:
            thread.start()
        time.sleep(1)  # both watches established before the first create

        created: dict[str, float] = {}

        def create(name: str) -> None:
            created[name] = time.monotonic()  # before the call: latency includes the create
            custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, NAMESPACE, names.PLURAL,
                {"apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.KIND,
                 "metadata": {"name": name}, "spec": {"expiration": "90d"}})

        # One at a time: the latency of a lone `kubectl apply` on an idle operator.
        lone = [f"lone-{i:03d}" for i in range(args.lone)]
        for name in lone:
            create(name)
            _wait(lambda n=name: n in secret_seen, f"Secret of {name}", timeout=30)
        _report("one at a time", [(secret_seen[n] - created[n]) * 1000 for n in lone])

        key_names = [f"key-{i:05d}" for i in range(args.keys)]

        cpu_before = _cpu_seconds(operator.pid)
        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(create, key_names))
        applied = time.monotonic() - started
        _wait(lambda: sum(n in ready_seen for n in key_names) == args.keys, "all keys Ready",
              timeout=300, progress=lambda: f"{sum(n in ready_seen for n in key_names)}/"
                                            f"{args.keys} Ready")
        all_ready = max(ready_seen[n] for n in key_names) - started
        cpu = _cpu_seconds(operator.pid) - cpu_before
        time.sleep(2)  # let trailing writes (Kopf's bookkeeping) land in the audit log
        stop.set()

        peak_kib = _vm(operator.pid, "VmHWM")
        settled_kib = _vm(operator.pid, "VmRSS")
        writes = _operator_writes(plane.audit_log)
        print(f"burst: {args.keys} keys created by {args.concurrency} clients in "
              f"{applied:.1f}s ({args.keys / applied:.0f}/s)")
        _report("burst", [(secret_seen[n] - created[n]) * 1000 for n in key_names])
        print(f"all Ready after: {all_ready:.1f} s (target 30 s for 1,000, ratio "
              f"{all_ready / 30 * 1000 / args.keys:.2f} scaled to 1,000); operator CPU "
              f"{cpu:.1f} s ({cpu / all_ready:.0%} of one core), {cpu / args.keys * 1000:.1f} "
              "ms per key")
        print(f"operator peak RSS: {peak_kib / 1024:.0f} MB (target 150 MB, ratio "
              f"{peak_kib / 1024 / 150:.2f}); idle before the keys {idle_kib / 1024:.0f} MB, "
              f"after them {settled_kib / 1024:.0f} MB")
        keys = args.keys + args.lone
        total = sum(writes.values())
        print(f"operator API writes per key: {total / keys:.2f} "
              f"({', '.join(f'{k} {v / keys:.2f}' for k, v in sorted(writes.items()))})")
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


def _watch_secrets(core: client.CoreV1Api, seen: dict[str, float],
                   stop: threading.Event) -> None:
    stream = watch.Watch().stream(core.list_namespaced_secret, NAMESPACE,
                                  label_selector="app.kubernetes.io/managed-by=keywright",
                                  timeout_seconds=600)
    try:
        for event in stream:
            seen.setdefault(event["object"].metadata.name, time.monotonic())
    except Exception:
        if not stop.is_set():
            raise


def _watch_ready(custom: client.CustomObjectsApi, seen: dict[str, float],
                 stop: threading.Event) -> None:
    stream = watch.Watch().stream(custom.list_namespaced_custom_object, names.GROUP,
                                  names.VERSION, NAMESPACE, names.PLURAL,
                                  timeout_seconds=600)
    try:
        for event in stream:
            obj = event["object"]
            conditions = (obj.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                seen.setdefault(obj["metadata"]["name"], time.monotonic())
    except Exception:
        if not stop.is_set():
            raise


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
