"""The operator's side of the contract that only shows on a live cluster.

The pepper (the operator will not start without it once keys hold hashes; a rotation of
it is picked up live), the admission webhooks while the operator is down or cannot read
an ApiKey (ApiKeys fail closed, Pods fail open), a rotation racing another writer of its
Secret, and restart targets of every kind, including one the API server refuses to
patch. Every expectation comes from docs/reference/api.md and docs/operations.md.

Faults are injected only where a real server cannot produce the situation on demand
(keywright.kits.faults): a failing ApiKey read inside the webhook, and a rotation held
between its decision and its conditional write. Everything else is provoked for real:
a deleted pepper, a stopped operator, a write by someone else, an admission webhook of
the cluster refusing a workload patch.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from keywright.core import hashing
from keywright.kits import processes
from tests.support.k8s import Cluster, Operator, Plaintext, Verifier, kubectl
from tests.support.manifests import apikey
from tests.support.waiting import eventually
from tests.support.webhooks import INJECT, OPT_IN, create_pod, env_of, operator_run, pod

SYSTEM = "keywright-system"  # the operator's namespace, home of the pepper
PEPPER = "keywright-pepper"
MANAGED_BY = "app.kubernetes.io/managed-by"  # the label on the pepper the operator makes


# -- helpers --------------------------------------------------------------------------

def rotate(cluster: Cluster, namespace: str, name: str, value: str) -> None:
    kubectl(cluster.kubeconfig, "-n", namespace, "annotate", "--overwrite", "apikey", name,
            f"keywright.dev/rotate={value}")


def wait_status(cluster: Cluster, namespace: str, name: str, what: str,
                **fields: Any) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = cluster.status(namespace, name)
        return status if all(status.get(k) == v for k, v in fields.items()) else None
    return eventually(reached, timeout=30, what=f"{namespace}/{name}: {what}")


def key_matches(cluster: Cluster, key: str, hashed: str) -> bool:
    return hashing.matches(key, hashed, hashing.Peppers.from_data(cluster.pepper()))


def verifies(verifier: Verifier, key: Plaintext) -> bool:
    return verifier.get("/verify", {"X-API-Key": key})[0] == 200


@pytest.fixture
def ready_verifier(verifier: Verifier) -> Verifier:
    """The session verifier, started first if an earlier test left it stopped."""
    verifier.ensure_ready()
    return verifier


# -- the pepper -----------------------------------------------------------------------

def test_the_operator_will_not_start_without_the_pepper_once_keys_hold_hashes_and_says_restore_it(
    running_operator: Operator, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.apply(apikey("hashed", namespace))
    assert cluster.wait_phase(namespace, "hashed", "Active")["hash"]
    saved = cluster.secret(SYSTEM, PEPPER)
    assert saved is not None
    assert saved.data
    backup = client.V1Secret(
        metadata=client.V1ObjectMeta(name=PEPPER, namespace=SYSTEM,
                                     labels=saved.metadata.labels,
                                     annotations=saved.metadata.annotations),
        type=saved.type, data=dict(saved.data))
    running_operator.stop()
    log = tmp_path / "operator-without-pepper.log"
    try:
        cluster.core.delete_namespaced_secret(PEPPER, SYSTEM)
        eventually(lambda: cluster.secret(SYSTEM, PEPPER) is None, timeout=10,
                   what="the pepper Secret gone")
        started = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
             str(running_operator.kubeconfig), "--namespace", SYSTEM],
            log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code = started.wait(60)
        finally:
            processes.terminate(started)
        said = log.read_text(errors="replace")
        assert code != 0, said
        assert f"{SYSTEM}/{PEPPER}" in said
        assert "restore" in said.lower()
        assert "backup" in said.lower()
        assert cluster.secret(SYSTEM, PEPPER) is None  # a lost pepper is never replaced
    finally:
        if cluster.secret(SYSTEM, PEPPER) is None:  # put back whatever the test removed
            cluster.core.create_namespaced_secret(SYSTEM, backup)
        running_operator.start()
    restored = cluster.secret(SYSTEM, PEPPER)
    assert restored is not None
    same = restored.data == saved.data  # compared apart: a failure never prints a pepper
    assert same, "the pepper was not put back as it was"


@contextlib.contextmanager
def pepper_without_label(cluster: Cluster) -> Iterator[None]:
    """The pepper Secret as a person may have made it (`kubectl create secret generic`,
    a sealed or external secret, a restore by hand): without the label the operator
    puts on the one it creates. Labelled again afterwards."""
    found = cluster.secret(SYSTEM, PEPPER)
    assert found is not None
    labels = dict(found.metadata.labels or {})
    assert MANAGED_BY in labels
    kubectl(cluster.kubeconfig, "-n", SYSTEM, "label", "secret", PEPPER, f"{MANAGED_BY}-")
    try:
        yield
    finally:
        kubectl(cluster.kubeconfig, "-n", SYSTEM, "label", "--overwrite", "secret", PEPPER,
                f"{MANAGED_BY}={labels[MANAGED_BY]}")


def pepper_as_made(cluster: Cluster) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


@pytest.mark.parametrize("pepper_state", [pepper_as_made, pepper_without_label],
                         ids=["the pepper secret the operator made",
                              "a pepper secret made by hand without keywright's label"])
def test_a_pepper_rotation_is_picked_up_live_and_keys_of_every_version_keep_verifying(
    pepper_state: Callable[[Cluster], contextlib.AbstractContextManager[None]],
    operator: Operator, ready_verifier: Verifier, cluster: Cluster, namespace: str
) -> None:
    # the operator (re)started on the pepper as it is, so it loads it the way it was found
    with pepper_state(cluster), operator_run(operator, cluster.kubeconfig):
        rotate_the_pepper_live(ready_verifier, cluster, namespace)


def rotate_the_pepper_live(verifier: Verifier, cluster: Cluster, namespace: str) -> None:
    pepper = cluster.pepper()
    old_version = pepper["active"].decode("ascii")
    cluster.apply(apikey("before", namespace))
    before = cluster.wait_phase(namespace, "before", "Active")
    assert before["hash"].startswith(f"hmac-sha256:{old_version}:")
    old_key = cluster.plaintext(namespace, "before")
    eventually(lambda: verifies(verifier, old_key), timeout=10, what="the old key verified")

    # what a person does: add the next version (32 random bytes), point `active` at it
    new_version = f"v{max(int(v[1:]) for v in pepper if v != 'active') + 1}"
    cluster.core.patch_namespaced_secret(PEPPER, SYSTEM, {"data": {
        new_version: base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
        "active": base64.b64encode(new_version.encode("ascii")).decode("ascii")}})

    # Picked up live, so the operator needs no restart; a key applied in the instant
    # before its watch delivers the change may still get the old version, so the check
    # is "new keys are soon hashed under the new version", one fresh key per try.
    tries: list[str] = []

    def issued_under_new_version() -> str | None:
        name = f"after-{len(tries)}"
        tries.append(name)
        cluster.apply(apikey(name, namespace))
        status = cluster.wait_phase(namespace, name, "Active")
        return name if status["hash"].startswith(f"hmac-sha256:{new_version}:") else None
    after = eventually(issued_under_new_version, timeout=20, interval=0.5,
                       what=f"a new key hashed under {new_version}")
    new_key = cluster.plaintext(namespace, after)
    assert key_matches(cluster, new_key, cluster.status(namespace, after)["hash"])

    eventually(lambda: verifies(verifier, new_key), timeout=10,
               what=f"the running verifier verifying a key hashed under {new_version}")
    assert verifies(verifier, old_key)  # the old version stays, so old hashes still verify
    assert cluster.status(namespace, "before")["hash"] == before["hash"]  # never rehashed

    rotate(cluster, namespace, "before", "after-the-pepper-rotation")
    rotated = wait_status(cluster, namespace, "before", "rotated", revision=2)
    assert rotated["hash"].startswith(f"hmac-sha256:{new_version}:")
    rotated_key = cluster.plaintext(namespace, "before")
    eventually(lambda: verifies(verifier, rotated_key), timeout=10,
               what="the rotated key verified")


# -- admission while the operator is down or cannot look ------------------------------

def test_while_the_operator_is_down_apikeys_are_refused_and_annotated_pods_admitted_unchanged(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    with operator_run(operator, cluster.kubeconfig, webhooks=True):
        cluster.apply(apikey("wanted", namespace))
        cluster.wait_phase(namespace, "wanted", "Active")
        served, _ = create_pod(cluster, pod("while-up", namespace, {INJECT: "wanted"},
                                            OPT_IN))
        assert env_of(served) == [("API_KEY", "wanted", "api-key")]  # the webhook is live

        operator.stop()  # its webhook configurations stay in place
        refused = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                          stdin=json.dumps(apikey("while-down", namespace)))
        assert refused.returncode != 0
        assert "failed calling webhook" in refused.stderr  # the API server's own error
        assert kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikey", "while-down",
                       check=False).returncode != 0  # nothing was stored

        admitted, _ = create_pod(cluster, pod("while-down", namespace, {INJECT: "wanted"},
                                              OPT_IN))
        assert admitted.metadata.annotations[INJECT] == "wanted"
        assert [c.env for c in admitted.spec.containers] == [None]  # unchanged


def test_an_annotated_pod_is_admitted_unchanged_with_a_warning_when_its_apikey_cannot_be_looked_up(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    # A real API server cannot be made to fail one given GET on demand: the fault point
    # fails the webhook's read of this one ApiKey; every other lookup works.
    failing = {"KEYWRIGHT_FAIL_AT": f"apikey-lookup@{namespace}/unreadable"}
    with operator_run(operator, cluster.kubeconfig, webhooks=True, env=failing) as log:
        for name in ("unreadable", "readable"):
            cluster.apply(apikey(name, namespace))
            cluster.wait_phase(namespace, name, "Active")
        served, _ = create_pod(cluster, pod("readable", namespace, {INJECT: "readable"},
                                            OPT_IN))
        assert env_of(served) == [("API_KEY", "readable", "api-key")]  # the webhook is live

        admitted, warned = create_pod(cluster, pod("unreadable", namespace,
                                                   {INJECT: "unreadable"}, OPT_IN))
        assert admitted.metadata.annotations[INJECT] == "unreadable"
        assert [c.env for c in admitted.spec.containers] == [None]  # admitted unchanged
        assert "Warning:" in warned  # the admission warning, as kubectl shows it
        assert "keywright" in warned
        logged = [line for line in log.read_text(errors="replace").splitlines()
                  if " WARNING " in line and "Pod" in line and namespace in line]
        assert logged, "the operator logged no warning for the Pod it could not inject"


# -- rotation -------------------------------------------------------------------------

def secret_history(cluster: Cluster, namespace: str, name: str,
                   since: str) -> list[client.V1Secret]:
    """Every version the Secret went through after resourceVersion `since`, in order
    (replayed by the API server's watch)."""
    return [event["object"] for event in watch.Watch().stream(
        cluster.core.list_namespaced_secret, namespace,
        field_selector=f"metadata.name={name}", resource_version=since, timeout_seconds=2)]


def test_a_rotation_meeting_a_conflicting_write_decides_again_and_keeps_what_others_put_there(
    operator: Operator, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    # A real server cannot hold the operator between its decision and its write while
    # someone else writes: the pause point does, and the write itself is real, so the
    # API server answers the operator's conditional patch with a real 409.
    subject = f"{namespace}/shared"
    release = tmp_path / "release"
    foreign = f"foreign-{uuid.uuid4().hex}"  # unique: the hygiene scan looks for it in logs
    pausing = {"KEYWRIGHT_PAUSE_AT": f"before-secret-patch@{subject}",
               "KEYWRIGHT_PAUSE_UNTIL": str(release)}
    with operator_run(operator, cluster.kubeconfig, env=pausing) as log:
        try:
            cluster.apply(apikey("shared", namespace))
            first = cluster.wait_phase(namespace, "shared", "Active")
            old_key = cluster.plaintext(namespace, "shared")
            decided_on = cluster.secret(namespace, "shared")
            assert decided_on is not None
            rotate(cluster, namespace, "shared", "while-someone-else-writes")
            eventually(lambda: f"{subject}: paused until" in log.read_text(), timeout=30,
                       what="the rotation held before its conditional Secret patch")
            kubectl(cluster.kubeconfig, "-n", namespace, "patch", "secret", "shared",
                    "--type=merge", "-p", json.dumps({
                        "metadata": {"labels": {"example.com/team": "payments"},
                                     "annotations": {"example.com/owner": "ops"}},
                        "data": {"extra": base64.b64encode(foreign.encode()).decode()}}))
            release.touch()
            status = wait_status(cluster, namespace, "shared", "rotated", revision=2)
        finally:
            release.touch()  # never leave a worker paused
        arrivals = log.read_text().count(f"fault point before-secret-patch@{subject} reached")

    assert arrivals == 2  # the 409 sent the operator back to decide once more
    secret = cluster.secret(namespace, "shared")
    assert secret is not None
    new_key = cluster.plaintext(namespace, "shared")
    assert new_key != old_key
    assert key_matches(cluster, new_key, status["hash"])
    assert status["hash"] != first["hash"]
    assert secret.metadata.annotations["keywright.dev/hash"] == status["hash"]
    assert secret.metadata.annotations["keywright.dev/revision"] == "2"
    assert secret.metadata.labels["example.com/team"] == "payments"
    assert secret.metadata.annotations["example.com/owner"] == "ops"
    assert base64.b64decode(secret.data["extra"]).decode() == foreign
    synced = next(c for c in status["conditions"] if c["type"] == "SecretSynced")
    assert synced["status"] == "True"

    # The Secret went through exactly two writes after the decision: the other writer's,
    # then the operator's one write of revision 2 (one plaintext for the new revision).
    versions = secret_history(cluster, namespace, "shared",
                              str(decided_on.metadata.resource_version))
    seen = [(s.metadata.annotations["keywright.dev/revision"], "extra" in (s.data or {}),
             Plaintext(base64.b64decode(s.data["api-key"]).decode("ascii")))
            for s in versions]
    assert seen == [("1", True, old_key), ("2", True, new_key)]


def workload(kind: str, name: str, namespace: str,
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    selector = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": selector}, "spec": {"containers": [
            {"name": "app", "image": "registry.invalid/app:1"}]}}}
    if kind == "StatefulSet":
        spec.update(replicas=1, serviceName=name)
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": spec}


def test_a_rotation_rolls_statefulsets_and_daemonsets_and_a_refused_restart_is_a_warning(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    # A real refusal: an admission webhook of the cluster that cannot be reached and
    # fails closed refuses every update of the one DaemonSet it selects.
    refusing = {"e2e.keywright.dev/refuse-updates": namespace}
    guard = f"refuse-{namespace}"
    cluster.apply({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": guard},
        "webhooks": [{
            "name": "refuse.e2e.keywright.dev", "failurePolicy": "Fail",
            "clientConfig": {"url": "https://127.0.0.1:1/refuse"},  # nothing listens
            "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                       "operations": ["UPDATE"], "resources": ["daemonsets"]}],
            "objectSelector": {"matchLabels": refusing},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5}]})
    try:
        apps = client.AppsV1Api(cluster.api)
        cluster.apply(workload("StatefulSet", "store", namespace))
        cluster.apply(workload("DaemonSet", "agent", namespace))
        cluster.apply(workload("DaemonSet", "guarded", namespace, labels=refusing))
        eventually(lambda: "failed calling webhook" in kubectl(
            cluster.kubeconfig, "-n", namespace, "annotate", "--dry-run=server", "daemonset",
            "guarded", "probe=1", check=False).stderr, timeout=30,
            what="the API server refusing updates of the guarded DaemonSet")
        cluster.apply(apikey("rolling", namespace, rotation={"restartTargets": [
            {"kind": "StatefulSet", "name": "store"},
            {"kind": "DaemonSet", "name": "agent"},
            {"kind": "DaemonSet", "name": "guarded"}]}))
        cluster.wait_phase(namespace, "rolling", "Active")

        rotate(cluster, namespace, "rolling", "roll-them")
        status = wait_status(cluster, namespace, "rolling", "rotated and restarts recorded",
                             revision=2, restartedRevision=2)
        assert status["phase"] == "Active"  # a refused restart never fails the rotation
        for template in (apps.read_namespaced_stateful_set("store", namespace).spec.template,
                         apps.read_namespaced_daemon_set("agent", namespace).spec.template):
            notes = template.metadata.annotations
            assert notes["keywright.dev/revision"] == "2"
            assert notes["keywright.dev/rotated-at"] == status["rotatedAt"]
        guarded = apps.read_namespaced_daemon_set("guarded", namespace).spec.template
        assert "keywright.dev/revision" not in (guarded.metadata.annotations or {})

        def refused() -> list[tuple[str, str, str]]:
            return [e for e in cluster.events(namespace, "rolling", quiet=0.2)
                    if e[1] == "RestartFailed"]
        [(kind, _, message)] = eventually(refused, timeout=10, what="a RestartFailed event")
        assert kind == "Warning"
        assert "DaemonSet guarded" in message
    finally:
        kubectl(cluster.kubeconfig, "delete", "validatingwebhookconfiguration", guard,
                "--ignore-not-found")
