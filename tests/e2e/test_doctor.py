"""`kubectl apikey doctor` on the local control plane, with the operator serving its
webhooks as its ServiceAccount: what it finds, and how it says what fails (exit 1, or
124 once --wait runs out). The whole-product pass, every check ok and exit 0 on real
Deployments, is tests/node's."""

from __future__ import annotations

import json

from tests.e2e.test_plugin import apikey_cli
from tests.support.k8s import Cluster, Operator


def checks(output: str) -> dict[str, tuple[str, str]]:
    return {c["check"]: (c["status"], c["detail"]) for c in json.loads(output)}


def test_doctor_finds_what_works_and_says_what_it_cannot_see(
    webhooks: Operator, cluster: Cluster, namespace: str
) -> None:
    ran = apikey_cli(cluster, "doctor", "-n", namespace, "-o", "json")
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the Deployments below
    found = checks(ran.stdout)
    assert found["CRDs"] == ("ok", "apikeys, apikeyroles, apikeypolicies served at "
                                   "keywright.dev/v1alpha1")
    assert found["admission webhook"][0] == "ok"
    assert found["pepper"] == ("ok", "Secret keywright-system/keywright-pepper exists")
    assert found["clock"][0] == "ok"
    # deploy/'s Deployments are applied here (for their ServiceAccounts) but no node runs
    # them: the tests run the operator and verifier as processes
    assert found["operator"] == ("failed", "0/1 replicas ready")
    assert found["verifiers"] == ("failed", "0/2 replicas ready")
    table = apikey_cli(cluster, "doctor", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert len(table) == 1 + len(found)


def test_doctor_fails_while_the_webhook_is_unreachable_and_waits_if_asked(
    webhooks: Operator, cluster: Cluster, namespace: str
) -> None:
    webhooks.stop()
    try:
        ran = apikey_cli(cluster, "doctor", "-n", namespace, "-o", "json")
        assert ran.returncode == 1
        status, detail = checks(ran.stdout)["admission webhook"]
        assert status == "failed"
        assert "failed calling webhook" in detail
        waited = apikey_cli(cluster, "doctor", "-n", namespace, "--wait", "3s")
        assert waited.returncode == 124
    finally:
        webhooks.start(extra=webhooks.extra)
