"""The only module that talks to the Kubernetes API (import-linter keeps it so).

Owns: loading credentials (kubeconfig or in-cluster), the few calls Keywright makes
(read an ApiKey, patch its status, read/create/patch a Secret, post an Event, create or
patch the webhook configurations), and following a collection (list, then watch,
forever: `Kube.follow`), which the operator and the verifier share. Objects travel as
the API's own JSON dicts (camelCase), so nothing is lost in translation.
Must not: log request or response bodies (they can hold a key), or decide anything.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config

from keywright.core import errors, names, times

REQUEST_TIMEOUT = 30.0  # seconds per API call, unless the caller needs less
APIKEYS = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{{ns}}/{names.PLURAL}/{{name}}"
SECRETS = "/api/v1/namespaces/{ns}/secrets"
EVENTS = "/api/v1/namespaces/{ns}/events"
AS_OPERATOR = {"fieldManager": names.OPERATOR_FIELD_MANAGER}  # the query of every operator write
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
FOLLOW_WATCH_SECONDS = 60  # one watch request; the server ends it, we start the next
FOLLOW_BACKOFF = (0.2, 10.0)  # first and longest wait between attempts while the API is away
log = logging.getLogger(__name__)
WORKLOADS = {"Deployment": "deployments", "StatefulSet": "statefulsets",
             "DaemonSet": "daemonsets"}


class Stream:
    """One collection kept in step by `Kube.follow`: what a full list means (`replace`),
    what each event means (`event`), and whether it is in step right now."""

    def __init__(self, label: str, path: str, query: Mapping[str, str],
                 replace: Callable[[list[dict[str, Any]]], None],
                 event: Callable[[str, dict[str, Any]], None],
                 restarted: Callable[[str], None] = lambda label: None) -> None:
        self.label, self.path, self.query = label, path, dict(query)
        self.replace, self.event, self.restarted = replace, event, restarted
        self.listed = False  # one full list has been handed on
        self.connected = False  # a watch is open right now
        self.lost_at = time.monotonic()  # when it last stopped being in step

    def lose(self, expired: bool) -> None:
        if self.connected:
            self.connected, self.lost_at = False, time.monotonic()
        if not expired:
            self.restarted(self.label)


class KubeError(errors.KeywrightError):
    """The API answered with an error; `status` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API error {status}: {message}")
        self.status = status


class Conflict(KubeError):
    """409: the object exists already, or changed since it was read."""


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_path: str | None
    token: str | None = field(repr=False)
    scheme: str | None
    cert_path: str | None
    key_path: str | None
    insecure: bool


class Kube:
    def __init__(self, api: client.ApiClient, component: str = "keywright-operator") -> None:
        self.api = api
        self.component = component
        self.instance = socket.gethostname()

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None,
                component: str = "keywright-operator") -> Kube:
        """In-cluster credentials when running in a Pod without a kubeconfig, else kubeconfig."""
        configuration = client.Configuration()
        if kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ \
                and "KUBECONFIG" not in os.environ:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=kubeconfig, context=context,
                                    client_configuration=configuration)
        configuration.connection_pool_maxsize = 8
        return cls(client.ApiClient(configuration), component)

    def credentials(self) -> Credentials:
        """What Kopf needs to log in as the same identity, read from our configuration."""
        c = self.api.configuration
        header = c.get_api_key_with_prefix("BearerToken") or ""
        scheme, _, token = header.partition(" ")
        return Credentials(server=c.host, ca_path=c.ssl_ca_cert, token=token or None,
                           scheme=scheme or None, cert_path=c.cert_file, key_path=c.key_file,
                           insecure=not c.verify_ssl)

    def close(self) -> None:
        self.api.close()

    # -- ApiKeys --------------------------------------------------------------------

    def get_apikey(self, namespace: str, name: str,
                   timeout: float = REQUEST_TIMEOUT) -> dict[str, Any] | None:
        return self._get(APIKEYS.format(ns=namespace, name=name), timeout=timeout)

    def any_apikey_issued(self) -> bool:
        """Whether any ApiKey in the cluster has a hash in its status."""
        items, _ = self.list_objects(self.apikeys_path())
        return any((item.get("status") or {}).get("hash") for item in items)

    @staticmethod
    def apikeys_path(namespace: str | None = None, plural: str = names.PLURAL) -> str:
        """The ApiKey collection (or another of Keywright's kinds, by `plural`): one
        namespace's, or the whole cluster's."""
        base = f"/apis/{names.GROUP}/{names.VERSION}"
        return f"{base}/namespaces/{namespace}/{plural}" if namespace else \
            f"{base}/{plural}"

    def patch_apikey_status(self, namespace: str, name: str, patch: Mapping[str, Any],
                            field_manager: str = names.OPERATOR_FIELD_MANAGER,
                            resource_version: str | None = None) -> None:
        """A merge patch of the status; with `resource_version`, only if the ApiKey is
        still at it (else a Conflict)."""
        body: dict[str, Any] = {"status": dict(patch)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        self._call("PATCH", APIKEYS.format(ns=namespace, name=name) + "/status",
                   body=body, query={"fieldManager": field_manager},
                   content_type="application/merge-patch+json")

    # -- list and watch -------------------------------------------------------------

    def list_objects(self, path: str, query: Mapping[str, str] | None = None,
                     timeout: float = REQUEST_TIMEOUT) -> tuple[list[dict[str, Any]], str]:
        """Every object of a collection (pages of 500) and the list's resourceVersion;
        `timeout` bounds each page's request."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self._call("GET", path, query={**(query or {}), "limit": "500",
                                                  **({"continue": token} if token else {})},
                              timeout=timeout)
            # kept without managedFields (no reader needs them; on an ApiKey they are as
            # large as the rest): at 100,000 keys the list is the verifier's peak memory
            items.extend(_lean(item) for item in page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def watch_objects(self, path: str, resource_version: str,
                      query: Mapping[str, str] | None = None, timeout: int = 60,
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) per event from `resource_version` on, bookmarks included, until
        the server ends the watch after about `timeout` seconds. A stream that stalls for
        longer raises; an expired resourceVersion raises KubeError 410."""
        request = self.api.param_serialize(
            method="GET", resource_path=path,
            query_params=[*(query or {}).items(), ("watch", "true"),
                          ("resourceVersion", resource_version),
                          ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout))],
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=(10, timeout + 15))
        raw = response.response
        try:
            if not 200 <= response.status <= 299:
                raise _error(response.status, response.read())
            for line in raw:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(int(obj.get("code") or 500), str(obj.get("message", "")))
                yield kind, obj
        finally:
            raw.release_conn()

    def follow(self, stream: Stream, stop: threading.Event) -> None:
        """Keep `stream` in step until `stop`: list, then watch from that list; list
        again at once when the watch has expired (410), and after any other error with
        a backoff (0.2 s doubling to 10 s). What was handed on before stays handed on:
        the callers keep serving it while the API server is away."""
        wait = FOLLOW_BACKOFF[0]
        while not stop.is_set():
            try:
                items, version = self.list_objects(stream.path, stream.query)
                stream.replace(items)
                stream.listed, stream.connected, wait = True, True, FOLLOW_BACKOFF[0]
                log.info("listed %s: %d", stream.label, len(items))
                del items
                while not stop.is_set():
                    for kind, obj in self.watch_objects(stream.path, version, stream.query,
                                                        FOLLOW_WATCH_SECONDS):
                        stream.connected = True
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if kind != "BOOKMARK":
                            stream.event(kind, _lean(obj))
            except KubeError as exc:
                stream.lose(expired=exc.status == 410)
                if exc.status == 410:
                    log.info("watch of %s expired; listing again", stream.label)
                    continue
                log.warning("cannot list or watch %s: %s; retrying in %.1f s",
                            stream.label, exc, wait)
            except Exception as exc:  # the API server is away (its text may quote objects)
                stream.lose(expired=False)
                log.warning("lost the watch of %s (%s); retrying in %.1f s", stream.label,
                            type(exc).__name__, wait)
            stop.wait(wait)
            wait = min(FOLLOW_BACKOFF[1], wait * 2)

    # -- Secrets --------------------------------------------------------------------

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"{SECRETS.format(ns=namespace)}/{name}")

    def get_secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret without its data (PartialObjectMetadata): no plaintext is read."""
        return self._get(f"{SECRETS.format(ns=namespace)}/{name}", accept=METADATA_ONLY)

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", SECRETS.format(ns=namespace), body=dict(body),
                          query=AS_OPERATOR)

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch; a metadata.resourceVersion in it makes it fail (409) if the
        Secret changed since it was read."""
        return self._call("PATCH", f"{SECRETS.format(ns=namespace)}/{name}", body=dict(patch),
                          query=AS_OPERATOR,
                          content_type="application/merge-patch+json")

    @staticmethod
    def secret_data(data: Mapping[str, bytes]) -> dict[str, str]:
        return {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}


    # -- workloads ------------------------------------------------------------------

    def annotate_pod_template(self, namespace: str, kind: str, name: str,
                              annotations: Mapping[str, str]) -> bool:
        """Set pod-template annotations (which rolls the workload if a value changes).
        False if the workload does not exist."""
        path = f"/apis/apps/v1/namespaces/{namespace}/{WORKLOADS[kind]}/{name}"
        patch = {"spec": {"template": {"metadata": {"annotations": dict(annotations)}}}}
        try:
            self._call("PATCH", path, body=patch, query=AS_OPERATOR,
                       content_type="application/merge-patch+json")
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- any object, by path (set-up in dev mode and benchmarks; webhook configurations) -

    def get_object(self, path: str) -> dict[str, Any] | None:
        return self._get(path)

    def create_object(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, body=dict(body))

    def replace_object(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("PUT", path, body=dict(body))

    def merge_patch_object(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch, as the operator (a list in it replaces the whole list)."""
        return self._call("PATCH", path, body=dict(patch), query=AS_OPERATOR,
                          content_type="application/merge-patch+json")

    # -- Events ---------------------------------------------------------------------

    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str,
                   message: str) -> None:
        meta = involved["metadata"]
        now = times.timestamp(datetime.now(UTC))
        self._call("POST", EVENTS.format(ns=meta["namespace"]), body={
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved["apiVersion"], "kind": involved["kind"],
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": f"{names.GROUP}/{self.component}",
            "reportingInstance": self.instance,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })

    # -- plumbing -------------------------------------------------------------------

    def _get(self, path: str, accept: str = "application/json",
             timeout: float = REQUEST_TIMEOUT) -> dict[str, Any] | None:
        try:
            return self._call("GET", path, accept=accept, timeout=timeout)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def _call(self, method: str, path: str, *, body: Any = None,
              query: Mapping[str, str] | None = None,
              content_type: str = "application/json",
              accept: str = "application/json",
              timeout: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=timeout)
        payload = response.read()
        if not 200 <= response.status <= 299:
            raise _error(response.status, payload)
        result: dict[str, Any] = json.loads(payload)
        return result


def _error(status: int, payload: bytes) -> KubeError:
    try:
        message = str(json.loads(payload).get("message", ""))
    except ValueError:
        message = f"HTTP {status}"
    return Conflict(status, message) if status == 409 else KubeError(status, message)


def _lean(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without `metadata.managedFields` (the server-side apply bookkeeping)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


