"""Which stretches of a text are Keywright keys: the shape between word boundaries, then
the checksum. Pure: tables of texts, with keys made when the tests run."""

from __future__ import annotations

import pytest

from keywright.core import tokens
from keywright.scanning import matching
from tests.support import leaks
from tests.support.k8s import Plaintext

KEY = Plaintext(tokens.generate("kw"))
OTHER = Plaintext(tokens.generate("acme"))
SHOWN = f"kw_...{KEY[-4:]}"
OTHER_SHOWN = f"acme_...{OTHER[-4:]}"


def keys_in(text: str) -> list[Plaintext]:
    """What `matching.keys_in` hands out, redacted in any failure's output."""
    return [Plaintext(key) for key in matching.keys_in(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(KEY, [(1, SHOWN)], id="a key alone is found"),
        pytest.param(f"a\nb\n{KEY}\n", [(3, SHOWN)], id="a key on the third line is on line 3"),
        pytest.param(f"x = '{KEY}'", [(1, SHOWN)], id="a key in quotes is found"),
        pytest.param(f'{{"apiKey":"{KEY}"}}', [(1, SHOWN)], id="a key in JSON is found"),
        pytest.param(f"API_KEY={KEY}", [(1, SHOWN)], id="a key after = is found"),
        pytest.param(f"Authorization: Bearer {KEY}\r\n", [(1, SHOWN)],
                     id="a key before a CRLF line end is found"),
        pytest.param(f"https://x.test/?key={KEY}&page=2", [(1, SHOWN)],
                     id="a key in a URL's query is found"),
        pytest.param(f"\u00e9{KEY}\u00e9", [(1, SHOWN)],
                     id="non-ASCII letters around a key are not word characters, as in RE2"),
        pytest.param(f"{KEY} {OTHER}", [(1, SHOWN), (1, OTHER_SHOWN)],
                     id="two keys on one line are both found, in order"),
        pytest.param(f"{KEY}\n\n\n{OTHER}\n{KEY}", [(1, SHOWN), (4, OTHER_SHOWN), (5, SHOWN)],
                     id="each occurrence is found on its own line"),
        pytest.param("", [], id="nothing is found in nothing"),
        pytest.param("\n" * 5, [], id="nothing is found in blank lines"),
    ],
)
def test_keys_are_found_on_their_lines(text: str, expected: list[tuple[int, str]]) -> None:
    found = list(matching.found_in(text))
    assert [(f.line, f.preview) for f in found] == expected


@pytest.mark.parametrize("miss", [pytest.param(m, id=m.id) for m in leaks.near_misses()])
def test_a_look_alike_is_not_a_key(miss: leaks.NearMiss) -> None:
    assert keys_in(miss.text) == []
    assert list(matching.found_in(f"before\n{miss.text} after")) == []


@pytest.mark.parametrize("miss", [pytest.param(m, id=m.id) for m in leaks.near_misses()])
def test_a_look_alike_beside_a_key_hides_nothing(miss: leaks.NearMiss) -> None:
    assert keys_in(f"{miss.text} {KEY}\n{miss.text}") == [KEY]


def test_keys_in_hands_out_the_keys_themselves() -> None:
    assert keys_in(f"{KEY},{OTHER}") == [KEY, OTHER]


def test_what_is_found_holds_no_key() -> None:
    found = next(matching.found_in(KEY))
    assert KEY not in repr(found)
    assert KEY[3:-4] not in found.preview
