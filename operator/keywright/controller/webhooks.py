"""Kopf wiring for the admission webhooks: the server, its TLS, and the two handlers.

Owns: serving `admission.check_apikey` (validating, failurePolicy Fail: only ApiKeys
depend on it) and `admission.injection` (mutating Pods on CREATE, failurePolicy Ignore,
and admitting the Pod unchanged when the ApiKey cannot be looked up: Pods are not held
hostage to the operator) over TLS, and letting Kopf keep
the `keywright.dev` Validating/MutatingWebhookConfigurations pointing at it with the
right `caBundle`. Reached by URL on a local control plane, by Service in a cluster.
Must not: decide (admission.py does) or block the event loop (handlers that read the
API are sync, so Kopf runs them in its thread pool).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from keywright import kube
from keywright.controller import webcerts
from keywright.core import admission, names
from keywright.kits import faults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookServerSettings:
    port: int = 9443
    host: str | None = None  # reach the server by URL at this host (a local control plane)
    service: str | None = None  # reach it through this Service in `namespace` (a cluster)
    namespace: str = names.DEFAULT_NAMESPACE
    cert_dir: Path | None = None  # ca.crt, tls.crt, tls.key; None: made at start


class Server(kopf.WebhookServer):
    """Kopf's server, plus: the request's namespace copied into the object (a Pod made
    by a controller may arrive without one), and a Service reference instead of a URL
    when the API server reaches the webhooks through a Service."""

    def __init__(self, settings: WebhookServerSettings) -> None:
        directory = settings.cert_dir
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="keywright-webhook-"))
            dns_names = ([settings.host] if settings.host else []) + (
                webcerts.names_for_service(settings.service, settings.namespace)
                if settings.service else ["localhost"])
            webcerts.issue(directory, dns_names)
        super().__init__(addr="0.0.0.0" if settings.service else settings.host,  # noqa: S104
                         port=settings.port, host=settings.host,
                         cafile=directory / "ca.crt", certfile=directory / "tls.crt",
                         pkeyfile=directory / "tls.key")
        self.settings = settings

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async def with_namespace(request: Any, **kwargs: Any) -> Any:
            inner = request.get("request") or {}
            for key in ("object", "oldObject"):
                found = inner.get(key)
                if isinstance(found, dict) and inner.get("namespace"):
                    found.setdefault("metadata", {}).setdefault("namespace", inner["namespace"])
            return await fn(request, **kwargs)

        async for config in super().__call__(with_namespace):
            if self.settings.service:
                yield {"caBundle": config.get("caBundle"), "service": {
                    "namespace": self.settings.namespace, "name": self.settings.service,
                    "port": 443, "path": ""}}
            else:
                yield config


def configure(settings: kopf.OperatorSettings, webhook: WebhookServerSettings) -> None:
    settings.admission.server = Server(webhook)
    settings.admission.managed = names.WEBHOOK_CONFIGURATION


# persistent: Kopf leaves them configured when the operator stops, so ApiKeys stay
# guarded (fail closed) while it restarts, instead of being admitted unchecked
@kopf.on.validate(names.GROUP, names.VERSION, names.PLURAL, id="validate-apikey",
                  operations=["CREATE", "UPDATE"], persistent=True)
def validate_apikey(**kwargs: Any) -> None:
    # operation, old and new reach admission handlers as keyword arguments only
    try:
        admission.check_apikey(kwargs.get("operation") or "", kwargs.get("new"),
                              kwargs.get("old"))
    except admission.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None


@kopf.on.mutate("v1", "pods", id="inject-pod", operations=["CREATE"], ignore_failures=True,
                persistent=True)
def inject_pod(body: kopf.Body, patch: kopf.Patch, warnings: list[str], memo: Any,
               **_: Any) -> None:
    namespace = body.metadata.namespace or ""
    api: kube.Kube = memo.reconciler.api

    def lookup(name: str) -> dict[str, Any] | None:
        faults.fail_point("apikey-lookup", f"{namespace}/{name}")
        return api.get_apikey(namespace, name)
    try:
        changed = admission.injection(body, namespace, lookup)
    except admission.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None
    except Exception as exc:  # the API server is unwell: fail open, as when unreachable
        log.warning("cannot inject into a Pod in %s (%s); admitted without its key",
                    namespace, type(exc).__name__)
        warnings.append(f"keywright: could not look up the ApiKey to inject "
                        f"({type(exc).__name__}); the Pod is admitted without its key")
        return
    for field, containers in (changed or {}).items():
        patch.spec[field] = containers
