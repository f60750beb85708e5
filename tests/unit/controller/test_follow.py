"""What the operator's lists and watch events of ApiKeys and Secrets mean: a list, at
start or after a watch expired, hands on only what changed while no watch was open."""

from __future__ import annotations

from typing import Any

import pytest

from keywright.controller import follow


def obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "pay", "name": name, "resourceVersion": version}}


def seen_after(*steps: tuple[str, list[dict[str, Any]] | tuple[str, dict[str, Any]]],
               ) -> list[tuple[str | None, str]]:
    handed: list[tuple[str | None, str]] = []
    seen = follow._Seen(lambda kind, namespace, name, body: handed.append((kind, name)))
    for step, what in steps:
        handed.clear()
        if step == "list":
            seen.listed(what)  # type: ignore[arg-type]
        else:
            seen.event(*what)
    return handed


@pytest.mark.parametrize(("steps", "handed"), [
    pytest.param([("list", [obj("a", "1"), obj("b", "2")])], [(None, "a"), (None, "b")],
                 id="the first list: every object is a first sight"),
    pytest.param([("list", [obj("a", "1"), obj("b", "2")]),
                  ("list", [obj("a", "1"), obj("b", "5")])], [("MODIFIED", "b")],
                 id="a list again: an object at another version changed, one at the same "
                    "did not"),
    pytest.param([("list", [obj("a", "1"), obj("b", "2")]), ("list", [obj("b", "2")])],
                 [("DELETED", "a")], id="a list again: an object gone from it was deleted"),
    pytest.param([("list", [obj("a", "1")]), ("list", [obj("a", "1"), obj("c", "3")])],
                 [(None, "c")], id="a list again: an object never seen is a first sight"),
    pytest.param([("list", []), ("event", ("ADDED", obj("a", "1"))),
                  ("list", [obj("a", "1")])], [],
                 id="an object a watch event brought is known to the next list"),
    pytest.param([("list", [obj("a", "1")]), ("event", ("DELETED", obj("a", "1"))),
                  ("list", [obj("a", "1")])], [(None, "a")],
                 id="one deleted, then listed again (created anew), is a first sight"),
])
def test_lists_hand_on_what_changed_while_no_watch_was_open(
        steps: list[tuple[str, Any]], handed: list[tuple[str | None, str]]) -> None:
    assert seen_after(*steps) == handed


class Reconciler:
    def __init__(self) -> None:
        self.told: list[tuple[str, str, str, bool]] = []

    def secret_listed(self, namespace: str, apikey: str, secret: Any) -> None:
        self.told.append(("listed", namespace, apikey, secret is not None))

    def secret_changed(self, namespace: str, apikey: str, secret: Any) -> None:
        self.told.append(("changed", namespace, apikey, secret is not None))


def secrets_of(follower: follow.Follower) -> Any:
    return follower.secrets[0]


def mine(version: str = "1") -> dict[str, Any]:
    found = obj("billing-key", version)
    found["metadata"]["labels"] = {"keywright.dev/apikey": "billing"}
    return found


def test_secrets_listed_before_the_keys_are_kept_for_the_keys_first_reconcile() -> None:
    """The keys' own first sight reconciles them; their Secrets, listed first, are
    handed over to be used then, and ask for no reconcile of their own."""
    reconciler = Reconciler()
    follower = follow.Follower(None, reconciler, None)  # type: ignore[arg-type]
    pepper = obj("keywright-pepper", "2")  # labelled as ours, but no key's
    secrets_of(follower).replace([mine(), pepper])
    assert reconciler.told == [("listed", "pay", "billing", True)]


def test_once_the_keys_are_followed_a_secret_seen_is_a_change() -> None:
    """A Secret gone while no watch was open is told to its key too: its labels are
    gone with it, so the follower remembers whose it was."""
    reconciler = Reconciler()
    follower = follow.Follower(None, reconciler, None)  # type: ignore[arg-type]
    follower._keys_listed.set()
    secrets_of(follower).replace([mine(), obj("keywright-pepper", "2")])
    secrets_of(follower).event("MODIFIED", mine("3"))
    secrets_of(follower).replace([obj("keywright-pepper", "2")])
    assert reconciler.told == [("changed", "pay", "billing", True)] * 2 + [
        ("changed", "pay", "billing", False)]
