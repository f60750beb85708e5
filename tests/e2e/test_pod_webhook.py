"""The Pod webhook never holds the cluster hostage.

Only Pods labelled `keywright.dev/inject` are sent to it (objectSelector); the API server
waits at most 5 s for it and then admits the Pod without its key (failurePolicy Ignore);
the ApiKey webhook also gives up after 5 s, and refuses (Fail). All of it as the API
server holds it and does it: the configurations are read back (written over what an
earlier version left, kept while the operator is down), and Pod creations are timed
against an operator that hangs (SIGSTOP: its port still accepts connections, nothing
answers, so the API server waits for the timeout) and one that is gone (connection
refused). Expectations from docs/reference/api.md, Admission webhooks.

The ApiKey read inside the webhook is delayed with a fault point (a real server cannot
be made slow for one read on demand): the operator gives up first and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.support.k8s import REPO, Cluster, Operator, kubectl
from tests.support.manifests import apikey
from tests.support.waiting import eventually
from tests.support.webhooks import (
    INJECT,
    OPT_IN,
    configuration,
    create_pod,
    delete_configurations,
    env_of,
    operator_run,
    pod,
    timed_create,
)

TIMEOUT = 5  # seconds: timeoutSeconds of both webhooks, as the contract says
AT_ONCE = 2.0  # seconds: a Pod creation that never reached the webhook is well within
LATE = TIMEOUT + 3.0  # the API server gives up at TIMEOUT; the rest is the call itself
SELECTOR = {"matchExpressions": [{"key": INJECT, "operator": "Exists"}]}


def webhooks_of(kubeconfig: Path, kind: str) -> list[dict[str, Any]]:
    held = configuration(kubeconfig, kind)
    assert held is not None, f"no {kind} keywright.dev"
    found: list[dict[str, Any]] = held["webhooks"]
    return found


def only_webhook(kubeconfig: Path, kind: str) -> dict[str, Any]:
    [hook] = webhooks_of(kubeconfig, kind)
    return hook


def stale(kind: str, hook: dict[str, Any]) -> dict[str, Any]:
    """A configuration as Keywright left it when Kopf managed it: timeoutSeconds 30, no
    objectSelector, pointing at a port nothing listens on."""
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": "keywright.dev"},
            "webhooks": [{**hook, "timeoutSeconds": 30, "matchPolicy": "Equivalent",
                          "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"],
                          "clientConfig": {"url": f"https://127.0.0.1:1/{hook['name']}"}}]}


def test_the_api_server_holds_both_webhooks_with_the_selector_and_short_timeouts_across_restarts(
    operator: Operator, cluster: Cluster
) -> None:
    try:
        cluster.apply(stale("ValidatingWebhookConfiguration", {
            "name": "validate-apikey.keywright.dev", "failurePolicy": "Fail",
            "rules": [{"apiGroups": ["keywright.dev"], "apiVersions": ["v1alpha1"],
                       "resources": ["apikeys"], "operations": ["CREATE", "UPDATE"]}]}))
        cluster.apply(stale("MutatingWebhookConfiguration", {
            "name": "inject-pod.keywright.dev", "failurePolicy": "Ignore",
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "operations": ["CREATE"]}]}))
        left = only_webhook(cluster.kubeconfig, "mutatingwebhookconfiguration")
        assert (left["timeoutSeconds"], left["objectSelector"]) == (30, {})  # every Pod
        with operator_run(operator, cluster.kubeconfig, webhooks=True):
            for when in ("served", "while the operator is down"):
                pods = only_webhook(cluster.kubeconfig, "mutatingwebhookconfiguration")
                assert pods["name"] == "inject-pod.keywright.dev", when
                assert pods["objectSelector"] == SELECTOR, when
                assert pods["timeoutSeconds"] == TIMEOUT, when
                assert pods["failurePolicy"] == "Ignore", when
                assert [(r["resources"], r["operations"]) for r in pods["rules"]] == [
                    (["pods"], ["CREATE"])], when
                apikeys, roles, policies = webhooks_of(cluster.kubeconfig,
                                                       "validatingwebhookconfiguration")
                for hook, name, plural in ((apikeys, "validate-apikey", "apikeys"),
                                           (roles, "validate-apikeyrole", "apikeyroles"),
                                           (policies, "validate-apikeypolicy",
                                            "apikeypolicies")):
                    assert hook["name"] == f"{name}.keywright.dev", when
                    assert hook["timeoutSeconds"] == TIMEOUT, when
                    assert hook["failurePolicy"] == "Fail", when
                    assert hook["objectSelector"] == {}, when  # every one
                    assert [(r["resources"], r["operations"]) for r in hook["rules"]] == [
                        ([plural], ["CREATE", "UPDATE"])], when
                operator.stop()  # the second round: they stay, as they were
    finally:
        delete_configurations(cluster.kubeconfig)


def test_while_the_operator_hangs_or_is_gone_no_pod_but_an_opted_in_one_waits_and_that_at_most_5s(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    wanted = {INJECT: "wanted"}
    with operator_run(operator, cluster.kubeconfig, webhooks=True):
        cluster.apply(apikey("wanted", namespace))
        cluster.wait_phase(namespace, "wanted", "Active")
        served, _ = timed_create(cluster, pod("served", namespace, wanted, OPT_IN))
        assert env_of(served) == [("API_KEY", "wanted", "api-key")]  # the webhook is live

        operator.pause()  # hung: the API server connects, and nothing answers
        try:
            _, plain_took = timed_create(cluster, pod("plain", namespace))
            unlabelled, unlabelled_took = timed_create(
                cluster, pod("unlabelled", namespace, wanted))
            opted_in, opted_in_took = timed_create(
                cluster, pod("opted-in", namespace, wanted, OPT_IN))
            started = time.monotonic()
            refused = kubectl(cluster.kubeconfig, "create", "-f", "-", check=False,
                              stdin=json.dumps(apikey("while-hung", namespace)))
            refused_took = time.monotonic() - started
        finally:
            operator.resume()
        print(f"\nhung operator: unlabelled Pod {plain_took:.3f}s, annotated but unlabelled "
              f"{unlabelled_took:.3f}s, opted-in {opted_in_took:.3f}s, ApiKey refused "
              f"{refused_took:.3f}s")
        assert plain_took < AT_ONCE  # never sent to the webhook
        assert unlabelled_took < AT_ONCE
        assert env_of(unlabelled) == []  # no label, no key (documented)
        assert TIMEOUT - 1 <= opted_in_took < LATE  # sent, waited for, given up on
        assert env_of(opted_in) == []  # admitted without its key (Ignore)
        assert opted_in.metadata.annotations[INJECT] == "wanted"
        assert opted_in.metadata.labels == OPT_IN
        assert refused.returncode != 0  # the ApiKey webhook fails closed...
        assert "failed calling webhook" in refused.stderr
        assert TIMEOUT - 1 <= refused_took < LATE  # ...within its timeout

        operator.stop()  # gone: connection refused, the API server moves on at once
        gone_plain, gone_plain_took = timed_create(cluster, pod("plain-gone", namespace))
        gone, gone_took = timed_create(cluster, pod("opted-in-gone", namespace, wanted,
                                                    OPT_IN))
        print(f"operator gone: unlabelled Pod {gone_plain_took:.3f}s, opted-in "
              f"{gone_took:.3f}s")
        assert gone_plain_took < AT_ONCE
        assert gone_took < AT_ONCE
        assert env_of(gone) == []
        assert gone_plain.metadata.name == "plain-gone"


def test_a_slow_apikey_read_admits_the_pod_with_a_warning_before_the_api_server_gives_up(
    operator: Operator, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    slow = {"KEYWRIGHT_PAUSE_AT": f"apikey-lookup@{namespace}/slow",
            "KEYWRIGHT_PAUSE_UNTIL": str(release)}
    try:
        with operator_run(operator, cluster.kubeconfig, webhooks=True, env=slow) as log:
            for name in ("slow", "quick"):
                cluster.apply(apikey(name, namespace))
                cluster.wait_phase(namespace, name, "Active")
            quick, _ = create_pod(cluster, pod("quick", namespace, {INJECT: "quick"}, OPT_IN))
            assert env_of(quick) == [("API_KEY", "quick", "api-key")]  # the webhook is live

            started = time.monotonic()
            admitted, warned = create_pod(cluster, pod("slow", namespace, {INJECT: "slow"},
                                                       OPT_IN))
            took = time.monotonic() - started
            print(f"\nApiKey read held: the Pod admitted with a warning in {took:.3f}s")
            assert took < TIMEOUT  # the operator answered, before the API server gave up
            assert env_of(admitted) == []
            assert "Warning:" in warned
            assert "keywright: could not look up the ApiKey" in warned
            assert "no answer within 3s" in warned
            eventually(lambda: f"fault point apikey-lookup@{namespace}/slow reached"
                       in log.read_text(), timeout=5, what="the held ApiKey read")
            assert any(" WARNING " in line and namespace in line and "within 3s" in line
                       for line in log.read_text(errors="replace").splitlines())

            # a Pod labelled without the annotation is told what it lacks
            bare, warned = create_pod(cluster, pod("bare", namespace, labels=OPT_IN))
            assert env_of(bare) == []
            assert "Warning: keywright: label 'keywright.dev/inject' is set but annotation" \
                in warned
            release.touch()  # the held read ends, so the operator can stop at once
    finally:
        release.touch()  # never leave a webhook thread held


def test_a_pod_annotated_without_the_label_is_never_sent_and_gets_no_key(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    def calls() -> int:  # the webhook server's access log: one line per Pod sent
        return log.read_text(errors="replace").count('"POST /inject-pod?')

    with operator_run(operator, cluster.kubeconfig, webhooks=True) as log:
        cluster.apply(apikey("wanted", namespace))
        cluster.wait_phase(namespace, "wanted", "Active")
        admitted, warned = create_pod(cluster, pod("annotated-only", namespace,
                                                   {INJECT: "wanted"}))
        assert env_of(admitted) == []
        assert warned == ""  # the webhook never saw it, so it cannot say anything
        assert calls() == 0  # the API server did not call for it
        labelled, _ = create_pod(cluster, pod("labelled", namespace, {INJECT: "wanted"},
                                              OPT_IN))
        assert env_of(labelled) == [("API_KEY", "wanted", "api-key")]
        eventually(lambda: calls() == 1, timeout=5, what="the labelled Pod's call logged")

        # what the contract gives to find them, run as written: Pods, and pod templates
        for name, labels in (("legacy", {}), ("opted", OPT_IN)):
            cluster.apply(deployment(name, namespace, labels))
        found = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", documented_search()],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})
        assert found.returncode == 0, found.stderr
        listed = found.stdout.splitlines()
        assert f"{namespace}/annotated-only" in listed
        assert f"{namespace}/labelled" not in listed
        assert f"Deployment {namespace}/legacy" in listed
        assert f"Deployment {namespace}/opted" not in listed


def documented_search() -> str:
    """The commands docs/reference/api.md gives to list what carries the annotation
    without the label."""
    text = (REPO / "docs" / "reference" / "api.md").read_text()
    after = text[text.index("These list the Pods"):]
    start = after.index("```sh\n") + len("```sh\n")
    return textwrap.dedent(after[start:after.index("```", start)])


def deployment(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Deployment whose pod template carries the annotation, and `labels`."""
    selector = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": {
                "metadata": {"labels": {**selector, **labels},
                             "annotations": {INJECT: "wanted"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}
