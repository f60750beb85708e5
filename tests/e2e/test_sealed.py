"""Sealed delivery on the real control plane: a key with `secret.create: false` is
issued sealed to an age recipient, Debian's stock `age -d` opens it, the verifier takes
what it opens, and the plaintext is nowhere in the cluster: no Secret, not in etcd's
data directory. Rotations seal each new revision; a crash between sealing and the
status write leaves no hash without its ciphertext."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest

from keywright.core import hashing
from keywright.dev import controlplane
from tests.support.k8s import Cluster, Operator, Plaintext, Verifier, answer
from tests.support.manifests import apikey
from tests.support.waiting import eventually


class Identity:
    """An age identity made by Debian's age-keygen, in a file only this test reads."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "identity.txt"
        subprocess.run(["age-keygen", "-o", str(self.path)], check=True,
                       capture_output=True)
        self.recipient = subprocess.run(["age-keygen", "-y", str(self.path)], check=True,
                                        capture_output=True, text=True).stdout.strip()

    def open(self, ciphertext: str) -> Plaintext:
        """What `age -d -i IDENTITY` makes of it: the stock tool, not the library."""
        opened = subprocess.run(["age", "-d", "-i", str(self.path)], input=ciphertext,
                                capture_output=True, text=True, check=True)
        return Plaintext(opened.stdout)


@pytest.fixture
def person(tmp_path: Path) -> Identity:
    return Identity(tmp_path)


def sealed_key(cluster: Cluster, namespace: str, name: str, person: Identity,
               **spec: Any) -> dict[str, Any]:
    cluster.apply(apikey(name, namespace, secret={"create": False},
                         delivery={"age": {"recipients": [person.recipient]}}, **spec))
    return cluster.wait_phase(namespace, name, "Active")


def verifies(verifier: Verifier, key: str) -> bool:
    return verifier.get("/verify", {"X-API-Key": key})[2] == answer("OK")


def test_a_key_with_no_secret_is_sealed_and_debians_age_opens_what_the_verifier_takes(
    ready: Verifier, cluster: Cluster, namespace: str, person: Identity
) -> None:
    status = sealed_key(cluster, namespace, "partner", person,
                        rotation={"gracePeriod": "1h"})
    assert "secretName" not in status
    assert status["sealed"]["revision"] == 1
    assert status["sealed"]["recipients"] == [person.recipient]
    assert status["sealed"]["ciphertext"].startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    key = person.open(status["sealed"]["ciphertext"])
    assert key.endswith(status["lastCharacters"])
    eventually(lambda: verifies(ready, key), timeout=10, what="the verifier taking the key")
    held = cluster.core.list_namespaced_secret(namespace).items
    assert [s.type for s in held] == ["kubernetes.io/service-account-token"]  # none of ours
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Expired"]

    cluster.apply({**apikey("partner", namespace, secret={"create": False},
                            delivery={"age": {"recipients": [person.recipient]}},
                            rotation={"gracePeriod": "1h"}),
                   "metadata": {"name": "partner", "namespace": namespace,
                                "annotations": {"keywright.dev/rotate": "first"}}})
    rotated = eventually(lambda: (s := cluster.status(namespace, "partner")).get(
        "revision") == 2 and s, timeout=15, what="revision 2")
    assert rotated["sealed"]["revision"] == 2
    second = person.open(rotated["sealed"]["ciphertext"])
    assert second != key
    eventually(lambda: verifies(ready, second), timeout=10, what="the new key verifying")
    assert verifies(ready, key)  # the previous one, inside its grace period


def test_the_plaintext_of_a_sealed_key_is_nowhere_in_etcd_or_the_logs(
    operator: Operator, ready: Verifier, cluster: Cluster, namespace: str, person: Identity,
    control_plane: controlplane.ControlPlane
) -> None:
    status = sealed_key(cluster, namespace, "nowhere", person)
    sealed = person.open(status["sealed"]["ciphertext"])
    cluster.apply(apikey("in-a-secret", namespace))
    cluster.wait_phase(namespace, "in-a-secret", "Active")
    stored = cluster.plaintext(namespace, "in-a-secret")
    eventually(lambda: verifies(ready, sealed), timeout=10, what="the sealed key working")

    def in_etcd(key: str) -> bool:
        """The key, as is or base64-encoded at any of the three alignments (as a Secret's
        data is stored), in any file of etcd's data directory."""
        forms = [key.encode()]
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + key.encode())[4 if shift else 0:]
            forms.append(encoded[:-4])  # the stable middle, whatever follows
        return any(form in path.read_bytes() for path in (control_plane.workdir / "etcd")
                   .rglob("*") if path.is_file() for form in forms)
    assert in_etcd(stored)  # the scan finds a key where one is stored
    assert not in_etcd(sealed)
    for logs in (operator.all_logs(), ready.all_logs()):  # nor in any log
        assert sealed not in logs


def test_a_crash_between_sealing_and_the_status_write_leaves_no_hash_without_its_key(
    operator: Operator, ready: Verifier, cluster: Cluster, namespace: str, person: Identity
) -> None:
    operator.stop()
    operator.start(crash_at=f"after-seal@{namespace}/crashy")
    cluster.apply(apikey("crashy", namespace, secret={"create": False},
                         delivery={"age": {"recipients": [person.recipient]}}))
    assert operator.wait_exit() == -9
    assert cluster.status(namespace, "crashy").get("hash") is None  # nothing landed

    operator.start()
    status = cluster.wait_phase(namespace, "crashy", "Active")
    key = person.open(status["sealed"]["ciphertext"])
    peppers = hashing.Peppers.from_data(cluster.pepper())
    assert hashing.matches(key, status["hash"], peppers)  # the hash is the sealed key's
    assert status["revision"] == 1
    eventually(lambda: verifies(ready, key), timeout=10, what="the key verifying")


def test_a_key_in_a_secret_can_be_sealed_too_and_both_hold_the_same_key(
    ready: Verifier, cluster: Cluster, namespace: str, person: Identity
) -> None:
    cluster.apply(apikey("both", namespace,
                         delivery={"age": {"recipients": [person.recipient]}}))
    status = cluster.wait_phase(namespace, "both", "Active")
    assert person.open(status["sealed"]["ciphertext"]) == cluster.plaintext(namespace, "both")
