"""What ApiKeyPolicies cost at admission: ApiKey creates through the validating webhook
in a namespace without policies and in one with three policies and two roles, in one
run; and an ApiKeyRole edit checked against the keys of a crowded namespace.

    .venv/bin/python -m benchmarks.admission_policies [--keys 300] [--crowd 1000]

Starts a local control plane and the operator with its webhooks on. Creates --keys
ApiKeys one at a time, alternating between namespace `plain` (no policy: the webhook
lists the namespace's policies, finds none, and stops there) and `guarded` (three
policies, two roles: it also lists the roles and runs the chain), and prints each
namespace's create latency (p50, p99) and the ratio guarded / plain. Then writes --crowd
ApiKeys naming role `wide` into namespace `crowded` with a policy, and times edits of
that role once every key is issued (each edit lists the namespace's keys and judges
every one), admitted and refused.
No target in the issue: it prints figures, never passes or fails. Loopback only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.operator_plane import operator_plane
from keywright import kube
from keywright.core import names
from keywright.kits import processes

BASE = f"/apis/{names.GROUP}/{names.VERSION}/namespaces"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=300, help="creates per namespace")
    parser.add_argument("--crowd", type=int, default=1000, help="keys naming the edited role")
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()

    with operator_plane(["plain", "guarded", "crowded"], "--log-level", "DEBUG",
                        "--webhook-host", "127.0.0.1",
                        "--webhook-port", str(processes.free_port())) as running:
        admin, log = running.admin, running.log
        _wait(lambda: admin.get_object(
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
            f"{names.WEBHOOK_CONFIGURATION}") is not None, "the webhooks")
        for policy in ({"maxExpiration": "90d"},
                       {"requireIpAllowlistFor": ["Write", "Update", "Delete"]},
                       {"nameFormat": "^[a-z]+-[0-9]+$", "allowedPrefixes": ["kw"]}):
            _create(admin, "guarded", names.POLICY_PLURAL, _policy(policy))
        for role in ("readers", "writers"):
            _create(admin, "guarded", names.ROLE_PLURAL, _role(role, "Read"))

        latency: dict[str, list[float]] = {"plain": [], "guarded": []}
        for number in range(args.keys):
            for namespace in ("plain", "guarded"):  # alternating: drift falls on both
                began = time.perf_counter()
                _create(admin, namespace, names.PLURAL, _apikey(f"key-{number}", ["readers"]))
                latency[namespace].append(time.perf_counter() - began)
        for namespace, seconds in latency.items():
            print(f"create {namespace:8} p50 {_ms(statistics.median(seconds))}  "
                  f"p99 {_ms(_p99(seconds))}  ({len(seconds)} creates)")
        ratio = statistics.median(latency["guarded"]) / statistics.median(latency["plain"])
        print(f"guarded / plain, p50: {ratio:.2f}")

        _create(admin, "crowded", names.POLICY_PLURAL,
                _policy({"requireIpAllowlistFor": ["Write"]}))
        _create(admin, "crowded", names.ROLE_PLURAL, _role("wide", "Read"))
        for number in range(args.crowd):
            _create(admin, "crowded", names.PLURAL, _apikey(f"key-{number}", ["wide"]))
        _wait(lambda: sum((item.get("status") or {}).get("phase") == "Active" for item in
                          admin.list_objects(f"{BASE}/crowded/{names.PLURAL}")[0])
              == args.crowd, "every crowded key issued", timeout=300)
        time.sleep(2)  # the operator idle again: the edits are timed alone
        role_path = f"{BASE}/crowded/{names.ROLE_PLURAL}/wide"
        admitted, refused = [], []
        for edit in range(args.edits):
            began = time.perf_counter()
            admin.merge_patch_object(role_path, {"spec": {"description": f"edit {edit}"}})
            admitted.append(time.perf_counter() - began)
            began = time.perf_counter()
            try:
                admin.merge_patch_object(role_path, {"spec": {"permissions": [
                    {"area": "Invoices", "actions": ["Write"]}]}})
            except kube.KubeError as exc:
                if "out of policy" not in str(exc):
                    raise
            else:
                raise AssertionError("a widening edit was admitted")
            refused.append(time.perf_counter() - began)
        checked = [line.split(": ", 1)[1] for line in log.read_text().splitlines()
                   if "checked against" in line]
        print(f"the webhook checked {len(checked)} edits; its own account of the last two:",
              *checked[-2:], sep="\n  ")
        print(f"role edit over {args.crowd} keys: admitted p50 "
              f"{_ms(statistics.median(admitted))}, refused (listing the keys) p50 "
              f"{_ms(statistics.median(refused))}  ({args.edits} each)")
        return 0


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": names.POLICY_KIND, "metadata": {"generateName": "guard-"}, "spec": spec}


def _role(name: str, action: str) -> dict[str, Any]:
    return {"kind": names.ROLE_KIND, "metadata": {"name": name}, "spec": {
        "permissions": [{"area": "Invoices", "actions": [action],
                         "filter": {"team": "${context.team}"}}]}}


def _apikey(name: str, roles: list[str]) -> dict[str, Any]:
    return {"kind": names.KIND, "metadata": {"name": name}, "spec": {
        "expiration": "30d", "scopes": ["Reviews.Read"], "roles": roles,
        "context": {"team": "payments"}}}


def _create(api: kube.Kube, namespace: str, plural: str, body: dict[str, Any]) -> None:
    api.create_object(f"{BASE}/{namespace}/{plural}", {
        "apiVersion": names.API_VERSION, **body,
        "metadata": {**body["metadata"], "namespace": namespace}})


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not up within {timeout:.0f}s")
        time.sleep(0.1)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
