"""Kopf wiring: the operator's start and stop, and the events of roles and policies.
Thin on purpose.

Owns: Kopf settings (no Kopf events below WARNING), the handlers (watch events of
ApiKeyRoles and ApiKeyPolicies only: no handler of Kopf's that keeps state in the
object), and starting and stopping, with the operator, the follower of ApiKeys and their
Secrets (`follow.Follower`, which feeds the reconciler and the metrics board), the
pepper's own watch (`pepper.PepperWatch`) and the catalog of roles and policies (primed
before the first reconcile, then fed by their watch events here).
Must not: decide, or call the Kubernetes API: the handlers only hand keys to the
reconciler's queue (non-blocking), so they are async and never stall the event loop, and
a burst of events costs a queue entry each, not a suspended handler each.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from keywright import kube
from keywright.controller import follow, pepper, reconcile
from keywright.core import hashing, names

PRIME_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between attempts to list, at start
log = logging.getLogger(__name__)


def _reconciler(memo: Any) -> reconcile.Reconciler:
    found: reconcile.Reconciler = memo.reconciler
    return found


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
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
    # the keys and their Secrets: followed outside Kopf's per-event machinery (follow.py)
    memo.follower = follow.Follower(found.api, found, getattr(memo, "board", None),
                                    getattr(memo, "watch_namespaces", ()))
    memo.follower.start()


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
    for watch in (getattr(memo, "pepper_watch", None), getattr(memo, "follower", None)):
        if watch is not None:
            watch.stop()
    _reconciler(memo).stop()


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
