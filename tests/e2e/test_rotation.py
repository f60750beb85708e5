"""Rotation on the real control plane: by annotation, on a schedule, with a grace period,
refused when it must be, rolling Deployments, and surviving a SIGKILL midway.

Tests wait on what they can observe. Where a test shows that something does NOT happen
(no rotation, nothing rolled), it waits for the operator to have handled the change
(observedGeneration) and then keeps a short explicit window, `QUIET`, for a wrong
follow-up write to show; locally each reconcile takes milliseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from keywright.core import hashing, times
from tests.support.k8s import Cluster, Operator, kubectl
from tests.support.manifests import apikey
from tests.support.waiting import eventually

QUIET = 1.0  # seconds in which an unwanted write would have shown


def quiet_window(seconds: float = QUIET) -> None:
    """Give an unwanted action time to show; never a wait for a wanted one."""
    time.sleep(seconds)


def generation_handled(cluster: Cluster, namespace: str, name: str) -> None:
    """Wait until the operator has handled the ApiKey's current spec."""
    def handled() -> bool:
        body = cluster.apikey(namespace, name)
        return bool((body.get("status") or {}).get("observedGeneration")
                    == body["metadata"]["generation"])
    eventually(handled, timeout=10, what=f"{name}: current generation handled")


def rotate(cluster: Cluster, namespace: str, name: str, value: str) -> None:
    kubectl(cluster.kubeconfig, "-n", namespace, "annotate", "--overwrite", "apikey", name,
            f"keywright.dev/rotate={value}")


def wait_revision(cluster: Cluster, namespace: str, name: str, revision: int,
                  timeout: float = 15) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = cluster.status(namespace, name)
        return status if status.get("revision") == revision else None
    return eventually(reached, timeout=timeout, what=f"{name} revision {revision}")


def key_matches(cluster: Cluster, key: str, hashed: str) -> bool:
    return hashing.matches(key, hashed, hashing.Peppers.from_data(cluster.pepper()))


def test_rotate_by_annotation_without_grace_replaces_the_key_at_once(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("r0", namespace))
    first = cluster.wait_phase(namespace, "r0", "Active", timeout=10)
    old_key = cluster.plaintext(namespace, "r0")
    rotate(cluster, namespace, "r0", "2026-11-24T00:00:00Z")
    second = wait_revision(cluster, namespace, "r0", 2)
    new_key = cluster.plaintext(namespace, "r0")

    differs = old_key != new_key
    assert differs
    assert key_matches(cluster, new_key, second["hash"])
    assert not key_matches(cluster, old_key, second["hash"])
    assert second["hash"] != first["hash"]
    assert second.get("previous", []) == []
    assert second["lastRotateRequest"] == "2026-11-24T00:00:00Z"
    assert second["lastCharacters"] == new_key[-4:]
    assert second["expiresAt"] == first["expiresAt"]
    assert abs(times.parse(second["rotatedAt"]) - datetime.now(UTC)) < timedelta(seconds=10)
    secret = cluster.secret(namespace, "r0")
    assert secret.metadata.annotations["keywright.dev/revision"] == "2"
    assert secret.metadata.annotations["keywright.dev/hash"] == second["hash"]
    reasons = cluster.reasons(namespace, "r0")
    assert reasons == ["Issued", "Rotated"]
    synced = next(c for c in second["conditions"] if c["type"] == "SecretSynced")
    assert synced["status"] == "True"

    # an edit that leaves the annotation at the value already acted on is no new request:
    # the operator handles the edit, and neither the Secret (written first in a rotation)
    # nor status moves past revision 2
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "r0", "--type=merge",
            "-p", '{"spec": {"description": "touched"}}')
    generation_handled(cluster, namespace, "r0")
    quiet_window()
    assert cluster.status(namespace, "r0")["revision"] == 2
    assert cluster.plaintext(namespace, "r0") == new_key
    assert cluster.secret(namespace, "r0").metadata.annotations["keywright.dev/revision"] == "2"


def test_a_grace_period_keeps_each_previous_key_until_its_own_retirement(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("graceful", namespace, rotation={"gracePeriod": "6s"}))
    first = cluster.wait_phase(namespace, "graceful", "Active", timeout=10)
    rotate(cluster, namespace, "graceful", "one")
    second = wait_revision(cluster, namespace, "graceful", 2)
    # timestamps are whole seconds: rotate again in a later second, so each previous key
    # gets a retiresAt of its own
    next_second = times.parse(second["rotatedAt"]) + timedelta(seconds=1)
    eventually(lambda: datetime.now(UTC) >= next_second, timeout=5, interval=0.05,
               what="the clock past the second of the first rotation")
    rotate(cluster, namespace, "graceful", "two")
    third = wait_revision(cluster, namespace, "graceful", 3)

    previous = third["previous"]
    assert [(p["revision"], p["hash"]) for p in previous] == \
        [(1, first["hash"]), (2, second["hash"])]
    for entry, rotated in ((previous[0], second), (previous[1], third)):
        assert times.parse(entry["retiresAt"]) == \
            times.parse(rotated["rotatedAt"]) + timedelta(seconds=6)

    for entry, left in ((previous[0], [2]), (previous[1], [])):
        due = times.parse(entry["retiresAt"])
        def retired(left: list[int] = left) -> bool:
            return [p["revision"] for p in
                    cluster.status(namespace, "graceful").get("previous", [])] == left
        eventually(retired, timeout=15, interval=0.05, what=f"retirement of {entry}")
        late = datetime.now(UTC) - due
        assert late < timedelta(seconds=2), f"retired {late} after retiresAt"
    assert cluster.reasons(namespace, "graceful") == \
        ["Issued", "Rotated", "Rotated", "Retired", "Retired"]


def test_scheduled_rotation_follows_every(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("periodic", namespace, rotation={"every": "3s"}))
    first = cluster.wait_phase(namespace, "periodic", "Active", timeout=10)
    assert times.parse(first["nextRotationAt"]) == \
        times.parse(first["createdAt"]) + timedelta(seconds=3)
    third = wait_revision(cluster, namespace, "periodic", 3, timeout=15)
    second_at = times.parse(third["rotatedAt"])
    assert times.parse(third["nextRotationAt"]) == second_at + timedelta(seconds=3)
    assert key_matches(cluster, cluster.plaintext(namespace, "periodic"), third["hash"])
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "periodic",
            "--type=merge", "-p", '{"spec": {"rotation": {"every": null}}}')

    def unscheduled() -> dict[str, Any] | None:
        status = cluster.status(namespace, "periodic")
        return status if "nextRotationAt" not in status else None
    settled = eventually(unscheduled, timeout=10, what="the schedule dropped")
    # the window: until the old schedule would have rotated again (rotatedAt + every),
    # plus QUIET
    due = times.parse(settled["rotatedAt"]) + timedelta(seconds=3)
    quiet_window(max(0.0, (due - datetime.now(UTC)).total_seconds()) + QUIET)
    assert cluster.status(namespace, "periodic")["revision"] == settled["revision"]


def test_a_schedule_added_to_an_older_key_counts_from_then_and_does_not_rotate_it_at_once(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("older", namespace))
    first = cluster.wait_phase(namespace, "older", "Active", timeout=10)
    created = times.parse(first["createdAt"])
    # the key grows older than the schedule about to be added (the reported case: a key
    # a minute old given `every: 20s` was rotated at once, its old key cut off)
    time.sleep(max(0.0, (created + timedelta(seconds=5) - datetime.now(UTC))
                   .total_seconds()))  # a wait on the clock itself
    added = datetime.now(UTC).replace(microsecond=0)
    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "older", "--type=merge",
            "-p", '{"spec": {"rotation": {"every": "4s"}}}')
    generation_handled(cluster, namespace, "older")
    status = cluster.status(namespace, "older")
    assert status["revision"] == 1  # not rotated at once
    since = times.parse(status["scheduleSince"])
    assert added - timedelta(seconds=1) <= since <= datetime.now(UTC)
    assert times.parse(status["nextRotationAt"]) == since + timedelta(seconds=4)
    rotated = wait_revision(cluster, namespace, "older", 2, timeout=15)
    assert times.parse(rotated["rotatedAt"]) >= since + timedelta(seconds=4)


def test_a_rotation_request_on_an_inactive_key_is_refused_not_queued(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("asleep", namespace, active=False))
    before = cluster.wait_phase(namespace, "asleep", "Inactive", timeout=10)
    rotate(cluster, namespace, "asleep", "please")
    refused = eventually(lambda: [e for e in cluster.events(namespace, "asleep", quiet=0.2)
                                  if e[1] == "RotationRefused"], timeout=10)
    assert refused[0][0] == "Warning"
    assert "keywright.dev/rotate=please refused: the key is Inactive" in refused[0][2]
    status = cluster.status(namespace, "asleep")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "rotation request 'please' was refused" in ready["message"]
    assert (status["revision"], status["hash"], status["lastRotateRequest"]) == \
        (1, before["hash"], "please")

    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "asleep", "--type=merge",
            "-p", '{"spec": {"active": true}}')
    cluster.wait_phase(namespace, "asleep", "Active", timeout=10)
    generation_handled(cluster, namespace, "asleep")
    quiet_window()
    assert cluster.status(namespace, "asleep")["revision"] == 1  # not silently queued
    assert cluster.secret(namespace, "asleep").metadata.annotations[
        "keywright.dev/revision"] == "1"


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "app", "image": "registry.invalid/app:1"}]}}}}


def test_restart_targets_roll_once_per_rotation_and_never_on_unrelated_edits(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    apps = client.AppsV1Api(cluster.api)
    cluster.apply({**deployment("billing"), "metadata": {"name": "billing",
                                                       "namespace": namespace}})

    def replica_sets() -> list[str]:
        return sorted(str(rs.metadata.name) for rs in
                      apps.list_namespaced_replica_set(namespace, label_selector="app=billing")
                      .items)
    first_sets = eventually(replica_sets, timeout=30, what="the first ReplicaSet")
    assert len(first_sets) == 1
    cluster.apply(apikey("rolled", namespace, rotation={"restartTargets": [
        {"kind": "Deployment", "name": "billing"},
        {"kind": "StatefulSet", "name": "not-there"}]}))
    cluster.wait_phase(namespace, "rolled", "Active", timeout=10)
    quiet_window()
    # issuing is not a rotation: nothing rolls (the operator's patch would show at once
    # as a new generation of the Deployment)
    assert apps.read_namespaced_deployment("billing", namespace).metadata.generation == 1
    assert replica_sets() == first_sets

    rotate(cluster, namespace, "rolled", "go")
    status = wait_revision(cluster, namespace, "rolled", 2)
    eventually(lambda: len(replica_sets()) == 2, timeout=30, what="a new ReplicaSet")
    template = apps.read_namespaced_deployment("billing", namespace).spec.template
    assert template.metadata.annotations["keywright.dev/revision"] == "2"
    eventually(lambda: cluster.status(namespace, "rolled").get("restartedRevision") == 2,
               timeout=10)
    assert status["phase"] == "Active"
    events = cluster.events(namespace, "rolled")
    missing = [e for e in events if e[1] == "RestartTargetMissing"]
    assert len(missing) == 1
    assert "StatefulSet not-there" in missing[0][2]

    kubectl(cluster.kubeconfig, "-n", namespace, "patch", "apikey", "rolled", "--type=merge",
            "-p", '{"spec": {"description": "an unrelated edit"}}')
    generation_handled(cluster, namespace, "rolled")
    quiet_window()
    rolled_once = apps.read_namespaced_deployment("billing", namespace)
    assert rolled_once.metadata.generation == 2  # created, then rolled once
    assert rolled_once.spec.template.metadata.annotations["keywright.dev/revision"] == "2"
    assert len(replica_sets()) == 2


def test_sigkill_during_a_rotation_keeps_the_secret_and_the_grace_key(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    operator = running_operator
    apps = client.AppsV1Api(cluster.api)
    cluster.apply({**deployment("worker"), "metadata": {"name": "worker",
                                                      "namespace": namespace}})
    cluster.apply(apikey("midway", namespace, rotation={
        "gracePeriod": "1h", "restartTargets": [{"kind": "Deployment", "name": "worker"}]}))
    first = cluster.wait_phase(namespace, "midway", "Active", timeout=10)

    for point, revision in (("after-secret-write", 2), ("after-status-patch", 3)):
        operator.stop()
        operator.start(crash_at=f"{point}@{namespace}/midway")
        rotate(cluster, namespace, "midway", point)
        assert operator.wait_exit() == -9
        written = cluster.plaintext(namespace, "midway")
        operator.start()
        status = wait_revision(cluster, namespace, "midway", revision, timeout=30)
        assert cluster.plaintext(namespace, "midway") == written  # no second plaintext
        assert key_matches(cluster, written, status["hash"])
        assert [p["revision"] for p in status["previous"]] == list(range(1, revision))
        assert status["previous"][0]["hash"] == first["hash"]  # the grace key survived
        def rolled(r: int = revision) -> bool:
            template = apps.read_namespaced_deployment("worker", namespace).spec.template
            notes = template.metadata.annotations or {}  # none until the first roll
            return bool(notes.get("keywright.dev/revision") == str(r))

        def recorded(r: int = revision) -> bool:
            return bool(cluster.status(namespace, "midway").get("restartedRevision") == r)
        eventually(rolled, timeout=30, what=f"worker rolled to revision {revision}")
        eventually(recorded, timeout=30, what=f"restartedRevision {revision}")
