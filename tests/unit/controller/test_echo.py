"""The watch event of the operator's own Secret write can reach it before the write's
answer does; that echo must not queue a second reconcile of the key (at 1,000 keys
issued at once, one in eight took one: a GET of the key and of its Secret each). The
order cannot be had on demand from a real API server, so a fake one delivers the echo
from inside the create call."""

from __future__ import annotations

import copy
from typing import Any

from keywright.controller import reconcile
from keywright.core import names
from tests.support.keys import PEPPERS
from tests.support.manifests import apikey


class EchoingApi:
    """Creates a Secret by handing its watch event on before answering."""

    def __init__(self) -> None:
        self.reconciler: reconcile.Reconciler | None = None

    def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created = copy.deepcopy(body)
        created["metadata"].update(namespace=namespace, resourceVersion="7")
        assert self.reconciler is not None
        owner = created["metadata"]["labels"][names.APIKEY_LABEL]
        self.reconciler.secret_changed(namespace, owner, created)
        return created

    def patch_apikey_status(self, *args: Any, **kwargs: Any) -> None:
        pass


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

