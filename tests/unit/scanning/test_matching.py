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
ENCODED = Plaintext(leaks.base64_of(KEY))
ENV_ENCODED = Plaintext(leaks.base64_of(f"A=1\nAPI_KEY={KEY}\nB={OTHER}\n"))


def secrets_in(text: str) -> list[Plaintext]:
    """What `matching.secrets_in` hands out, redacted in any failure's output."""
    return [Plaintext(key) for key in matching.secrets_in(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(KEY, [(1, SHOWN, None)], id="a key alone is found"),
        pytest.param(f"a\nb\n{KEY}\n", [(3, SHOWN, None)],
                     id="a key on the third line is on line 3"),
        pytest.param(f"x = '{KEY}'", [(1, SHOWN, None)], id="a key in quotes is found"),
        pytest.param(f'{{"apiKey":"{KEY}"}}', [(1, SHOWN, None)], id="a key in JSON is found"),
        pytest.param(f"API_KEY={KEY}", [(1, SHOWN, None)], id="a key after = is found"),
        pytest.param(f"Authorization: Bearer {KEY}\r\n", [(1, SHOWN, None)],
                     id="a key before a CRLF line end is found"),
        pytest.param(f"https://x.test/?key={KEY}&page=2", [(1, SHOWN, None)],
                     id="a key in a URL's query is found"),
        pytest.param(f"\u00e9{KEY}\u00e9", [(1, SHOWN, None)],
                     id="non-ASCII letters around a key are not word characters, as in RE2"),
        pytest.param(f"{KEY} {OTHER}", [(1, SHOWN, None), (1, OTHER_SHOWN, None)],
                     id="two keys on one line are both found, in order"),
        pytest.param(f"{KEY}\n\n\n{OTHER}\n{KEY}",
                     [(1, SHOWN, None), (4, OTHER_SHOWN, None), (5, SHOWN, None)],
                     id="each occurrence is found on its own line"),
        pytest.param("", [], id="nothing is found in nothing"),
        pytest.param(f"data:\n  api-key: {ENCODED}\n", [(2, SHOWN, "base64")],
                     id="a key in base64, as a Secret's data, is found on its line"),
        pytest.param(f"data:\n  api-key: {ENCODED.rstrip('=')}\n", [(2, SHOWN, "base64")],
                     id="base64 without its padding is read too"),
        pytest.param(f".env: {ENV_ENCODED}", [(1, SHOWN, "base64"), (1, OTHER_SHOWN, "base64")],
                     id="keys inside the base64 of a longer text are found, in order"),
        pytest.param(f"{OTHER}\n{ENCODED}\n{KEY}", [(1, OTHER_SHOWN, None), (2, SHOWN, "base64"),
                                                   (3, SHOWN, None)],
                     id="plain and base64 keys are found in the order they are written"),
        pytest.param(f"x{ENCODED}", [], id="base64 inside a longer word is not decoded"),
        pytest.param("\n" * 5, [], id="nothing is found in blank lines"),
    ],
)
def test_keys_are_found_on_their_lines(text: str,
                                       expected: list[tuple[int, str, str | None]]) -> None:
    found = list(matching.found_in(text))
    assert [(f.line, f.preview, f.encoding) for f in found] == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"?next=%2Fhome%3Fkey%3D{KEY}", id="a key right after a percent escape"),
        pytest.param(f'{{"env": "A=1\\n{KEY}\\n"}}', id="a key right after a JSON \\n"),
        pytest.param(f"{ENCODED[:40]}\n{ENCODED[40:]}", id="base64 wrapped over two lines"),
    ],
)
def test_the_misses_the_docs_own_up_to(text: str) -> None:
    """docs/scanning.md: the end of an escape is a word character, so no word boundary
    follows it; base64 is read a line at a time."""
    assert list(matching.found_in(text)) == []


@pytest.mark.parametrize("miss", [pytest.param(m, id=m.id) for m in leaks.near_misses()])
def test_a_look_alike_is_not_a_key(miss: leaks.NearMiss) -> None:
    assert secrets_in(miss.text) == []
    assert list(matching.found_in(f"before\n{miss.text} after")) == []


@pytest.mark.parametrize("miss", [pytest.param(m, id=m.id) for m in leaks.near_misses()])
def test_a_look_alike_beside_a_key_hides_nothing(miss: leaks.NearMiss) -> None:
    assert secrets_in(f"{miss.text} {KEY}\n{miss.text}") == [KEY]


def test_keys_in_hands_out_the_keys_themselves() -> None:
    assert secrets_in(f"{KEY},{OTHER}") == [KEY, OTHER]


def test_what_is_found_holds_no_key() -> None:
    found = next(matching.found_in(KEY))
    assert KEY not in repr(found)
    assert KEY[3:-4] not in found.preview
