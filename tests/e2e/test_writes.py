"""What the operator writes to the API server, counted from its audit log: issuing a key
is its Secret and one status patch; a restart with nothing changed writes nothing, and
still re-arms every key's wake-ups."""

from __future__ import annotations

import collections
import json
import time

from keywright.dev import controlplane
from tests.support.audit import operator_writes
from tests.support.k8s import Cluster, Operator, kubectl
from tests.support.manifests import apikey
from tests.support.waiting import eventually

KEYS = 200


def apply_all(cluster: Cluster, manifests: list[dict[str, object]]) -> None:
    kubectl(cluster.kubeconfig, "apply", "-f", "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))


def phases(cluster: Cluster, namespace: str) -> dict[str, str]:
    listed = json.loads(kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikeys",
                                "-o", "json").stdout)
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "")
            for i in listed["items"]}


def test_issuing_writes_a_secret_and_one_status_patch_per_key_and_a_restart_nothing(
    operator: Operator, cluster: Cluster, namespace: str,
    control_plane: controlplane.ControlPlane
) -> None:
    operator.ensure_running()
    began = time.time()
    names = [f"k{i:03}" for i in range(KEYS)]
    # one of them expires soon after the restart: its wake-up must come from the new run
    apply_all(cluster, [apikey(n, namespace, **({"expiration": "40s"} if n == "k000" else {}))
                        for n in names])
    eventually(lambda: set(phases(cluster, namespace).values()) == {"Active"}
               and len(phases(cluster, namespace)) == KEYS, timeout=60, interval=0.5,
               what=f"{KEYS} keys Active")
    time.sleep(1)  # a write still on its way would land in the log after the last Active
    written = [w for w in operator_writes(control_plane, namespace, began)
               if not w.startswith("create events/")]
    counted = collections.Counter(w.rsplit(" ", 1)[0] for w in written)
    assert counted == {"create secrets/": KEYS, "patch apikeys/status": KEYS}, counted
    patched = collections.Counter(w.rsplit(" ", 1)[1] for w in written
                                  if w.startswith("patch apikeys/status"))
    assert set(patched) == set(names)  # one each: 200 patches over 200 names
    body = cluster.apikey(namespace, "k001")
    assert "kopf" not in body["status"]  # no framework bookkeeping in the object
    assert not body["metadata"].get("finalizers")
    assert not [a for a in body["metadata"].get("annotations") or {} if "kopf" in a]

    restarted = time.time()
    operator.stop()
    operator.start()
    cluster.apply(apikey("later", namespace))  # the restarted operator at work
    cluster.wait_phase(namespace, "later", "Active", timeout=30)
    time.sleep(2)  # every key of the initial listing judged by now (200 take < 1 s)
    again = [w for w in operator_writes(control_plane, namespace, restarted)
             if not w.endswith(" later") and not w.startswith("create events/")
             and not w.startswith("create secrets/")]
    secrets = [w for w in operator_writes(control_plane, namespace, restarted)
               if w.startswith("create secrets/")]
    assert again == []
    assert len(secrets) == 1  # the new key's only
    expired = cluster.wait_phase(namespace, "k000", "Expired", timeout=60)
    assert expired["expiresAt"] <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
