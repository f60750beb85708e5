"""The key format of the contract: `<prefix>_<body><check>`, base62, CRC32 check."""

from __future__ import annotations

import re
import secrets

import pytest

from keywright.core import tokens
from tests.support import contract

# Written out from the contract (tests/support/contract.py), not imported from the
# module under test.
MAX_BODY = "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1"  # 2**256 - 1, worked out by hand
BODY = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"  # 43 characters


VALID = contract.make("kw", BODY)


def with_character(token: str, index: int, character: str) -> str:
    return token[:index] + character + token[index + 1:]


@pytest.mark.parametrize(
    ("number", "width", "expected"),
    [
        pytest.param(0, 3, "000", id="zero is all padding"),
        pytest.param(0, 0, "", id="zero in width zero is the empty string"),
        pytest.param(9, 1, "9", id="the digits come first"),
        pytest.param(10, 1, "A", id="ten is the first upper-case letter"),
        pytest.param(35, 1, "Z", id="thirty-five is the last upper-case letter"),
        pytest.param(36, 1, "a", id="thirty-six is the first lower-case letter"),
        pytest.param(61, 1, "z", id="sixty-one is the last digit"),
        pytest.param(62, 2, "10", id="sixty-two carries into a second digit"),
        pytest.param(62, 5, "00010", id="padding goes on the left"),
        pytest.param(63, 2, "11", id="the most significant digit is written first"),
        pytest.param(62 * 62 - 1, 2, "zz", id="the largest two-digit number is zz"),
        pytest.param(62**3, 4, "1000", id="a power of 62 is a one and zeros"),
        pytest.param(10 * 62 + 36, 2, "Aa", id="mixed digits keep their order"),
        pytest.param(0xCBF43926, 6, "3jZRME", id="the CRC32 check value of 123456789"),
        pytest.param(2**32 - 1, 6, "4gfFC3", id="the largest CRC32 fits six characters"),
        pytest.param(2**256 - 1, 43, MAX_BODY, id="the largest body fits 43 characters"),
    ],
)
def test_base62_known_vectors(number: int, width: int, expected: str) -> None:
    assert tokens.base62(number, width) == expected
    assert contract.base62(number, width) == expected


@pytest.mark.parametrize(
    "digit", [pytest.param(d, id=f"digit {d} is {contract.ALPHABET[d]}") for d in range(62)]
)
def test_base62_digit_order_is_digits_upper_lower(digit: int) -> None:
    assert tokens.base62(digit, 1) == contract.ALPHABET[digit]


def test_the_alphabet_constant_is_the_contract_alphabet() -> None:
    assert tokens.ALPHABET == contract.ALPHABET


@pytest.mark.parametrize(
    ("number", "width"),
    [
        pytest.param(-1, 3, id="negative numbers are refused"),
        pytest.param(62, 1, id="a number needing two digits does not fit in one"),
        pytest.param(2**256, 42, id="the largest body does not fit 42 characters"),
    ],
)
def test_base62_refuses(number: int, width: int) -> None:
    with pytest.raises(ValueError, match=r"base62|do not fit"):
        tokens.base62(number, width)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "000000", id="CRC32 of nothing is zero, padded to six"),
        pytest.param("123456789", "3jZRME", id="the standard CRC32 check string"),
        pytest.param(f"kw_{BODY}", contract.check(f"kw_{BODY}"),
                     id="a prefix and body, as the contract computes it"),
        pytest.param("kw_" + "0" * 43, contract.check("kw_" + "0" * 43),
                     id="an all-zero body"),
    ],
)
def test_check_is_base62_crc32_of_prefix_and_body(text: str, expected: str) -> None:
    assert tokens.check(text) == expected
    assert len(tokens.check(text)) == 6


def test_check_changes_with_the_prefix() -> None:
    assert tokens.check(f"kw_{BODY}") != tokens.check(f"kx_{BODY}")


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("kw", id="the default prefix"),
        pytest.param("a1", id="a two-character prefix with a digit"),
        pytest.param("abcdefghijklmnop", id="a sixteen-character prefix"),
    ],
)
def test_generate_matches_the_scanner_regex_and_is_well_formed(prefix: str) -> None:
    token = tokens.generate(prefix)
    assert re.fullmatch(contract.SCANNER_REGEX, token)
    assert re.search(contract.SCANNER_REGEX, f"export KEY={token};").group(0) == token
    assert tokens.well_formed(token)
    assert token.startswith(f"{prefix}_")
    assert len(token) == len(prefix) + 1 + 43 + 6
    body = token[len(prefix) + 1:-6]
    assert contract.decode(body) < 2**256
    assert token[-6:] == contract.check(f"{prefix}_{body}")
    assert tokens.prefix_of(token) == prefix


def test_the_scanner_regex_constant_is_the_contract_regex() -> None:
    assert tokens.SCANNER_REGEX == contract.SCANNER_REGEX


@pytest.mark.parametrize(
    ("random_bytes", "body"),
    [
        pytest.param(bytes(32), "0" * 43, id="zero bytes give an all-zero body"),
        pytest.param(b"\xff" * 32, MAX_BODY, id="all-ones bytes give the largest body"),
        pytest.param(bytes(31) + b"\x3e", "0" * 41 + "10",
                     id="the bytes are read big-endian"),
    ],
)
def test_generate_reads_32_random_bytes_as_one_big_endian_number(
    random_bytes: bytes, body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []

    def token_bytes(count: int) -> bytes:
        asked.append(count)
        return random_bytes

    monkeypatch.setattr(secrets, "token_bytes", token_bytes)  # what tokens.generate calls
    assert tokens.generate("kw") == contract.make("kw", body)
    assert asked == [32]


def test_two_generated_keys_differ() -> None:
    assert tokens.generate("kw") != tokens.generate("kw")


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="an empty prefix"),
        pytest.param("k", id="a one-character prefix"),
        pytest.param("a" * 17, id="a seventeen-character prefix"),
        pytest.param("KW", id="an upper-case prefix"),
        pytest.param("1kw", id="a prefix starting with a digit"),
        pytest.param("kw_x", id="a prefix containing the separator"),
        pytest.param("kw-x", id="a prefix containing a dash"),
        pytest.param("kw\n", id="a prefix with a trailing newline"),
        pytest.param("k\u00e9", id="a non-ASCII prefix"),
    ],
)
def test_generate_refuses_a_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        tokens.generate(prefix)


def test_the_fixed_valid_key_is_well_formed() -> None:
    assert tokens.well_formed(VALID)


_BODY_AT = len("kw_") + 10  # a character inside the body


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(with_character(VALID, _BODY_AT, "B" if VALID[_BODY_AT] != "B" else "C"),
                     id="a one-character change in the body breaks the check"),
        pytest.param(with_character(VALID, 3, "1" if VALID[3] != "1" else "2"),
                     id="a change in the first body character breaks the check"),
        pytest.param(VALID[:-6] + ("000000" if VALID[-6:] != "000000" else "000001"),
                     id="a wrong check"),
        pytest.param(VALID[:-1] + ("a" if VALID[-1] != "a" else "b"),
                     id="a one-character change in the check"),
        pytest.param(VALID[:-1], id="one character too short"),
        pytest.param(VALID + "0", id="one character too long"),
        pytest.param(contract.make("kw", BODY[:-1]), id="a 42-character body with a right check"),
        pytest.param(contract.make("kw", BODY + "h"), id="a 44-character body with a right check"),
        pytest.param(contract.make("KW", BODY), id="an upper-case prefix with a right check"),
        pytest.param(contract.make("a" * 17, BODY),
                     id="a seventeen-character prefix with a right check"),
        pytest.param(contract.make("k", BODY), id="a one-character prefix with a right check"),
        pytest.param(contract.make("1k", BODY), id="a prefix starting with a digit"),
        pytest.param(contract.make("kw", BODY).replace("_", "-"),
                     id="a dash instead of the separator"),
        pytest.param("", id="the empty string"),
        pytest.param("kw_", id="a prefix alone"),
        pytest.param(with_character(VALID, _BODY_AT, "\u0430"), id="a Cyrillic letter"),
        pytest.param(with_character(VALID, _BODY_AT, "\uff11"), id="a full-width digit"),
        pytest.param("k\u00e9" + VALID[2:], id="a non-ASCII prefix"),
        pytest.param(f" {VALID}", id="a leading space"),
        pytest.param(f"{VALID}\n", id="a trailing newline"),
    ],
)
def test_well_formed_rejects(token: str) -> None:
    assert tokens.well_formed(token) is False


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param(VALID, VALID[-4:], id="the last four characters of a key"),
        pytest.param("kw_" + "0" * 43 + "0Ax9Qa", "x9Qa", id="they come from the check"),
    ],
)
def test_last_characters(token: str, expected: str) -> None:
    assert tokens.last_characters(token) == expected
    assert len(expected) == 4


@pytest.mark.parametrize(
    ("prefix", "last", "expected"),
    [
        pytest.param("kw", "x9Qa", "kw_...x9Qa", id="the contract's example"),
        pytest.param("acme", "0000", "acme_...0000", id="another prefix"),
    ],
)
def test_preview(prefix: str, last: str, expected: str) -> None:
    assert tokens.preview(prefix, last) == expected


def test_preview_of_a_generated_key_shows_only_prefix_and_last_four() -> None:
    token = tokens.generate("kw")
    shown = tokens.preview(tokens.prefix_of(token), tokens.last_characters(token))
    assert shown == f"kw_...{token[-4:]}"
    assert token[3:-4] not in shown
