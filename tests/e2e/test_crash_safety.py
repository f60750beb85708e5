"""SIGKILL the operator while it issues keys; after a restart every key is consistent.

Consistent: one Secret per key, owned by its ApiKey, whose plaintext hashes to
status.hash; a plaintext that reached a Secret before the crash is the one kept (never a
second plaintext for revision 1); never a hash in status without its Secret.
"""

from __future__ import annotations

import random
import time

import pytest

from keywright.core import hashing
from tests.support.k8s import Cluster, Operator, Plaintext
from tests.support.manifests import apikey
from tests.support.waiting import eventually


def assert_consistent(cluster: Cluster, namespace: str, name: str) -> Plaintext:
    status = cluster.wait_phase(namespace, name, "Active", timeout=30)
    secret = cluster.secret(namespace, name)
    assert secret is not None, f"{name}: hash in status without its Secret"
    key = cluster.plaintext(namespace, name)
    peppers = hashing.Peppers.from_data(cluster.pepper())
    assert hashing.matches(key, status["hash"], peppers), f"{name}: Secret does not match hash"
    assert secret.metadata.annotations["keywright.dev/hash"] == status["hash"]
    assert status["revision"] == 1
    assert status["lastCharacters"] == key[-4:]
    return key


def crash_while_issuing(operator: Operator, cluster: Cluster, namespace: str,
                        point: str) -> None:
    """Restart the operator armed to SIGKILL itself at `point` for this one key, apply
    the key, and see it die there."""
    operator.stop()
    operator.start(crash_at=f"{point}@{namespace}/crashy")
    cluster.apply(apikey("crashy", namespace))
    assert operator.wait_exit() == -9


def test_a_crash_before_the_secret_write_leaves_nothing_and_the_restart_issues_once(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    crash_while_issuing(operator, cluster, namespace, "before-secret-write")
    assert cluster.secret(namespace, "crashy") is None
    assert cluster.status(namespace, "crashy").get("hash") is None  # no hash without a key

    operator.start()
    assert_consistent(cluster, namespace, "crashy")
    assert [r for r in cluster.reasons(namespace, "crashy") if r == "Issued"] == ["Issued"]


@pytest.mark.parametrize(("point", "issued_events"), [
    ("after-secret-write", 1),
    # A crash after the status patch loses that step's event; it never issues twice.
    ("after-status-patch", 0),
], ids=["after the secret write", "after the status patch"])
def test_a_crash_after_the_secret_write_keeps_that_plaintext_through_the_restart(
    point: str, issued_events: int, operator: Operator, cluster: Cluster, namespace: str
) -> None:
    crash_while_issuing(operator, cluster, namespace, point)
    written = cluster.plaintext(namespace, "crashy")  # the Secret exists: it was written

    operator.start()
    key = assert_consistent(cluster, namespace, "crashy")
    assert key == written, "a second plaintext replaced the one written before the crash"
    issued = [r for r in cluster.reasons(namespace, "crashy") if r == "Issued"]
    assert len(issued) == issued_events


def test_repeated_sigkills_while_issuing_many_keys_leave_every_key_consistent(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    rng = random.Random(20261123)
    names = [f"storm-{i}" for i in range(100)]
    written: dict[str, Plaintext] = {}  # every plaintext that reached a Secret, by key
    partial = []  # how many keys had Secrets after each kill that landed mid-batch
    operator.stop()
    for name in names:
        cluster.apply(apikey(name, namespace))
    def issued() -> int:
        return len(cluster.core.list_namespaced_secret(
            namespace, label_selector="app.kubernetes.io/managed-by=keywright").items)

    for _ in range(6):
        if len(written) == len(names):
            break
        operator.start()
        # the kill lands mid-batch: once this run has written a Secret, after a random
        # moment more (a fixed sleep alone missed the batch on a loaded machine)
        before = issued()

        def progressed(before: int = before) -> bool:
            return issued() > before
        eventually(progressed, timeout=30, interval=0.02, what="this run's first Secret")
        time.sleep(rng.uniform(0.0, 0.1))
        operator.kill()
        found = {name: cluster.plaintext(namespace, name) for name in names
                 if cluster.secret(namespace, name) is not None}
        # what reached a Secret survives every later crash, with the same plaintext
        assert {name: found.get(name) for name in written} == written
        written.update(found)
        if 0 < len(written) < len(names):
            partial.append(len(written))
    assert partial, "no kill landed while keys were being issued"
    operator.start()
    keys = {name: assert_consistent(cluster, namespace, name) for name in names}
    assert {name: keys[name] for name in written} == written
