"""Keeps the verifier's index and peppers current: list, then watch, forever.

Owns: one list-then-watch loop per collection (the ApiKeys of the cluster or of each
configured namespace, and the one pepper Secret, selected by name), re-listing when a
watch's resourceVersion has expired, backing off while the API server is away, and
knowing how stale the index may be. Reads no tenant Secret.
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
from keywright.core import hashing, names
from keywright.verifier import index

log = logging.getLogger(__name__)
WATCH_SECONDS = 60
BACKOFF = (0.2, 10.0)  # first and longest wait between attempts while the API is away

Obj = Mapping[str, Any]


class Stream:
    """One collection kept in step: what a full list means, and what each event means."""

    def __init__(self, label: str, path: str, query: Mapping[str, str],
                 replace: Callable[[Sequence[Obj]], None], event: Callable[[str, Obj], None]
                 ) -> None:
        self.label, self.path, self.query = label, path, dict(query)
        self.replace, self.event = replace, event
        self.listed = False  # one full list has been applied
        self.connected = False  # a watch is open right now
        self.lost_at = time.monotonic()  # when it last stopped being in step


class Sync:
    def __init__(self, api: kube.Kube, keys: index.Index, pepper_namespace: str,
                 namespaces: Sequence[str] = (),
                 forget: Callable[[str, str], None] = lambda namespace, name: None,
                 restarted: Callable[[str], None] = lambda label: None) -> None:
        self.api, self.keys, self.forget, self.restarted = api, keys, forget, restarted
        self.peppers: hashing.Peppers | None = None
        self._stop = threading.Event()
        self.streams = [
            Stream(f"apikeys in {ns}" if ns else "apikeys", kube.Kube.apikeys_path(ns), {},
                   self._apikeys_listed(ns), self._apikey_event)
            for ns in ([*namespaces] if namespaces else [None])]
        self.streams.append(Stream(
            f"secret {pepper_namespace}/{names.PEPPER_SECRET}",
            kube.SECRETS.format(ns=pepper_namespace),
            {"fieldSelector": f"metadata.name={names.PEPPER_SECRET}"},
            self._pepper_listed, self._pepper_event))

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
        for stream in self.streams:
            threading.Thread(target=self._run, args=(stream,), daemon=True,
                             name=f"watch {stream.label}").start()

    def stop(self) -> None:
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------

    def _run(self, stream: Stream) -> None:
        wait = BACKOFF[0]
        while not self._stop.is_set():
            try:
                items, version = self.api.list_objects(stream.path, stream.query)
                stream.replace(items)
                stream.listed, stream.connected, wait = True, True, BACKOFF[0]
                log.info("listed %s: %d", stream.label, len(items))
                del items
                gc.collect()
                gc.freeze()  # what a list built lives long: keep full collections off it
                while not self._stop.is_set():
                    version = self._watch(stream, version)
            except kube.KubeError as exc:
                self._lost(stream, exc.status == 410)
                if exc.status == 410:  # too old to resume from: list again, at once
                    log.info("watch of %s expired; listing again", stream.label)
                    continue
                log.warning("cannot list or watch %s: %s; serving the last snapshot, "
                            "retrying in %.1f s", stream.label, exc, wait)
            except Exception as exc:  # the API server is away: keep the last snapshot
                self._lost(stream, False)
                log.warning("lost the watch of %s (%s); serving the last snapshot, retrying "
                            "in %.1f s", stream.label, type(exc).__name__, wait)
            self._stop.wait(wait)
            wait = min(BACKOFF[1], wait * 2)

    def _watch(self, stream: Stream, version: str) -> str:
        for kind, obj in self.api.watch_objects(stream.path, version, stream.query,
                                                WATCH_SECONDS):
            stream.connected = True
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind != "BOOKMARK":
                stream.event(kind, obj)
        return version

    def _lost(self, stream: Stream, expired: bool) -> None:
        if stream.connected:
            stream.connected, stream.lost_at = False, time.monotonic()
        if not expired:
            self.restarted(stream.label)

    # -- what lists and events mean -----------------------------------------------------

    def _apikeys_listed(self, namespace: str | None) -> Callable[[Sequence[Obj]], None]:
        def replace(items: Sequence[Obj]) -> None:
            before = self.keys.names(namespace)
            self.keys.replace_all(items, namespace)
            for gone in before - set(_names(items)):
                self.forget(*gone)
        return replace

    def _apikey_event(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            meta = obj.get("metadata") or {}
            self.keys.remove(meta.get("namespace", ""), meta.get("name", ""))
            self.forget(meta.get("namespace", ""), meta.get("name", ""))
        elif kind in ("ADDED", "MODIFIED"):
            self.keys.upsert(obj)

    def _pepper_listed(self, items: Sequence[Obj]) -> None:
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
            self.peppers = hashing.Peppers.from_data(kube.Kube.decode_data(obj))
        except hashing.PepperError as exc:  # the message names a data key, never a value
            log.error("pepper Secret is unusable (%s); keeping the peppers already loaded",
                      exc)
            return
        log.info("peppers loaded: %s", self.peppers)  # its repr shows versions, no bytes


def _names(items: Iterable[Obj]) -> Iterable[tuple[str, str]]:
    for item in items:
        meta = item.get("metadata") or {}
        yield meta.get("namespace", ""), meta.get("name", "")
