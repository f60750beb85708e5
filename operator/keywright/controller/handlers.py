"""Kopf wiring: which events reach the reconciler. Thin on purpose.

Owns: Kopf settings (progress and diff-base kept in status, a server-side label selector
so only Keywright's Secrets are watched, no Kopf events below WARNING), the handlers, and
starting and stopping, with the operator, the pepper's own watch (`pepper.PepperWatch`).
Must not: decide, or call the Kubernetes API: the handlers only hand keys to the
reconciler's queue (non-blocking), so they are async and never stall the event loop, and
a burst of events costs a queue entry each, not a suspended handler each.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from keywright.controller import pepper, reconcile
from keywright.core import hashing, names

SELECTOR = f"{names.MANAGED_BY}={names.MANAGED_BY_VALUE}"


def _reconciler(memo: Any) -> reconcile.Reconciler:
    found: reconcile.Reconciler = memo.reconciler
    return found


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration")
    settings.watching.label_selectors["v1", "secrets"] = SELECTOR
    settings.posting.level = logging.WARNING
    settings.queueing.idle_timeout = 0.5  # per-object workers exit soon: memory, not CPU
    found = _reconciler(memo)
    webhook = getattr(memo, "webhook", None)
    if webhook is not None:
        from keywright.controller import webhooks  # registers the admission handlers too
        webhooks.configure(settings, webhook, found.api)
    found.start()

    def use(peppers: hashing.Peppers) -> None:
        found.peppers = peppers  # new hashes use its active version from now on
    # followed by name, not through the label-selected Secret watch below: a pepper made
    # by hand or restored from a backup may carry no label of ours
    memo.pepper_watch = pepper.PepperWatch(found.api, found.settings.namespace, use)
    memo.pepper_watch.start()


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    """Kopf logs in with exactly the credentials the operator's own client uses."""
    found = _reconciler(memo).api.credentials()
    return kopf.ConnectionInfo(
        server=found.server, ca_path=found.ca_path, token=found.token, scheme=found.scheme,
        certificate_path=found.cert_path, private_key_path=found.key_path,
        insecure=found.insecure,
    )


@kopf.on.cleanup()
def shutdown(memo: Any, **_: Any) -> None:
    watch = getattr(memo, "pepper_watch", None)
    if watch is not None:
        watch.stop()
    _reconciler(memo).stop()


@kopf.on.resume(names.GROUP, names.VERSION, names.PLURAL)
@kopf.on.create(names.GROUP, names.VERSION, names.PLURAL)
@kopf.on.update(names.GROUP, names.VERSION, names.PLURAL)
async def apikey_changed(namespace: str | None, name: str, body: kopf.Body, memo: Any,
                         **_: Any) -> None:
    assert namespace is not None  # ApiKey is namespaced
    _reconciler(memo).submit(namespace, name, body=dict(body))


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def apikey_event(type: str, namespace: str | None, name: str, memo: Any,
                       **_: Any) -> None:
    if type == "DELETED" and namespace is not None:
        _reconciler(memo).forget(namespace, name)


@kopf.on.event("v1", "secrets", labels={names.MANAGED_BY: names.MANAGED_BY_VALUE})
async def secret_event(type: str, namespace: str | None, labels: Mapping[str, str],
                       body: kopf.Body, memo: Any, **_: Any) -> None:
    owner = labels.get(names.APIKEY_LABEL)  # a key's Secret (the pepper has no owner)
    if namespace is not None and owner:
        _reconciler(memo).secret_changed(namespace, owner,
                                         None if type == "DELETED" else dict(body))
