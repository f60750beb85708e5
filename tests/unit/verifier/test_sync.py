"""What the verifier's lists and watch events mean for the index: an ApiKey that is gone,
or that came back as another object of the same name, takes its limits and use with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from keywright.verifier import index, sync
from tests.support.keys import OTHER, apikey


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


def test_a_list_cut_off_halfway_leaves_the_index_as_it_was() -> None:
    """The list reaches the index one object at a time; the index is swapped only once
    the whole list is read."""
    follower, forgotten = following()
    follower.streams[0].replace([with_uid("kept", "u1"), with_uid("other", "u2")])

    def cut_off() -> Iterator[dict[str, Any]]:
        yield with_uid("new", "u3")
        raise ValueError("the list ended early")

    with pytest.raises(ValueError, match="ended early"):
        follower.streams[0].replace(cut_off())
    assert follower.keys.names() == {("pay", "kept"), ("pay", "other")}
    assert forgotten == []


def test_keys_with_equal_specs_share_what_comes_from_the_spec_and_no_more() -> None:
    follower, _ = following()
    other = apikey("two", "pay", key=OTHER)
    follower.streams[0].replace([with_uid("one", "u1"), other])
    one, two = (next(r for t in follower.keys.tables.values() for r in t.values()
                     if r.name == name) for name in ("one", "two"))
    assert one.scopes is two.scopes
    assert one.granted is two.granted
    assert one.identity[2:] == two.identity[2:]
    assert one.identity[2] is two.identity[2]
    assert one.identity[1] == (b"x-keywright-name", b"one")
    assert two.identity[1] == (b"x-keywright-name", b"two")
    changed = apikey("two", "pay", key=OTHER)
    changed["spec"]["scopes"] = ["Reviews.Read"]
    follower.streams[0].event("MODIFIED", changed)
    two = next(r for t in follower.keys.tables.values() for r in t.values()
               if r.name == "two")
    assert two.scopes == {"Reviews.Read"}
    assert one.scopes == {"Reviews.Write", "Repos.Read"}
    assert dict(two.identity)[b"x-keywright-scopes"] == b"Reviews.Read"
