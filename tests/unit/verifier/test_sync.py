"""What the verifier's lists and watch events mean for the index: an ApiKey that is gone,
or that came back as another object of the same name, takes its limits and use with it."""

from __future__ import annotations

from typing import Any

from keywright.verifier import index, sync
from tests.support.keys import apikey


def with_uid(name: str, uid: str) -> dict[str, Any]:
    manifest = apikey(name, "pay")
    manifest["metadata"]["uid"] = uid
    return manifest


def following() -> tuple[sync.Sync, list[tuple[str, str]]]:
    forgotten: list[tuple[str, str]] = []
    follower = sync.Sync(None, index.Index(), "keywright-system",  # type: ignore[arg-type]
                         forget=lambda namespace, name: forgotten.append((namespace, name)))
    return follower, forgotten


def test_a_full_list_forgets_names_that_are_gone_or_belong_to_another_object() -> None:
    follower, forgotten = following()
    listed = follower.streams[0].replace
    listed([with_uid("kept", "u1"), with_uid("gone", "u2"), with_uid("recreated", "u3")])
    assert forgotten == []
    listed([with_uid("kept", "u1"), with_uid("recreated", "u4")])
    assert sorted(forgotten) == [("pay", "gone"), ("pay", "recreated")]
    assert len(follower.keys) == 2


def test_a_deleted_event_removes_the_key_and_forgets_it() -> None:
    follower, forgotten = following()
    follower.streams[0].replace([with_uid("billing", "u1")])
    follower.streams[0].event("DELETED", with_uid("billing", "u1"))
    assert forgotten == [("pay", "billing")]
    assert len(follower.keys) == 0
