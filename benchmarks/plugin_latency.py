"""How long `kubectl apikey` takes to answer on the local control plane, against the
issue's one second and against `kubectl get` asking the same API server.

    .venv/bin/python -m benchmarks.plugin_latency [--keys 200] [--runs 10]

Starts a local control plane and the operator, writes --keys ApiKeys (issued), then
times whole processes, as a person's shell runs them: `kubectl-apikey list`,
`describe`, `create --dry-run=server`, `doctor`, and `kubectl get apikeys` as the
yardstick. Prints the median and the slowest of --runs runs of each, and each median's
ratio to the 1 s target. Never passes or fails. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.operator_plane import operator_plane
from keywright.core import names

TARGET = 1.0  # seconds (issue 15)
NAMESPACE = "bench"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with operator_plane([NAMESPACE], "--log-level", "WARNING") as running:
        plane, admin = running.plane, running.admin
        path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{NAMESPACE}/{names.PLURAL}"
        for number in range(args.keys):
            admin.create_object(path, {"apiVersion": names.API_VERSION, "kind": names.KIND,
                                       "metadata": {"name": f"key-{number}"},
                                       "spec": {"expiration": "30d",
                                                "scopes": ["Invoices.Read"]}})
        deadline = time.monotonic() + 120
        while sum((i.get("status") or {}).get("phase") == "Active"
                  for i in admin.list_objects(path)[0]) < args.keys:
            if time.monotonic() > deadline:
                raise SystemExit("the keys were not issued within 120 s")
            time.sleep(0.5)
        plugin = str(Path(sys.executable).parent / "kubectl-apikey")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        commands: dict[str, list[str]] = {
            f"kubectl-apikey list ({args.keys} keys)": [plugin, "list", "-n", NAMESPACE],
            "kubectl-apikey describe": [plugin, "describe", "key-0", "-n", NAMESPACE],
            "kubectl-apikey create --dry-run=server": [
                plugin, "create", "new", "-n", NAMESPACE, "--scope", "Invoices.Read",
                "--dry-run", "server"],
            "kubectl-apikey doctor": [plugin, "doctor", "-n", NAMESPACE],
            f"kubectl get apikeys ({args.keys} keys)": [
                "kubectl", "--kubeconfig", str(plane.kubeconfig), "-n", NAMESPACE, "get",
                "apikeys"],
        }
        print(f"{'command':45} {'median':>8} {'slowest':>8} {'median / 1 s':>13}")
        for label, command in commands.items():
            seconds = [timed(command, env) for _ in range(args.runs)]
            median = statistics.median(seconds)
            print(f"{label:45} {median * 1000:6.0f}ms {max(seconds) * 1000:6.0f}ms "
                  f"{median / TARGET:13.2f}")
        return 0


def timed(command: list[str], env: dict[str, Any]) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)
    return time.perf_counter() - began


if __name__ == "__main__":
    sys.exit(main())
