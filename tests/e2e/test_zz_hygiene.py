"""No plaintext key and no pepper anywhere they must not be.

It runs last (conftest.py puts it there whatever the order of the rest). The session's
operator and verifier ran at DEBUG for every e2e test before this one, across crashes
and restarts; every key those tests issued still exists (namespaces are kept until the
session ends). The test issues, rotates, re-issues and verifies keys of its own too, so
it stands alone. Each key is searched for, with the pepper, in: the operator's whole
log, the verifier's whole log and audit lines, every event in the cluster, every ApiKey
(spec, status, annotations), and the labels and annotations of every Secret Keywright
manages.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime

from kubernetes import client

from keywright.core import names
from keywright.dev import controlplane
from tests.support.k8s import Cluster, Operator, Verifier, kubectl
from tests.support.manifests import apikey
from tests.support.waiting import eventually


def needles_of(secret_value: bytes) -> list[bytes]:
    return [secret_value, base64.b64encode(secret_value), secret_value.hex().encode(),
            repr(secret_value)[2:-1].encode()]


RESTART_SETTLES = 15.0  # seconds after kube-apiserver is ready again


def after_a_restart(line: str, plane: controlplane.ControlPlane) -> bool:
    """Whether a log line (`2026-12-01 15:00:00,123 ...`, local time) was written while
    kube-apiserver was restarting or within RESTART_SETTLES of it being back."""
    try:
        written = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return False  # a line without our timestamp is not excused
    return any(stopped <= written <= (ready or time.time()) + RESTART_SETTLES
               for stopped, ready in plane.outages)


def test_no_plaintext_or_pepper_in_logs_events_status_or_annotations(
    running_operator: Operator, verifier: Verifier, cluster: Cluster, namespace: str,
    control_plane: controlplane.ControlPlane
) -> None:
    # Some of everything at DEBUG, so this test stands on its own: issue, deactivate,
    # re-issue after a deleted Secret, rotate with grace, and verify through the verifier.
    verifier.ensure_ready()
    cluster.apply(apikey("hygiene", namespace, active=False))
    cluster.wait_phase(namespace, "hygiene", "Inactive", timeout=10)
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "secret", "hygiene")
    cluster.apply(apikey("hygiene", namespace, active=True))
    cluster.wait_phase(namespace, "hygiene", "Active", timeout=10)
    rotated = apikey("hygiene-rotated", namespace, rotation={"gracePeriod": "1h"})
    cluster.apply(rotated)
    cluster.wait_phase(namespace, "hygiene-rotated", "Active", timeout=10)
    rotated["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: "hygiene"}
    cluster.apply(rotated)
    eventually(lambda: cluster.status(namespace, "hygiene-rotated").get("revision") == 2,
               timeout=10, what="the rotation")
    cluster.apply(apikey("hygiene-used", namespace))
    cluster.wait_phase(namespace, "hygiene-used", "Active", timeout=10)
    for name in ("hygiene-used", "hygiene-rotated"):  # "hygiene" has no Secret: deleted
        headers: dict[str, str] = {"X-API-Key": cluster.plaintext(namespace, name)}

        def accepted(headers: dict[str, str] = headers) -> bool:
            return verifier.get("/verify", headers)[0] == 200
        eventually(accepted, timeout=30, what=f"the verifier answering OK for {name}")

    selector = "app.kubernetes.io/managed-by=keywright"
    managed = cluster.core.list_secret_for_all_namespaces(label_selector=selector).items
    keys = [base64.b64decode(value) for s in managed if s.metadata.name != "keywright-pepper"
            for value in (s.data or {}).values()]
    peppers = [value for name, value in cluster.pepper().items() if name != "active"]
    assert len(keys) >= 2  # at least this test's own
    assert peppers

    logs = running_operator.all_logs().encode()
    assert b"DEBUG" in logs
    assert b"Issued key" in logs
    events = json.dumps(client.ApiClient().sanitize_for_serialization(
        cluster.core.list_event_for_all_namespaces().items)).encode()
    apikeys = json.dumps(cluster.custom.list_cluster_custom_object(
        names.GROUP, names.VERSION, names.PLURAL)).encode()
    metadata = json.dumps([{"labels": s.metadata.labels, "annotations": s.metadata.annotations}
                           for s in managed]).encode()

    # audit lines are written in batches (every 0.1 s): wait for this test's own
    eventually(lambda: b'"code":"OK"' in verifier.all_logs().encode(), timeout=10,
               what="audit lines of the keys just verified")
    verified = verifier.all_logs().encode()  # diagnostics at DEBUG and the audit lines
    # Both ran as their ServiceAccounts all session: deploy/'s RBAC never refused them,
    # but in the seconds after a kube-apiserver restart (its RBAC authorizer answers
    # before its caches are filled; the watches retry).
    refused = [line[:200] for line in (logs + verified).decode(errors="replace").splitlines()
               if "forbidden" in line.lower()]
    assert [line for line in refused if not after_a_restart(line, control_plane)] == []
    places = {"operator log": logs, "verifier log and audit": verified, "events": events,
              "ApiKeys": apikeys,
              "Secret labels and annotations": metadata}
    leaks = sorted({(kind, place) for kind, values in (("a plaintext key", keys),
                                                       ("the pepper", peppers))
                    for value in values for needle in needles_of(value)
                    for place, text in places.items() if needle in text})
    assert leaks == [], f"found {leaks}"  # names where, never the secret itself
