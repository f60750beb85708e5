"""Keeps the verifier's index and peppers current: list, then watch, forever.

Owns: the collections it follows (the ApiKeys and the ApiKeyRoles of the cluster or of
each configured namespace, and the one pepper Secret, selected by name), what their lists
and events mean for the index and the peppers (a role whose spec cannot be read grants
nothing, as a missing one), and knowing how stale the index may be. The loop
itself (re-listing when a watch has expired, backing off while the API server is away)
is `kube.Kube.follow`. Reads no tenant Secret.
Must not: log an object (the pepper Secret's data is a secret) or clear the index when
the API server goes away: the last snapshot keeps serving.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from keywright import kube
from keywright.core import hashing, models, names, permissions
from keywright.verifier import index

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]


class Sync:
    def __init__(self, api: kube.Kube, keys: index.Index, pepper_namespace: str,
                 namespaces: Sequence[str] = (),
                 forget: Callable[[str, str], None] = lambda namespace, name: None,
                 restarted: Callable[[str], None] = lambda label: None) -> None:
        self.api, self.keys, self.forget, self.restarted = api, keys, forget, restarted
        self.peppers: hashing.Peppers | None = None
        self._stop = threading.Event()
        self.streams = [
            kube.Stream(f"apikeys in {ns}" if ns else "apikeys", kube.Kube.apikeys_path(ns),
                        {}, self._apikeys_listed(ns), self._apikey_event, self._restarted,
                        cached=True)
            for ns in ([*namespaces] if namespaces else [None])]
        self.streams += [
            kube.Stream(f"apikeyroles in {ns}" if ns else "apikeyroles",
                        kube.Kube.apikeys_path(ns, names.ROLE_PLURAL), {},
                        self._roles_listed(ns), self._role_event, self._restarted,
                        cached=True)
            for ns in ([*namespaces] if namespaces else [None])]
        self.streams.append(kube.Stream(
            f"secret {pepper_namespace}/{names.PEPPER_SECRET}",
            kube.SECRETS.format(ns=pepper_namespace),
            {"fieldSelector": f"metadata.name={names.PEPPER_SECRET}"},
            self._pepper_listed, self._pepper_event, self._restarted))

    @property
    def ready(self) -> bool:
        """Every collection listed once and a pepper loaded: answers mean something."""
        return self.peppers is not None and all(s.listed for s in self.streams)

    def seconds_since_sync(self, now: float | None = None) -> float:
        """0 while every watch is open; else how long since the first one dropped."""
        now = time.monotonic() if now is None else now
        lost = [s.lost_at for s in self.streams if not s.connected]
        return max(0.0, now - min(lost)) if lost else 0.0

    def start(self) -> None:
        self.api.follow_each(self.streams, self._stop)

    def stop(self) -> None:
        self._stop.set()

    def _restarted(self, label: str) -> None:
        self.restarted(label)  # looked up late: server.build sets it after construction

    # -- what lists and events mean -----------------------------------------------------

    def _apikeys_listed(self, namespace: str | None) -> Callable[[Iterable[Obj]], None]:
        def replace(items: Iterable[Obj]) -> None:
            # an ApiKey that is gone, or that another of the same name replaced (deleted
            # and created again while the watch was down: this list is all that says so),
            # takes its rate-limit bucket and its unreported use with it
            before = self.keys.uids(namespace)
            gc.disable()  # a build makes millions of objects that all live: no
            try:          # collections halfway (each would walk all of them again)
                now = self.keys.replace_all(items, namespace)
            finally:
                gc.enable()
            gc.collect()
            gc.freeze()  # what a list built lives long: keep full collections off it
            for key, uid in before.items():
                if now.get(key) != uid:
                    self.forget(*key)
        return replace

    def _apikey_event(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            meta = obj.get("metadata") or {}
            self.keys.remove(meta.get("namespace", ""), meta.get("name", ""))
            self.forget(meta.get("namespace", ""), meta.get("name", ""))
        elif kind in ("ADDED", "MODIFIED"):
            self.keys.upsert(obj)

    def _roles_listed(self, namespace: str | None) -> Callable[[Iterable[Obj]], None]:
        def replace(items: Iterable[Obj]) -> None:
            self.keys.replace_roles([_role(item) for item in items], namespace)
        return replace

    def _role_event(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            meta = obj.get("metadata") or {}
            self.keys.remove_role(str(meta.get("namespace", "")), str(meta.get("name", "")))
        elif kind in ("ADDED", "MODIFIED"):
            self.keys.set_role(*_role(obj))

    def _pepper_listed(self, listed: Iterable[Obj]) -> None:
        items = list(listed)
        if not items:
            log.warning("pepper Secret %s not found; not ready until the operator creates it",
                        self.streams[-1].label.removeprefix("secret "))
        for item in items:
            self._pepper_event("ADDED", item)

    def _pepper_event(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            log.warning("pepper Secret deleted; keeping the peppers already loaded")
            return
        try:
            self.peppers = hashing.Peppers.from_secret(obj)
        except hashing.PepperError as exc:  # the message names a data key, never a value
            log.error("pepper Secret is unusable (%s); keeping the peppers already loaded",
                      exc)
            return
        log.info("peppers loaded: %s", self.peppers)  # its repr shows versions, no bytes


def _role(obj: Obj) -> tuple[str, str, tuple[permissions.Permission, ...] | None]:
    """(namespace, name, permissions) of an ApiKeyRole; None for a spec that cannot be
    read (the keys naming it get nothing from it, and a Warning line says why)."""
    meta = obj.get("metadata") or {}
    where, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    try:
        return where, name, models.role_permissions(models.validate_role_spec(obj.get("spec")))
    except models.SpecError as exc:
        log.warning("ApiKeyRole %s/%s grants nothing: %s", where, name, exc)
        return where, name, None

