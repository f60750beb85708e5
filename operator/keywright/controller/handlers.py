"""Kopf wiring: which events reach the reconciler. Thin on purpose.

Owns: Kopf settings (a server-side label selector so only Keywright's Secrets are
watched, no Kopf events below WARNING), the handlers (watch events only: no handler of
Kopf's that keeps state in the object), and
starting and stopping, with the operator, the pepper's own watch (`pepper.PepperWatch`)
and the catalog of roles and policies (primed before the first reconcile, then fed by
their watch events here); and the metrics board, fed by every ApiKey watch event.
Must not: decide, or call the Kubernetes API: the handlers only hand keys to the
reconciler's queue (non-blocking), so they are async and never stall the event loop, and
a burst of events costs a queue entry each, not a suspended handler each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from keywright import kube
from keywright.controller import metrics, pepper, reconcile
from keywright.core import hashing, names, triggers

SELECTOR = f"{names.MANAGED_BY}={names.MANAGED_BY_VALUE}"
PRIME_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between attempts to list, at start
log = logging.getLogger(__name__)


def _reconciler(memo: Any) -> reconcile.Reconciler:
    found: reconcile.Reconciler = memo.reconciler
    return found


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.watching.label_selectors["v1", "secrets"] = SELECTOR
    settings.posting.level = logging.WARNING
    settings.queueing.idle_timeout = 0.5  # per-object workers exit soon: memory, not CPU
    found = _reconciler(memo)
    _prime(found)
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


def _prime(found: reconcile.Reconciler) -> None:
    """Every role and policy known before any key is judged: a restart never finds a
    role "missing" for the moments before its watch event. Tried again while the API
    server is away; refused (no RBAC, no CRD), the operator stops, saying which."""
    for attempt, wait in enumerate((*PRIME_BACKOFF, None)):
        try:
            found.catalog.prime(found.api)
            return
        except Exception as exc:
            final = isinstance(exc, kube.KubeError) and exc.status in (401, 403, 404)
            if final or wait is None:
                raise kopf.PermanentError(f"cannot list ApiKeyRoles, ApiKeyPolicies or "
                                          f"ApiKeys at start: {exc}") from None
            log.warning("cannot list roles and policies yet (%s); attempt %d, again in "
                        "%.1fs", exc, attempt + 1, wait)
            time.sleep(wait)


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


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def apikey_event(type: str | None, namespace: str | None, name: str, body: kopf.Body,
                       memo: Any, **_: Any) -> None:
    """Every ApiKey event, the initial listing's included: the metrics board follows
    each, and those that ask for it (`triggers.wanted`) go to the reconciler. Kopf's
    own change-tracking handlers (resume, create, update) are not used: they keep a
    diff-base and progress in the object, one more write per key for what the
    reconciler, level-based, does not need."""
    if namespace is None:
        return
    board: metrics.Board | None = getattr(memo, "board", None)
    if type == "DELETED":
        _reconciler(memo).forget(namespace, name)
        if board is not None:
            board.remove(namespace, name)
        return
    if board is not None:
        board.put(namespace, name, body)
    if triggers.wanted(type, body):
        _reconciler(memo).submit(namespace, name, body=dict(body))


@kopf.on.event("v1", "secrets", labels={names.MANAGED_BY: names.MANAGED_BY_VALUE})
async def secret_event(type: str, namespace: str | None, labels: Mapping[str, str],
                       body: kopf.Body, memo: Any, **_: Any) -> None:
    owner = labels.get(names.APIKEY_LABEL)  # a key's Secret (the pepper has no owner)
    if namespace is not None and owner:
        _reconciler(memo).secret_changed(namespace, owner,
                                         None if type == "DELETED" else dict(body))


@kopf.on.event(names.GROUP, names.VERSION, names.ROLE_PLURAL)
@kopf.on.event(names.GROUP, names.VERSION, names.POLICY_PLURAL)
async def role_or_policy_event(type: str, resource: kopf.Resource, namespace: str | None,
                               name: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    """A role or policy came, changed or went: the keys it concerns are judged again,
    and its own status looked at."""
    found = _reconciler(memo)
    if namespace is None:
        return
    if type == "DELETED":
        found.resubmit(found.catalog.remove(resource.plural, namespace, name))
        return
    found.resubmit(found.catalog.put(resource.plural, dict(body)))
    found.summaries.mark([(resource.plural, (namespace, name))])
