"""Every key the operator can issue verifies, and nothing else does (Hypothesis).

The oracle is tests/support/contract.py, an independent reading of the key format: a
prefix as the contract allows it, 43 base62 characters, a base62 CRC32 check. No bound
here comes from the code under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keywright.core import tokens
from keywright.verifier import decision, index
from tests.support import contract
from tests.support.keys import NOW, PEPPERS, apikey

prefixes = st.from_regex(rf"\A{contract.PREFIX}\Z")


def verify(presented: str | bytes, issued: str, prefix: str) -> str:
    keys = index.Index()
    keys.replace_all([apikey(key=issued, prefix=prefix)])
    raw = presented.encode("utf-8") if isinstance(presented, str) else presented
    ask = decision.Ask({"x-api-key": [raw]}, "203.0.113.9", frozenset(), None)
    return decision.decide(ask, keys, PEPPERS, NOW).code


@given(prefixes)
def test_every_key_the_operator_can_issue_has_the_contracts_shape_and_verifies(
    prefix: str
) -> None:
    issued = tokens.generate(prefix)
    assert contract.well_formed(issued)
    assert contract.SHORTEST_KEY <= len(issued) <= contract.LONGEST_KEY
    assert verify(issued, issued, prefix) == "OK"


@pytest.mark.parametrize("length", range(2, 17), ids=lambda n: f"a {n}-character prefix")
def test_a_key_with_a_prefix_of_any_allowed_length_verifies(length: int) -> None:
    prefix = ("k" + "0123456789abcdef")[:length]
    issued = tokens.generate(prefix)
    assert len(issued) == length + 1 + contract.BODY_LENGTH + contract.CHECK_LENGTH
    assert verify(issued, issued, prefix) == "OK"
    keys = index.Index()
    keys.replace_all([apikey(key=issued, prefix=prefix)])
    bearer = decision.Ask({"authorization": [b"Bearer " + issued.encode()]}, "203.0.113.9",
                          frozenset(), None)
    assert decision.decide(bearer, keys, PEPPERS, NOW).code == "OK"


def _changed(issued: str, data: st.DataObject) -> str:
    how = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate", "extend"]))
    at = data.draw(st.integers(0, len(issued) - 1))
    character = data.draw(st.sampled_from(contract.ALPHABET + "_-+/= "))
    if how == "replace":
        return issued[:at] + character + issued[at + 1:]
    if how == "delete":
        return issued[:at] + issued[at + 1:]
    if how == "insert":
        return issued[:at] + character + issued[at:]
    if how == "truncate":
        return issued[:at]
    return issued + character


@given(prefixes, st.data())
def test_any_string_that_differs_from_the_issued_key_does_not_verify(
    prefix: str, data: st.DataObject
) -> None:
    issued = tokens.generate(prefix)
    presented = _changed(issued, data)
    if presented.strip(" ") == issued:
        return  # the same character again, or a blank HTTP trims from a header value
    code = verify(presented, issued, prefix)
    assert code != "OK"
    # a string the contract calls malformed is never hashed or looked up
    if not contract.well_formed(presented.strip()):
        assert code in ("MALFORMED_KEY", "MISSING_KEY")
    else:
        assert code == "INVALID_KEY"


@given(st.text(min_size=1, max_size=200))
def test_arbitrary_text_never_verifies_against_an_issued_key(text: str) -> None:
    issued = tokens.generate("kw")
    if text == issued:
        return
    code = verify(text.encode("utf-8", "surrogatepass"), issued, "kw")
    assert code != "OK"


@given(st.text(alphabet=contract.ALPHABET + "_", min_size=contract.LONGEST_KEY + 1,
               max_size=contract.LONGEST_KEY + 64))
def test_a_value_longer_than_the_longest_key_is_malformed(text: str) -> None:
    for header in ({"x-api-key": [text.encode()]},
                   {"authorization": [b"Bearer " + text.encode()]}):
        assert decision.extract_key(header) == (None, "MALFORMED_KEY")


@given(st.text(alphabet=contract.ALPHABET + "_", min_size=1, max_size=contract.LONGEST_KEY))
def test_a_value_no_longer_than_the_longest_key_reaches_the_shape_check(text: str) -> None:
    assert decision.extract_key({"x-api-key": [text.encode()]}) == (text.encode(), None)
