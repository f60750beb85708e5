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


@pytest.mark.parametrize("point", ["before-secret-write", "after-secret-write",
                                   "after-status-patch"])
def test_a_crash_at_each_step_of_issuing_heals_on_restart(
    point: str, operator: Operator, cluster: Cluster, namespace: str
) -> None:
    operator.stop()
    operator.start(crash_at=point)
    cluster.apply(apikey("crashy", namespace))
    assert operator.wait_exit() == -9
    before = cluster.secret(namespace, "crashy")
    written = cluster.plaintext(namespace, "crashy") if before is not None else None
    if point == "before-secret-write":
        assert before is None
    else:
        assert before is not None

    operator.start()
    key = assert_consistent(cluster, namespace, "crashy")
    if written is not None:
        assert key == written, "a second plaintext replaced the one written before the crash"
    issued = [r for r in cluster.reasons(namespace, "crashy") if r == "Issued"]
    # A crash after the status patch loses that step's event; it never issues twice.
    assert len(issued) == (0 if point == "after-status-patch" else 1)


def test_repeated_sigkills_while_issuing_many_keys_leave_every_key_consistent(
    operator: Operator, cluster: Cluster, namespace: str
) -> None:
    rng = random.Random(20261123)
    names = [f"storm-{i}" for i in range(100)]
    written: dict[str, str] = {}
    partial = []  # how many keys had Secrets after each kill that landed mid-batch
    operator.stop()
    for name in names:
        cluster.apply(apikey(name, namespace))
    for _ in range(6):
        operator.start()
        time.sleep(rng.uniform(0.0, 0.3))
        operator.kill()
        for name in names:  # what reached a Secret must survive every later crash
            if cluster.secret(namespace, name) is not None:
                key = cluster.plaintext(namespace, name)
                assert written.setdefault(name, key) == key, f"{name}: plaintext replaced"
        if 0 < len(written) < len(names):
            partial.append(len(written))
    assert partial, "no kill landed while keys were being issued"
    operator.start()
    for name in names:
        key = assert_consistent(cluster, namespace, name)
        if name in written:
            assert key == written[name]
    eventually(lambda: all(cluster.status(namespace, n).get("phase") == "Active"
                           for n in names), timeout=30)
