"""A list response is read one object at a time as its bytes arrive
(`kube.list_items`): the same objects, and the same other members, however the body is
cut into pieces; a body that is cut short or malformed is an error, never a short list."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from keywright import kube

LIST: dict[str, Any] = {
    "apiVersion": "keywright.dev/v1alpha1",
    "items": [{"metadata": {"name": f"key-{i}", "uid": str(i)},
               "spec": {"scopes": ["Reviews.Read"], "context": {"team": "zü✓" * i},
                        "rateLimit": {"requests": i, "period": "1m"}, "active": i % 2 == 0,
                        "ratio": i / 7, "none": None}} for i in range(40)],
    "kind": "ApiKeyList",
    "metadata": {"continue": "next-page", "resourceVersion": "1234"},
}


def read(body: bytes, cuts: list[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    rest: dict[str, Any] = {}
    return list(kube.list_items(pieces, rest)), rest


@pytest.mark.parametrize("indent", [None, 1], ids=["compact", "indented"])
@pytest.mark.parametrize("seed", range(25))
def test_objects_cut_anywhere_into_pieces_are_read_whole(indent: int | None, seed: int,
                                                        ) -> None:
    body = json.dumps(LIST, indent=indent, ensure_ascii=False).encode()
    chance = random.Random(seed)
    cuts = sorted(chance.sample(range(1, len(body)), chance.randint(0, 60)))
    items, rest = read(body, cuts)
    assert items == LIST["items"]
    assert rest == {k: v for k, v in LIST.items() if k != "items"}


def test_a_piece_of_one_byte_at_a_time_splits_every_character() -> None:
    body = json.dumps({**LIST, "items": LIST["items"][:3]}, ensure_ascii=False).encode()
    items, rest = read(body, list(range(1, len(body))))
    assert items == LIST["items"][:3]
    assert rest["metadata"]["resourceVersion"] == "1234"


@pytest.mark.parametrize(("body", "items", "rest"), [
    pytest.param(b'{"items":[]}', [], {}, id="an empty list"),
    pytest.param(b'{"items":null,"metadata":{}}', [], {"items": None, "metadata": {}},
                 id="items null (no objects)"),
    pytest.param(b'{"metadata":{"resourceVersion":"9"},"items":[{"a":1}]}', [{"a": 1}],
                 {"metadata": {"resourceVersion": "9"}}, id="metadata before the items"),
    pytest.param(b' {"items" : [ {"a":1} , {"b":2} ] , "n" : 12 } ', [{"a": 1}, {"b": 2}],
                 {"n": 12}, id="blanks everywhere and a number last"),
])
def test_list_documents_of_every_shape(body: bytes, items: list[Any],
                                       rest: dict[str, Any]) -> None:
    assert read(body, []) == (items, rest)


@pytest.mark.parametrize("body", [
    pytest.param(b"", id="nothing"),
    pytest.param(b'{"items":[{"a":1}', id="the array is not closed"),
    pytest.param(b'{"items":[{"a":1},', id="ends after a comma"),
    pytest.param(b'{"items":[{"a":1', id="ends inside an object"),
    pytest.param(b'{"items":[],"metadata":{"resourceVersion":"9"}', id="the list is not closed"),
    pytest.param(b'["items"]', id="not an object"),
    pytest.param(b'{"items":[{"a":1}}', id="a brace closes the array"),
])
def test_a_cut_short_or_malformed_list_is_an_error(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        read(body, [len(body) // 2] if len(body) > 1 else [])
