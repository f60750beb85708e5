"""An ApiKey's life on the real control plane, driven with kubectl as a user would."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

from keywright.core import times, tokens
from tests.support import contract
from tests.support.k8s import Cluster, Operator, kubectl
from tests.support.manifests import apikey
from tests.support.waiting import eventually


def parse(text: str) -> datetime:
    return times.parse(text)


def test_apply_issues_one_key_into_an_owned_secret_and_keeps_only_its_hash(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("billing", namespace, scopes=["Reviews.Read"],
                         secret={"labels": {"team": "payments"},
                                 "annotations": {"owner": "payments"}}))
    status = cluster.wait_phase(namespace, "billing", "Active", timeout=10)
    body = cluster.apikey(namespace, "billing")
    secret = cluster.secret(namespace, "billing")
    assert secret is not None
    key = cluster.plaintext(namespace, "billing")

    assert contract.well_formed(key)
    assert key.startswith("kw_")
    pepper = cluster.pepper()  # created by the operator on its first start (v1)
    versions = {name: value for name, value in pepper.items() if name != "active"}
    assert "v1" in versions  # a pepper rotation test may have added more since
    assert all(len(value) >= 32 for value in versions.values())
    active = pepper["active"].decode()
    assert status["hash"] == contract.hash_of(key, versions[active], active)
    assert status["hash"] == secret.metadata.annotations["keywright.dev/hash"]
    assert secret.metadata.annotations["keywright.dev/revision"] == "1"
    assert secret.metadata.annotations["owner"] == "payments"
    assert secret.metadata.labels == {"team": "payments",
                                      "app.kubernetes.io/managed-by": "keywright",
                                      "keywright.dev/apikey": "billing"}
    assert secret.type == "Opaque"
    [owner] = secret.metadata.owner_references or []
    assert (owner.kind, owner.name, owner.uid, owner.controller) == \
        ("ApiKey", "billing", body["metadata"]["uid"], True)

    created = parse(body["metadata"]["creationTimestamp"])
    assert status["createdAt"] == body["metadata"]["creationTimestamp"]
    assert parse(status["expiresAt"]) == created + timedelta(days=30)
    assert (status["revision"], status["prefix"], status["lastCharacters"],
            status["secretName"], status["keyPreview"], status["observedGeneration"]) == \
        (1, "kw", key[-4:], "billing", f"kw_...{key[-4:]}", 1)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {"Ready": ("True", "Active"), "SecretSynced": ("True", "Synced"),
                          "Expired": ("False", "NotExpired")}
    assert cluster.events(namespace, "billing") == [
        ("Normal", "Issued", f"Issued key kw_...{key[-4:]} (revision 1) into Secret billing")]

    table = kubectl(cluster.kubeconfig, "-n", namespace, "get", "ak", "billing").stdout
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "KEY", "SCOPES", "EXPIRES",
                                            "AGE"]
    assert f"Active   kw_...{key[-4:]}" in table
    assert '["Reviews.Read"]' in table
    assert status["expiresAt"] in table


def test_kubectl_explain_describes_the_spec(cluster: Cluster, crd: None) -> None:
    explained = kubectl(cluster.kubeconfig, "explain", "apikey.spec").stdout
    for field in ("expiration", "scopes", "ipAllowlist", "active", "prefix", "rotation"):
        assert field in explained
    assert "Immutable; rotation does not extend it" in explained


def test_deactivate_and_reactivate_with_events(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("svc", namespace))
    before = cluster.wait_phase(namespace, "svc", "Active", timeout=10)
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "svc", "--type=merge",
            "-p", '{"spec": {"active": false}}')
    inactive = cluster.wait_phase(namespace, "svc", "Inactive", timeout=10)
    ready = next(c for c in inactive["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Deactivated")
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "svc", "--type=merge",
            "-p", '{"spec": {"active": true}}')
    after = cluster.wait_phase(namespace, "svc", "Active", timeout=10)
    assert after["hash"] == before["hash"]
    assert after["revision"] == 1
    assert cluster.reasons(namespace, "svc") == ["Issued", "Deactivated", "Activated"]


def test_a_key_expires_at_its_instant_within_two_seconds(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("short", namespace, expiration="6s"))
    active = cluster.wait_phase(namespace, "short", "Active", timeout=10)
    due = parse(active["expiresAt"])
    expired = cluster.wait_phase(namespace, "short", "Expired", timeout=15)
    seen = datetime.now(UTC)
    assert seen - due < timedelta(seconds=2), f"expired {seen - due} after its instant"
    assert expired["expiresAt"] == active["expiresAt"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in expired["conditions"]}
    assert conditions["Expired"] == ("True", "Expired")
    assert conditions["Ready"] == ("False", "Expired")
    assert cluster.reasons(namespace, "short") == ["Issued", "Expired"]
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "short", "--type=merge",
            "-p", '{"spec": {"active": false}}')
    generation = cluster.apikey(namespace, "short")["metadata"]["generation"]
    seen = eventually(lambda: cluster.status(namespace, "short").get("observedGeneration")
                      == generation and cluster.status(namespace, "short"), timeout=10,
                      what="the operator saw the deactivation")
    assert seen["phase"] == "Expired"


def test_a_changed_expiration_never_moves_expires_at_and_warns(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("fixed", namespace, expiration="30d"))
    first = cluster.wait_phase(namespace, "fixed", "Active", timeout=10)
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "fixed", "--type=merge",
            "-p", '{"spec": {"expiration": "360d"}}')
    warning = eventually(lambda: [e for e in cluster.events(namespace, "fixed", quiet=0.2)
                                  if e[1] == "ExpirationImmutable"], timeout=10)
    assert warning[0][0] == "Warning"
    assert f"expiresAt stays {first['expiresAt']}" in warning[0][2]
    assert cluster.status(namespace, "fixed")["expiresAt"] == first["expiresAt"]


def test_a_deleted_secret_is_reported_and_the_key_kept(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("gone", namespace))
    before = cluster.wait_phase(namespace, "gone", "Active", timeout=10)
    cluster.core.delete_namespaced_secret("gone", namespace)
    synced = eventually(lambda: next(
        (c for c in cluster.status(namespace, "gone")["conditions"]
         if c["type"] == "SecretSynced" and c["status"] == "False"), None), timeout=10)
    assert synced["reason"] == "SecretMissing"
    assert ("Warning", "SecretMissing") in [(t, r) for t, r, _ in
                                            cluster.events(namespace, "gone")]
    time.sleep(1)  # not a wait: a window in which a wrong re-issue would show
    assert cluster.secret(namespace, "gone") is None  # not silently re-issued
    after = cluster.status(namespace, "gone")
    assert (after["hash"], after["revision"]) == (before["hash"], before["revision"])


def test_an_altered_secret_is_reported_and_the_key_kept(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("edited", namespace))
    before = cluster.wait_phase(namespace, "edited", "Active", timeout=10)
    other = base64.b64encode(tokens.generate("kw").encode()).decode()
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "secret", "edited", "--type=merge",
            "-p", json.dumps({"data": {"api-key": other}}))
    synced = eventually(lambda: next(
        (c for c in cluster.status(namespace, "edited")["conditions"]
         if c["type"] == "SecretSynced" and c["status"] == "False"), None), timeout=10)
    assert synced["reason"] == "SecretModified"
    assert "written by someone other than Keywright" in synced["message"]
    assert ("Warning", "SecretModified") in [(t, r) for t, r, _ in
                                             cluster.events(namespace, "edited")]
    after = cluster.status(namespace, "edited")
    assert (after["hash"], after["revision"]) == (before["hash"], before["revision"])


def test_a_foreign_secret_is_never_overwritten(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    kubectl(cluster.kubeconfig, "-n", namespace, "create", "secret", "generic", "taken",
            "--from-literal=api-key=theirs")
    original = cluster.secret(namespace, "taken")
    assert original is not None
    cluster.apply(apikey("mine", namespace, secret={"name": "taken"}))
    failed = cluster.wait_phase(namespace, "mine", "Failed", timeout=10)
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SecretConflict")
    assert "Secret taken exists and is not owned by this ApiKey" in ready["message"]
    assert "hash" not in failed
    time.sleep(1)  # not a wait: a window in which a wrong overwrite would show
    now = cluster.secret(namespace, "taken")
    assert now is not None
    assert now.metadata.resource_version == original.metadata.resource_version
    assert now.data == original.data
    assert ("Warning", "SecretConflict") in [(t, r) for t, r, _ in
                                             cluster.events(namespace, "mine")]


def test_once_the_conflicting_secret_is_gone_the_key_is_issued_within_seconds(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    kubectl(cluster.kubeconfig, "-n", namespace, "create", "secret", "generic", "occupied",
            "--from-literal=api-key=theirs")
    cluster.apply(apikey("waiting", namespace, secret={"name": "occupied"}))
    cluster.wait_phase(namespace, "waiting", "Failed", timeout=10)
    time.sleep(3)  # the conflict has lasted a while: the operator looks less often now
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "secret", "occupied")
    gone = time.monotonic()
    active = cluster.wait_phase(namespace, "waiting", "Active", timeout=30)
    took = time.monotonic() - gone
    print(f"conflicting Secret deleted -> key issued: {took:.1f} s")
    assert took < 10  # was a minute: the conflict is looked at again by doubling waits
    assert active["secretName"] == "occupied"
    assert cluster.plaintext(namespace, "occupied") != "theirs"


def test_deleting_the_apikey_removes_its_secret_and_hash(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("temp", namespace))
    cluster.wait_phase(namespace, "temp", "Active", timeout=10)
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "apikey", "temp")
    eventually(lambda: cluster.secret(namespace, "temp") is None, timeout=30,
               what="garbage collection of the Secret")
    listed = kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikeys", "-o", "name").stdout
    assert "temp" not in listed


def test_the_operator_writes_status_only_and_keeps_no_framework_state(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("tidy", namespace))
    cluster.wait_phase(namespace, "tidy", "Active", timeout=10)
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "tidy", "--type=merge",
            "-p", '{"spec": {"active": false}}')
    cluster.wait_phase(namespace, "tidy", "Inactive", timeout=10)
    body = cluster.apikey(namespace, "tidy")
    assert body["metadata"]["generation"] == 2  # creation + the user's one edit
    annotations = body["metadata"].get("annotations") or {}
    assert [k for k in annotations if "kopf" in k] == []
    assert not body["metadata"].get("finalizers")
    assert "kopf" not in body["status"]  # Kopf's handlers that keep state are not used
    shown = json.loads(kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikey", "tidy",
                               "-o", "json", "--show-managed-fields").stdout)
    spec_writers = {m["manager"] for m in shown["metadata"]["managedFields"]
                    if "f:spec" in (m.get("fieldsV1") or {})}
    assert spec_writers
    assert all(w.startswith("kubectl") for w in spec_writers), spec_writers


def test_keys_that_expired_while_the_operator_was_down_are_marked_at_start(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    operator.ensure_running()
    cluster.apply(apikey("sleeper", namespace, expiration="4s"))
    active = cluster.wait_phase(namespace, "sleeper", "Active", timeout=10)
    operator.stop()
    due = parse(active["expiresAt"])
    while datetime.now(UTC) < due + timedelta(seconds=1):
        time.sleep(0.2)
    assert cluster.status(namespace, "sleeper")["phase"] == "Active"  # nobody marked it yet
    operator.start()
    cluster.wait_phase(namespace, "sleeper", "Expired", timeout=10)
    assert cluster.reasons(namespace, "sleeper") == ["Issued", "Expired"]
