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
import codecs
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client, config

from keywright.core import errors, names, times

REQUEST_TIMEOUT = 30.0  # seconds per API call, unless the caller needs less
APIKEYS = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{{ns}}/{names.PLURAL}/{{name}}"
SECRETS = "/api/v1/namespaces/{ns}/secrets"
EVENTS = "/api/v1/namespaces/{ns}/events"
AS_OPERATOR = {"fieldManager": names.OPERATOR_FIELD_MANAGER}  # the query of every operator write
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
POOL_SIZE = 32  # connections kept open to the API server
AUTH_FOR = 10.0  # seconds an Authorization header is used before it is read again
LIST_CHUNK = 256 * 1024  # bytes read at a time from a list's response
FOLLOW_WATCH_SECONDS = 60  # one watch request; the server ends it, we start the next
FOLLOW_BACKOFF = (0.2, 10.0)  # first and longest wait between attempts while the API is away
log = logging.getLogger(__name__)
WORKLOADS = {"Deployment": "deployments", "StatefulSet": "statefulsets",
             "DaemonSet": "daemonsets"}


class Stream:
    """One collection kept in step by `Kube.follow`: what a full list means (`replace`:
    it gets the objects one at a time, as they are read, and must go through all of
    them), what each event means (`event`), and whether it is in step right now."""

    def __init__(self, label: str, path: str, query: Mapping[str, str],
                 replace: Callable[[Iterable[dict[str, Any]]], None],
                 event: Callable[[str, dict[str, Any]], None],
                 restarted: Callable[[str], None] = lambda label: None,
                 cached: bool = False, managed_fields: bool = False) -> None:
        self.label, self.path, self.query = label, path, dict(query)
        self.cached = cached  # list from the API server's watch cache (Kube.listing)
        # keep metadata.managedFields (who wrote which field): dropped unless asked for
        self.managed_fields = managed_fields
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
        self._host = api.configuration.host
        self._token: tuple[float, str | None] = (-AUTH_FOR, None)  # (when read, header)

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
        # kept open for reuse: every thread that calls at once (the operator's workers
        # and event posters, each list and watch being followed) keeps its own, rather
        # than a new TLS handshake after each call beyond the pool's size
        configuration.connection_pool_maxsize = POOL_SIZE
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
        listing = self.listing(path, query, timeout)
        return list(listing), listing.resource_version

    def listing(self, path: str, query: Mapping[str, str] | None = None,
                timeout: float = REQUEST_TIMEOUT, cached: bool = False,
                managed_fields: bool = False) -> Listing:
        """The objects of a collection one at a time, each parsed as its bytes arrive
        (`Listing`). `cached`: served from the API server's watch cache
        (resourceVersion=0, as client-go's informers list), which may be a moment
        behind: fit for a list a watch then continues from, much cheaper for the server
        than a read through etcd. Each object comes without `metadata.managedFields`
        (on an ApiKey as large as the rest) unless `managed_fields`."""
        return Listing(self, path, query or {}, timeout, cached, managed_fields)

    def _page(self, path: str, query: Mapping[str, str], timeout: float,
              rest: dict[str, Any], managed_fields: bool) -> Iterator[dict[str, Any]]:
        """One page's items as they are parsed; its other members (metadata) into
        `rest` once the page has been read to its end."""
        raw = self._send("GET", path, query, timeout=urllib3.Timeout(total=timeout),
                         stream=True)
        try:
            if not 200 <= raw.status <= 299:
                raise _error(raw.status, raw.read())
            for item in list_items(raw.stream(LIST_CHUNK), rest):
                yield item if managed_fields else _lean(item)
        finally:
            raw.release_conn()

    def watch_objects(self, path: str, resource_version: str,
                      query: Mapping[str, str] | None = None, timeout: int = 60,
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) per event from `resource_version` on, bookmarks included, until
        the server ends the watch after about `timeout` seconds. A stream that stalls for
        longer raises; an expired resourceVersion raises KubeError 410."""
        raw = self._send("GET", path, {
            **(query or {}), "watch": "true", "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)},
            timeout=urllib3.Timeout(connect=10, read=timeout + 15), stream=True)
        try:
            if not 200 <= raw.status <= 299:
                raise _error(raw.status, raw.read())
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

    def follow_each(self, streams: Iterable[Stream], stop: threading.Event) -> None:
        """`follow` each stream from a daemon thread of its own, named after it."""
        for stream in streams:
            threading.Thread(target=self.follow, args=(stream, stop), daemon=True,
                             name=f"watch {stream.label}").start()

    def follow(self, stream: Stream, stop: threading.Event) -> None:
        """Keep `stream` in step until `stop`: list, then watch from that list; list
        again at once when the watch has expired (410), and after any other error with
        a backoff (0.2 s doubling to 10 s). What was handed on before stays handed on:
        the callers keep serving it while the API server is away."""
        wait = FOLLOW_BACKOFF[0]
        while not stop.is_set():
            try:
                listing = self.listing(stream.path, stream.query, cached=stream.cached,
                                       managed_fields=stream.managed_fields)
                stream.replace(listing)
                version = listing.resource_version
                if not version:  # the list was not read to its end
                    raise KubeError(500, f"the list of {stream.label} was not read through")
                stream.listed, stream.connected, wait = True, True, FOLLOW_BACKOFF[0]
                log.info("listed %s: %d", stream.label, listing.count)
                while not stop.is_set():
                    for kind, obj in self.watch_objects(stream.path, version, stream.query,
                                                        FOLLOW_WATCH_SECONDS):
                        stream.connected = True
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if kind != "BOOKMARK":
                            stream.event(kind, obj if stream.managed_fields else _lean(obj))
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
        response = self._send(method, path, query, body=body, content_type=content_type,
                              accept=accept, timeout=urllib3.Timeout(total=timeout))
        payload = response.data
        if not 200 <= response.status <= 299:
            raise _error(response.status, payload)
        result: dict[str, Any] = json.loads(payload)
        return result

    def _authorization(self) -> str | None:
        """The Authorization header, read again from the client's configuration (whose
        hook refreshes an expiring token, and re-reads a mounted one) every AUTH_FOR
        seconds rather than per request: that hook re-applies the whole configuration
        each time it is asked (with the host's own lookup, 18% of the operator's CPU in a
        profile of 1,000 keys issued, when both ran per request)."""
        read_at, token = self._token
        now = time.monotonic()
        if now - read_at >= AUTH_FOR:
            token = self.api.configuration.get_api_key_with_prefix("BearerToken")
            self._token = (now, token)
        return token

    def _send(self, method: str, path: str, query: Mapping[str, str] | None = None, *,
              body: Any = None, content_type: str = "application/json",
              accept: str = "application/json", timeout: urllib3.Timeout,
              stream: bool = False) -> urllib3.BaseHTTPResponse:
        """One request through the client's own connection pool (its TLS, proxy and
        retries of connecting), without the generated client's layers: those cost a
        quarter of the operator's CPU at thousands of keys (docs/benchmarks.md).
        `stream`: the body is read by the caller, who releases the connection."""
        headers = {"Accept": accept, "User-Agent": self.api.user_agent}
        token = self._authorization()
        if token:
            headers["Authorization"] = token
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        url = self._host + path + (f"?{urlencode(query)}" if query else "")
        return self.api.rest_client.pool_manager.request(
            method, url, body=data, headers=headers, timeout=timeout,
            preload_content=not stream)


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


class Listing:
    """A collection's objects, page after page (500 each), parsed one object at a time
    as the response arrives: a list of 100,000 objects is never held whole, by us or as
    its bytes. Iterate once; `resource_version` is the list's once the last page is
    read, `count` how many objects were handed on."""

    def __init__(self, api: Kube, path: str, query: Mapping[str, str], timeout: float,
                 cached: bool, managed_fields: bool) -> None:
        self.api, self.path, self.query = api, path, dict(query)
        self.timeout, self.cached, self.managed_fields = timeout, cached, managed_fields
        self.resource_version = ""
        self.count = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            # a continued page names no resourceVersion (the API refuses both)
            query = {**self.query, "limit": "500",
                     **({"continue": token} if token else
                        {"resourceVersion": "0"} if self.cached else {})}
            rest: dict[str, Any] = {}
            for item in self.api._page(self.path, query, self.timeout, rest,
                                       self.managed_fields):
                self.count += 1
                yield item
            meta = rest.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self.resource_version = str(meta.get("resourceVersion") or "")
                return


_DECODER = json.JSONDecoder()
_BLANK = " \t\r\n"


def list_items(chunks: Iterable[bytes], rest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The members of a List document's `items` array, each as soon as its bytes are in,
    read from `chunks` (the response body in pieces of any size, split anywhere); the
    document's other members go into `rest`. Malformed or cut-short JSON raises
    ValueError."""
    pieces = iter(chunks)
    utf8 = codecs.getincrementaldecoder("utf-8")()
    text, pos, ended = "", 0, False

    def more() -> None:
        nonlocal text, pos, ended
        piece = next(pieces, None)
        ended = piece is None
        text = text[pos:] + utf8.decode(piece or b"", final=ended)
        pos = 0

    def char() -> str:  # the next character that is not blank, not consumed
        nonlocal pos
        while True:
            while pos < len(text) and text[pos] in _BLANK:
                pos += 1
            if pos < len(text):
                return text[pos]
            if ended:
                raise ValueError("the list ended early")
            more()

    def value() -> Any:
        nonlocal pos
        while True:
            try:
                found, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError:
                if ended:
                    raise
            else:  # at the very end, a number (say) may go on in the next piece
                if end < len(text) or ended:
                    pos = end
                    return found
            more()

    def expect(wanted: str) -> None:
        nonlocal pos
        if char() != wanted:
            raise ValueError(f"expected {wanted!r} in a list at character {pos}")
        pos += 1

    expect("{")
    while char() != "}":
        if text[pos] == ",":
            pos += 1
            char()
        member = value()
        expect(":")
        if char() != "[" or member != "items":
            rest[member] = value()
            continue
        pos += 1
        while char() != "]":
            if text[pos] == ",":
                pos += 1
            else:
                yield value()
        pos += 1
