"""What a reconcile reads, where a real API server cannot show the order of events on
demand (a fake one stands in):
- the watch event of the operator's own Secret write can reach it before the write's
  answer does; that echo must not queue a second reconcile of the key (at 1,000 keys
  issued at once, one in eight took one: a GET of the key and of its Secret each);
- at a restart, a key whose Secret the follower listed, and whose status says what that
  Secret says, is decided without reading the Secret again; any other is read.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from keywright.controller import reconcile
from keywright.core import names
from tests.support.keys import PEPPERS
from tests.support.manifests import apikey


class EchoingApi:
    """Creates a Secret by handing its watch event on before answering."""

    def __init__(self) -> None:
        self.reconciler: reconcile.Reconciler | None = None
        self.reads: list[str] = []
        self.secrets: dict[str, dict[str, Any]] = {}
        self.patched = 0
        self.status: dict[str, Any] = {}

    def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created = copy.deepcopy(body)
        created["metadata"].update(namespace=namespace, resourceVersion="7", managedFields=[
            {"manager": names.OPERATOR_FIELD_MANAGER, "operation": "Update",
             "fieldsV1": {"f:data": {f"f:{k}": {} for k in created["data"]}}}])
        assert self.reconciler is not None
        self.created: dict[str, Any] = created
        owner = created["metadata"]["labels"][names.APIKEY_LABEL]
        self.reconciler.secret_changed(namespace, owner, created)
        return created

    def patch_apikey_status(self, namespace: str, name: str, patch: dict[str, Any],
                            **kwargs: Any) -> None:
        self.patched += 1
        self.status.update(patch)

    def get_secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        return self.secrets.get(name)


def reconciler() -> tuple[reconcile.Reconciler, EchoingApi]:
    api = EchoingApi()
    found = reconcile.Reconciler(api, reconcile.ReconcilerSettings(),  # type: ignore[arg-type]
                                 PEPPERS)
    api.reconciler = found
    return found, api


def new_key() -> dict[str, Any]:
    manifest = apikey("billing", "pay")
    manifest["metadata"].update(uid="u-1", resourceVersion="3", generation=1,
                                creationTimestamp="2026-12-02T08:00:00Z")
    return manifest


def test_the_echo_of_its_own_secret_write_queues_nothing() -> None:
    found, _ = reconciler()
    found.reconcile("pay", "billing", body=new_key())
    assert len(found.queue) == 0



def issued() -> tuple[dict[str, Any], dict[str, Any]]:
    """A key as a first process left it: its status, and its Secret's metadata."""
    found, api = reconciler()
    key = new_key()
    found.reconcile("pay", "billing", body=key)
    key["status"] = api.status
    return key, {"metadata": api.created["metadata"]}


@pytest.mark.parametrize(("change", "reads"), [
    pytest.param(None, [], id="a listed Secret that agrees with the status is not read"),
    pytest.param("revision", ["billing"],
                 id="one whose revision differs from the status is read"),
    pytest.param("hash", ["billing"], id="one whose hash differs from the status is read"),
    pytest.param("name", ["billing"], id="one of another name is read"),
])
def test_a_restart_reads_only_the_secrets_its_list_cannot_vouch_for(
        change: str | None, reads: list[str]) -> None:
    key, secret = issued()
    status = dict(key.get("status") or {})
    found, api = reconciler()
    api.secrets["billing"] = secret
    listed = copy.deepcopy(secret)
    notes = listed["metadata"]["annotations"]
    if change == "revision":
        notes[names.REVISION_ANNOTATION] = "7"
    elif change == "hash":
        notes[names.HASH_ANNOTATION] = "hmac-sha256:v1:" + "A" * 43
    elif change == "name":
        listed["metadata"]["name"] = "another"
    found.secret_listed("pay", "billing", listed)
    found.reconcile("pay", "billing", body={**key, "status": status})
    assert api.reads == reads
    assert api.patched == 0  # nothing to change: the key is as it was left
