"""Kopf wiring for the admission webhooks: the server, its TLS, the two handlers, and the
two `keywright.dev` webhook configurations that send the API server to them.

Owns: serving `admission.check_apikey` (validating) and `admission.injection` (mutating
Pods on CREATE) over TLS, and writing the Validating/MutatingWebhookConfigurations
itself, whole, each time the server (re)starts listening: Kopf's own managed
configurations cannot carry a timeout (it writes 30 s, the maximum), so Kopf is told
not to manage them and never touches them. They are never removed: they stay in place
while the operator restarts. Reached by URL on a local control plane, by Service in a
cluster. The contract (docs/reference/api.md, Admission webhooks):

- ApiKeys: failurePolicy Fail, timeoutSeconds 5. Only ApiKeys depend on it, and an
  ApiKey that skipped the checks would be worse than one applied again later (a GitOps
  tool retries). The check is pure and takes microseconds, so 5 s only bounds how long
  a refusal takes while the operator hangs.
- Pods: only Pods labelled `keywright.dev/inject` (any value: objectSelector Exists) are
  sent at all, so no other Pod in the cluster ever waits on Keywright; failurePolicy
  Ignore, timeoutSeconds 5. Ignore, because Fail would make every opted-in workload's
  scale-up, eviction and node-loss replacement wait on one operator replica (down for
  seconds on each upgrade; refused Pod creations are retried with growing back-off);
  such a Pod is admitted without its key instead. 5 s: the work is one read of an
  ApiKey (milliseconds; the API server's own target for such a read is 1 s at p99),
  given `LOOKUP_DEADLINE` (3 s), after which the Pod is admitted with an admission
  warning and a log line rather than left for the API server to time out silently;
  the remaining 2 s cover TLS, dispatch and the answer. So an opted-in Pod waits at
  most 5 s on a hung operator, and none when it is gone (connection refused).

Must not: decide (admission.py does) or block the event loop (API reads run in a
thread).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from keywright import kube
from keywright.controller import webcerts
from keywright.core import admission, compliance, names
from keywright.kits import faults

log = logging.getLogger(__name__)

VALIDATE_APIKEY = "validate-apikey"  # handler ids: the path each webhook calls
VALIDATE_ROLE = "validate-apikeyrole"
VALIDATE_POLICY = "validate-apikeypolicy"
INJECT_POD = "inject-pod"
APIKEY_TIMEOUT = 5  # seconds, timeoutSeconds of the ApiKey webhook (see the docstring)
POD_TIMEOUT = 5  # seconds, timeoutSeconds of the Pod webhook
LOOKUP_DEADLINE = 3.0  # seconds the Pod webhook waits for its ApiKey read; < POD_TIMEOUT
PUBLISH_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between attempts to write them
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
VALIDATING = f"{ADMISSION}/validatingwebhookconfigurations"
MUTATING = f"{ADMISSION}/mutatingwebhookconfigurations"


@dataclass(frozen=True)
class WebhookServerSettings:
    port: int = 9443
    host: str | None = None  # reach the server by URL at this host (a local control plane)
    service: str | None = None  # reach it through this Service in `namespace` (a cluster)
    namespace: str = names.DEFAULT_NAMESPACE
    cert_dir: Path | None = None  # ca.crt, tls.crt, tls.key; None: made at start


def configurations(client_config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The two webhook configurations, by collection path, for a server reached as
    `client_config` says (`url` or `service`, and `caBundle`)."""
    def webhook(handler: str, rule: dict[str, Any], failure_policy: str, timeout: int,
                object_selector: dict[str, Any]) -> dict[str, Any]:
        return {"name": f"{handler}.{names.WEBHOOK_CONFIGURATION}",
                "clientConfig": _for_handler(client_config, handler),
                "rules": [{**rule, "scope": "Namespaced"}],
                "objectSelector": object_selector, "failurePolicy": failure_policy,
                "timeoutSeconds": timeout, "matchPolicy": "Equivalent",
                "sideEffects": "None", "admissionReviewVersions": ["v1"]}

    def configuration(kind: str, hook: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                "metadata": {"name": names.WEBHOOK_CONFIGURATION,
                             "labels": {names.MANAGED_BY: names.MANAGED_BY_VALUE}},
                "webhooks": [hook]}
    def configuration_of(kind: str, *hooks: dict[str, Any]) -> dict[str, Any]:
        return {**configuration(kind, hooks[0]), "webhooks": list(hooks)}

    def validating(handler: str, plural: str) -> dict[str, Any]:
        return webhook(handler, {"apiGroups": [names.GROUP], "apiVersions": [names.VERSION],
                                 "resources": [plural], "operations": ["CREATE", "UPDATE"]},
                       "Fail", APIKEY_TIMEOUT, {})
    return {
        VALIDATING: configuration_of("ValidatingWebhookConfiguration",
                                     validating(VALIDATE_APIKEY, names.PLURAL),
                                     validating(VALIDATE_ROLE, names.ROLE_PLURAL),
                                     validating(VALIDATE_POLICY, names.POLICY_PLURAL)),
        MUTATING: configuration("MutatingWebhookConfiguration", webhook(
            INJECT_POD, {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                         "operations": ["CREATE"]},
            "Ignore", POD_TIMEOUT,
            {"matchExpressions": [{"key": names.INJECT_LABEL, "operator": "Exists"}]})),
    }


def _for_handler(client_config: Mapping[str, Any], handler: str) -> dict[str, Any]:
    """The client config with the handler's id appended to its path: Kopf's server
    routes `<path>/<id>` to that handler alone."""
    found = copy.deepcopy(dict(client_config))
    tail = urllib.parse.quote(handler)
    if found.get("url") is not None:
        found["url"] = f"{found['url'].rstrip('/')}/{tail}"
    if found.get("service") is not None:
        found["service"]["path"] = f"{(found['service'].get('path') or '').rstrip('/')}/{tail}"
    return {key: value for key, value in found.items() if value is not None}


def publish(api: kube.Kube, client_config: Mapping[str, Any],
            sleep: Callable[[float], None] = time.sleep) -> None:
    """Create both configurations, or replace their webhooks (a merge patch replaces the
    whole list, whatever an earlier version or a person left there). Only `create` and
    `patch` of `keywright.dev`, as deploy/'s RBAC grants. Retried while the API errs;
    the last error is raised (the operator then stops, rather than serve unreachable)."""
    for path, body in configurations(client_config).items():
        for attempt, wait in enumerate((*PUBLISH_BACKOFF, None)):
            try:
                try:
                    api.create_object(path, body)
                except kube.Conflict:  # exists: ours from an earlier start, or an older one
                    api.merge_patch_object(f"{path}/{names.WEBHOOK_CONFIGURATION}", {
                        "metadata": {"labels": body["metadata"]["labels"]},
                        "webhooks": body["webhooks"]})
                break
            except Exception as exc:  # the API server away or restarting: try again
                if wait is None or (isinstance(exc, kube.KubeError)
                                    and exc.status in (400, 401, 403, 422)):
                    raise  # RBAC or a refusal: no use trying again
                log.warning("cannot write %s %s yet (%s); attempt %d, again in %.1fs",
                            body["kind"], names.WEBHOOK_CONFIGURATION, exc, attempt + 1, wait)
                sleep(wait)
        log.info("%s %s written: %s", body["kind"], names.WEBHOOK_CONFIGURATION,
                 ", ".join(f"{hook['name']} (failurePolicy {hook['failurePolicy']}, "
                           f"timeoutSeconds {hook['timeoutSeconds']})"
                           for hook in body["webhooks"]))


class Server(kopf.WebhookServer):
    """Kopf's server, plus: the request's namespace copied into the object (a Pod made
    by a controller may arrive without one), a Service reference instead of a URL when
    the API server reaches the webhooks through a Service, and the webhook
    configurations written (`publish`) each time it listens anew."""

    def __init__(self, settings: WebhookServerSettings,
                 publish: Callable[[Mapping[str, Any]], None]) -> None:
        directory = settings.cert_dir
        self._made_dir: Path | None = None  # a throwaway CA's: removed when the server stops
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="keywright-webhook-"))
            self._made_dir = directory
            dns_names = ([settings.host] if settings.host else []) + (
                webcerts.names_for_service(settings.service, settings.namespace)
                if settings.service else ["localhost"])
            webcerts.issue(directory, dns_names)
        super().__init__(addr="0.0.0.0" if settings.service else settings.host,  # noqa: S104
                         port=settings.port, host=settings.host,
                         cafile=directory / "ca.crt", certfile=directory / "tls.crt",
                         pkeyfile=directory / "tls.key")
        self.settings = settings
        self.publish = publish

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        async def with_namespace(request: Any, **kwargs: Any) -> Any:
            inner = request.get("request") or {}
            for key in ("object", "oldObject"):
                found = inner.get(key)
                if isinstance(found, dict) and inner.get("namespace"):
                    found.setdefault("metadata", {}).setdefault("namespace", inner["namespace"])
            return await fn(request, **kwargs)

        try:
            async for config in super().__call__(with_namespace):
                if self.settings.service:
                    config = {"caBundle": config.get("caBundle"), "service": {
                        "namespace": self.settings.namespace,
                        "name": self.settings.service, "port": 443, "path": ""}}
                await asyncio.to_thread(self.publish, config)  # listening: tell the API server
                yield config
        finally:
            if self._made_dir is not None:  # its private key goes with the server
                shutil.rmtree(self._made_dir, ignore_errors=True)


def configure(settings: kopf.OperatorSettings, webhook: WebhookServerSettings,
              api: kube.Kube) -> None:
    settings.admission.server = Server(webhook, lambda config: publish(api, config))
    settings.admission.managed = None  # Kopf would write timeoutSeconds 30 over ours


@kopf.on.validate(names.GROUP, names.VERSION, names.PLURAL, id=VALIDATE_APIKEY,
                  operations=["CREATE", "UPDATE"])
def validate_apikey(memo: Any, **kwargs: Any) -> None:
    _admitted(admission.check_apikey, kwargs)
    if not _writes_spec(kwargs):
        return
    api, prefix = memo.reconciler.api, memo.reconciler.settings.default_prefix
    facts = _facts(api, _namespace(kwargs), "this ApiKey")
    _admitted(lambda op, new, old: admission.check_apikey_policies(op, new, old, facts,
                                                                   prefix), kwargs)


@kopf.on.validate(names.GROUP, names.VERSION, names.ROLE_PLURAL, id=VALIDATE_ROLE,
                  operations=["CREATE", "UPDATE"])
def validate_role(memo: Any, **kwargs: Any) -> None:
    _admitted(admission.check_role, kwargs)
    if not _writes_spec(kwargs):
        return
    api, prefix = memo.reconciler.api, memo.reconciler.settings.default_prefix
    namespace = _namespace(kwargs)
    began = time.monotonic()
    facts = _facts(api, namespace, "this ApiKeyRole")
    if not facts.policies:
        return
    # a key created in the last milliseconds may be missed: the operator judges it anyway
    keys = _listed(api, api.apikeys_path(namespace), namespace, "this ApiKeyRole",
                   cached=True)
    listed = time.monotonic()
    try:
        _admitted(lambda op, new, old: admission.check_role_policies(
            op, new, old, keys, facts, prefix), kwargs)
    finally:
        log.debug("ApiKeyRole %s/%s checked against %d ApiKeys: %.0f ms to read, %.0f ms "
                  "to judge", namespace, (kwargs.get("new") or {}).get("metadata", {}).get(
                      "name"), len(keys), (listed - began) * 1000,
                  (time.monotonic() - listed) * 1000)


@kopf.on.validate(names.GROUP, names.VERSION, names.POLICY_PLURAL, id=VALIDATE_POLICY,
                  operations=["CREATE", "UPDATE"])
def validate_policy(memo: Any, warnings: list[str], **kwargs: Any) -> None:
    _admitted(admission.check_policy, kwargs)
    if not _writes_spec(kwargs):
        return
    api, prefix = memo.reconciler.api, memo.reconciler.settings.default_prefix
    namespace = _namespace(kwargs)
    try:  # only a warning rides on these reads: when they fail, the policy is admitted
        keys = api.list_objects(api.apikeys_path(namespace), timeout=LOOKUP_DEADLINE)[0]
        roles = api.list_objects(api.apikeys_path(namespace, names.ROLE_PLURAL),
                                 timeout=LOOKUP_DEADLINE)[0]
    except Exception as exc:
        log.warning("cannot list the ApiKeys of %s to tell which break a new policy (%s)",
                    namespace, type(exc).__name__)
        return
    note = admission.policy_warning(kwargs.get("new") or {}, keys, roles, prefix)
    if note is not None:
        warnings.append(f"keywright: {note}")


def _writes_spec(kwargs: Mapping[str, Any]) -> bool:
    return admission.spec_written(kwargs.get("operation") or "", kwargs.get("new"),
                                  kwargs.get("old"))


def _namespace(kwargs: Mapping[str, Any]) -> str:
    return str(((kwargs.get("new") or {}).get("metadata") or {}).get("namespace") or "")


def _listed(api: kube.Kube, path: str, namespace: str, what: str,
            cached: bool = False) -> list[dict[str, Any]]:
    """A collection read for an admission check, within LOOKUP_DEADLINE; when it cannot
    be read the request is refused (these webhooks fail closed: a key that skipped its
    namespace's policies would be worse than one applied again). `cached`: from the API
    server's watch cache (resourceVersion 0), milliseconds behind but several times
    faster for a namespace of many ApiKeys (measured: 1,000 in 59 ms, against 209 ms
    read from etcd); policies are always read from etcd, so one applied a moment ago
    already applies."""
    try:
        return api.list_objects(path, {"resourceVersion": "0"} if cached else None,
                                timeout=LOOKUP_DEADLINE)[0]
    except Exception as exc:
        why = str(exc) if isinstance(exc, kube.KubeError) else type(exc).__name__
        log.warning("cannot read %s to check %s in %s (%s); refused", path, what, namespace,
                    why)
        raise kopf.AdmissionError(
            f"cannot read the ApiKeyPolicies and ApiKeyRoles of namespace {namespace} to "
            f"check {what} ({why}); try again", code=503) from None


def _facts(api: kube.Kube, namespace: str, what: str) -> compliance.Facts:
    """The namespace's policies and roles, read now: a policy applied a moment ago
    already applies. Roles are read only where there are policies."""
    policies = _listed(api, api.apikeys_path(namespace, names.POLICY_PLURAL), namespace, what)
    if not policies:
        return compliance.Facts(namespace)
    roles = _listed(api, api.apikeys_path(namespace, names.ROLE_PLURAL), namespace, what)
    return compliance.facts_of(namespace, policies, roles)


def _admitted(check: Callable[[str, Any, Any], None], kwargs: Mapping[str, Any]) -> None:
    """Run an admission check; its refusal is a 422 with its words."""
    # operation, old and new reach admission handlers as keyword arguments only
    try:
        check(kwargs.get("operation") or "", kwargs.get("new"), kwargs.get("old"))
    except admission.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None


@kopf.on.mutate("v1", "pods", id=INJECT_POD, operations=["CREATE"])
async def inject_pod(body: kopf.Body, patch: kopf.Patch, warnings: list[str], memo: Any,
                     **_: Any) -> None:
    namespace = body.metadata.namespace or ""
    api: kube.Kube = memo.reconciler.api
    note = admission.opt_in_warning(body)
    if note is not None:
        warnings.append(f"keywright: {note}")

    def lookup(name: str) -> dict[str, Any] | None:
        subject = f"{namespace}/{name}"
        faults.pause_point("apikey-lookup", subject)
        faults.fail_point("apikey-lookup", subject)
        # bounded like the wait below, so that a slow API server cannot pile up threads
        return api.get_apikey(namespace, name, timeout=LOOKUP_DEADLINE)
    try:
        changed = await asyncio.wait_for(
            asyncio.to_thread(admission.injection, body, namespace, lookup), LOOKUP_DEADLINE)
    except admission.Refused as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None
    except Exception as exc:  # the API server is unwell or slow: fail open, as when unreachable
        why = (f"no answer within {LOOKUP_DEADLINE:g}s" if isinstance(exc, TimeoutError)
               else type(exc).__name__)
        log.warning("cannot inject into a Pod in %s (%s); admitted without its key",
                    namespace, why)
        warnings.append(f"keywright: could not look up the ApiKey to inject ({why}); the "
                        "Pod is admitted without its key")
        return
    for field, containers in (changed or {}).items():
        patch.spec[field] = containers
