"""Runs last (file order): no plaintext key and no pepper anywhere they must not be.

The session's operator ran at DEBUG for every e2e test before this one, across crashes
and restarts. Every key those tests issued still exists (namespaces are kept until the
session ends), so each is searched for, with the pepper, in: the operator's whole log,
the verifier's whole log and audit
lines, every event in the cluster, every ApiKey (spec, status, annotations), and the labels and
annotations of every Secret Keywright manages.
"""

from __future__ import annotations

import base64
import json

from kubernetes import client

from keywright.core import names
from tests.support.k8s import Cluster, Operator, Verifier, kubectl
from tests.support.manifests import apikey


def needles_of(secret_value: bytes) -> list[bytes]:
    return [secret_value, base64.b64encode(secret_value), secret_value.hex().encode(),
            repr(secret_value)[2:-1].encode()]


def test_no_plaintext_or_pepper_in_logs_events_status_or_annotations(
    running_operator: Operator, verifier: Verifier, cluster: Cluster, namespace: str
) -> None:
    # A little more of everything at DEBUG, so this test stands on its own too.
    cluster.apply(apikey("hygiene", namespace, active=False))
    cluster.wait_phase(namespace, "hygiene", "Inactive", timeout=10)
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "secret", "hygiene")
    cluster.apply(apikey("hygiene", namespace, active=True))
    cluster.wait_phase(namespace, "hygiene", "Active", timeout=10)

    selector = "app.kubernetes.io/managed-by=keywright"
    managed = cluster.core.list_secret_for_all_namespaces(label_selector=selector).items
    keys = [base64.b64decode(value) for s in managed if s.metadata.name != "keywright-pepper"
            for value in (s.data or {}).values()]
    peppers = [value for name, value in cluster.pepper().items() if name != "active"]
    assert len(keys) >= 20, "expected the keys of the earlier e2e tests to be searched too"
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

    verified = verifier.all_logs().encode()  # diagnostics at DEBUG and the audit lines
    # Both ran as their ServiceAccounts all session: deploy/'s RBAC never refused them.
    # (The watches retried a few refusals in the second after test_verifier restarts
    # kube-apiserver, whose RBAC authorizer answers before its caches are filled.)
    lines = [line[:200] for line in (logs + verified).decode(errors="replace").splitlines()
             if "forbidden" in line.lower()]
    assert [line for line in lines if "retry" not in line.lower()] == []
    assert len(lines) <= 20, lines  # a lasting gap would be retried far more often
    if verifier.runs:
        assert b'"code":"OK"' in verified, "expected the verifier e2e tests' audit lines"
    places = {"operator log": logs, "verifier log and audit": verified, "events": events,
              "ApiKeys": apikeys,
              "Secret labels and annotations": metadata}
    leaks = sorted({(kind, place) for kind, values in (("a plaintext key", keys),
                                                       ("the pepper", peppers))
                    for value in values for needle in needles_of(value)
                    for place, text in places.items() if needle in text})
    assert leaks == [], f"found {leaks}"  # names where, never the secret itself
