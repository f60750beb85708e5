"""The operator follows its pepper Secret by name: every usable version is handed on,
a deleted or unusable one leaves the peppers in use."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from keywright import kube
from keywright.controller import pepper
from keywright.core import hashing

ONE = bytes(range(32))
TWO = bytes(range(32, 64))


def secret(**data: bytes) -> dict[str, Any]:
    return {"metadata": {"name": "keywright-pepper", "resourceVersion": "7"},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def watching(events: list[tuple[str, dict[str, Any]]] | None = None
             ) -> tuple[pepper.PepperWatch, list[hashing.Peppers]]:
    loaded: list[hashing.Peppers] = []
    return pepper.PepperWatch(FakeApi(events or []), "keywright-system",  # type: ignore[arg-type]
                              loaded.append), loaded


class Listed(list[dict[str, Any]]):
    def __init__(self, items: list[dict[str, Any]], resource_version: str) -> None:
        super().__init__(items)
        self.resource_version = resource_version


class FakeApi:
    """A list with the first version of the pepper, then one watch delivering `events`;
    the real loop (`Kube.follow`) drives them."""

    follow = kube.Kube.follow
    follow_each = kube.Kube.follow_each

    def __init__(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.events = events
        self.queries: list[Mapping[str, str] | None] = []
        self.done = threading.Event()

    def listing(self, path: str, query: Mapping[str, str] | None = None,
                cached: bool = False, managed_fields: bool = False) -> Listed:
        self.queries.append(query)
        if self.done.is_set():
            raise kube.KubeError(503, "gone for the rest of the test")
        return Listed([secret(v1=ONE, active=b"v1")], "7")

    def watch_objects(self, path: str, version: str, query: Mapping[str, str] | None = None,
                      timeout: int = 60) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self.events
        self.done.set()
        raise kube.KubeError(500, "the watch ends")


def test_each_new_version_of_the_pepper_is_handed_on_once() -> None:
    watch, loaded = watching()
    watch.event("ADDED", secret(v1=ONE, active=b"v1"))
    watch.event("MODIFIED", secret(v1=ONE, active=b"v1"))  # e.g. a label changed
    watch.event("MODIFIED", secret(v1=ONE, v2=TWO, active=b"v2"))
    assert [(p.active, sorted(p.versions)) for p in loaded] == \
        [("v1", ["v1"]), ("v2", ["v1", "v2"])]


def test_a_deleted_or_unusable_pepper_secret_leaves_the_peppers_in_use() -> None:
    watch, loaded = watching()
    watch.event("ADDED", secret(v1=ONE, active=b"v1"))
    watch.event("DELETED", secret(v1=ONE, active=b"v1"))
    watch.event("MODIFIED", secret(v1=ONE, active=b"v9"))  # names a missing version
    watch.event("MODIFIED", secret(v1=b"short", active=b"v1"))
    assert [p.active for p in loaded] == ["v1"]
    assert watch.current == loaded[0]


def test_the_watch_selects_the_pepper_by_name_and_delivers_list_then_events() -> None:
    watch, loaded = watching([("BOOKMARK", {"metadata": {"resourceVersion": "8"}}),
                              ("MODIFIED", secret(v1=ONE, v2=TWO, active=b"v2"))])
    api: FakeApi = watch.api  # type: ignore[assignment]
    watch.start()
    assert api.done.wait(5)
    watch.stop()
    assert [p.active for p in loaded] == ["v1", "v2"]
    assert api.queries[0] == {"fieldSelector": "metadata.name=keywright-pepper"}
