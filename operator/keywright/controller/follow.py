"""The operator's eyes on ApiKeys and on its own Secrets: list, then watch, forever.

Owns: following the ApiKeys (the cluster's, or each watched namespace's) and the
Secrets labelled as Keywright's with `kube.Kube.follow`, from threads of their own, and
what each object seen means: an ApiKey to the metrics board and, when
`core.triggers.wanted` says so, to the reconciler's queue; a Secret of a key's to
`Reconciler.secret_changed`. A list (at start, or again after a watch expired) says
what changed while no watch was open: an object not seen before in this process is a
first sight, one at another resourceVersion a change, one at the same version nothing,
and one gone from the list a deletion.
Must not: decide or call the API itself (beyond the follow), or log an object (a
Secret's data is a key). Kopf's own per-event machinery is not on this path: at
thousands of keys it cost more than the reconciles (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from keywright import kube
from keywright.controller import metrics, reconcile
from keywright.core import names, triggers

SELECTOR = f"{names.MANAGED_BY}={names.MANAGED_BY_VALUE}"
SECRETS_FIRST = 10.0  # seconds the keys' list waits for the Secrets' at most
Obj = dict[str, Any]
Handle = Callable[[str | None, str, str, Obj | None], None]


class Follower:
    def __init__(self, api: kube.Kube, reconciler: reconcile.Reconciler,
                 board: metrics.Board | None, namespaces: Sequence[str] = ()) -> None:
        self.api, self.reconciler, self.board = api, reconciler, board
        self._stop = threading.Event()
        self._owners: dict[tuple[str, str], str] = {}  # Secret -> its ApiKey's name
        self._keys_listed = threading.Event()  # the keys' watches started
        self.keys: list[kube.Stream] = []
        self.secrets: list[kube.Stream] = []
        for ns in [*namespaces] if namespaces else [None]:
            where = f" in {ns}" if ns else ""
            keys = _Seen(self._apikey)
            self.keys.append(kube.Stream(
                f"apikeys{where}", kube.Kube.apikeys_path(ns), {}, keys.listed, keys.event,
                cached=True))
            secrets = _Seen(self._secret)
            self.secrets.append(kube.Stream(
                f"keywright secrets{where}", kube.SECRETS.format(ns=ns) if ns
                else "/api/v1/secrets", {"labelSelector": SELECTOR}, secrets.listed,
                secrets.event, cached=True,
                managed_fields=True))  # who changed a Secret's data is read from them

    def start(self) -> None:
        """The Secrets first; the keys once the Secrets are listed (or after
        SECRETS_FIRST seconds): a restart then decides each unchanged key from the
        list, with no read of its Secret."""
        self.api.follow_each(self.secrets, self._stop)

        def then_keys() -> None:
            deadline = time.monotonic() + SECRETS_FIRST
            while not all(s.listed for s in self.secrets) and time.monotonic() < deadline \
                    and not self._stop.wait(0.05):
                pass
            self._keys_listed.set()
            self.api.follow_each(self.keys, self._stop)
        threading.Thread(target=then_keys, daemon=True, name="watch keys after secrets").start()

    def stop(self) -> None:
        """Stops at the end of each watch in progress; the threads are daemons."""
        self._stop.set()

    def _apikey(self, kind: str | None, namespace: str, name: str, body: Obj | None) -> None:
        if body is None:
            self.reconciler.forget(namespace, name)
            if self.board is not None:
                self.board.remove(namespace, name)
            return
        if self.board is not None:
            self.board.put(namespace, name, body)
        if triggers.wanted(kind, body):
            self.reconciler.submit(namespace, name, body=body)

    def _secret(self, kind: str | None, namespace: str, name: str, body: Obj | None) -> None:
        labels = ((body or {}).get("metadata") or {}).get("labels") or {}
        owner = labels.get(names.APIKEY_LABEL) or self._owners.get((namespace, name))
        if body is not None and owner:
            self._owners[namespace, name] = owner
        elif body is None:
            self._owners.pop((namespace, name), None)
        if not owner:
            return  # not a key's Secret (the pepper has no owner)
        if kind is None and body is not None and not self._keys_listed.is_set():
            # listed before the keys were: each key's own first sight reconciles it,
            # and finds its Secret here rather than reading it
            self.reconciler.secret_listed(namespace, owner, body)
        else:
            self.reconciler.secret_changed(namespace, owner, body)


class _Seen:
    """What one followed collection's lists and events mean, given the objects this
    process has seen in it (name -> resourceVersion)."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.versions: dict[tuple[str, str], str] = {}

    def listed(self, items: Iterable[Obj]) -> None:
        before, self.versions = self.versions, {}
        for obj in items:
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            version = str(meta.get("resourceVersion") or "")
            self.versions[key] = version
            known = before.pop(key, None)
            if known is None:
                self.handle(None, *key, obj)  # first sight: a listed object has no type
            elif known != version:
                self.handle("MODIFIED", *key, obj)
        for key in before:  # deleted while no watch was open
            self.handle("DELETED", *key, None)

    def event(self, kind: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if kind == "DELETED":
            self.versions.pop(key, None)
            self.handle(kind, *key, None)
        else:
            self.versions[key] = str(meta.get("resourceVersion") or "")
            self.handle(kind, *key, obj)
