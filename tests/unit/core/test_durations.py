"""Durations as the contract writes them: `<n>s|m|h|d`, and `Never` for an expiration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keywright.core import durations

LONGEST_DAYS = 36600  # 100 * 366 days


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1s", timedelta(seconds=1), id="seconds"),
        pytest.param("5m", timedelta(minutes=5), id="minutes"),
        pytest.param("2h", timedelta(hours=2), id="hours"),
        pytest.param("90d", timedelta(days=90), id="days"),
        pytest.param("0s", timedelta(0), id="zero is a duration for parse"),
        pytest.param("0d", timedelta(0), id="zero days is zero"),
        pytest.param("007m", timedelta(minutes=7), id="leading zeros are digits like any other"),
        pytest.param("90m", timedelta(hours=1, minutes=30), id="units do not overflow into others"),
        pytest.param(f"{LONGEST_DAYS}d", timedelta(days=LONGEST_DAYS),
                     id="the longest allowed duration itself"),
        pytest.param(f"{LONGEST_DAYS * 86400}s", timedelta(days=LONGEST_DAYS),
                     id="the longest allowed duration in seconds"),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert durations.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("5x", id="an unknown unit"),
        pytest.param("-1d", id="a negative number"),
        pytest.param("+1d", id="a plus sign"),
        pytest.param("1.5h", id="a fraction"),
        pytest.param("1e3s", id="an exponent"),
        pytest.param("", id="the empty string"),
        pytest.param("d", id="a unit without a number"),
        pytest.param("90", id="a number without a unit"),
        pytest.param("90 d", id="a space between number and unit"),
        pytest.param(" 90d", id="a leading space"),
        pytest.param("90d ", id="a trailing space"),
        pytest.param("90d\n", id="a trailing newline"),
        pytest.param("90D", id="an upper-case unit"),
        pytest.param("1h30m", id="compound durations"),
        pytest.param("1w", id="weeks are not a unit"),
        pytest.param("\u0661\u0662d", id="non-ASCII digits"),
        pytest.param("Never", id="Never is an expiration, not a duration"),
    ],
)
def test_parse_refuses_what_is_not_the_grammar(text: str) -> None:
    with pytest.raises(durations.DurationError, match="is not a duration"):
        durations.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"{LONGEST_DAYS + 1}d", id="one day more than 36600 days"),
        pytest.param(f"{LONGEST_DAYS * 86400 + 1}s", id="one second more than 36600 days"),
        pytest.param(f"{LONGEST_DAYS * 24 + 1}h", id="one hour more than 36600 days"),
        pytest.param("9" * 30 + "d", id="a thirty-digit number of days"),
    ],
)
def test_parse_refuses_too_long(text: str) -> None:
    with pytest.raises(durations.DurationError, match=r"longer than the longest .*\(36600d\)"):
        durations.parse(text)


def test_parse_refuses_a_number_too_long_to_convert_with_duration_error() -> None:
    with pytest.raises(durations.DurationError):
        durations.parse("9" * 5000 + "d")


def test_duration_error_is_a_value_error() -> None:
    assert issubclass(durations.DurationError, ValueError)


def test_never_is_no_expiration() -> None:
    assert durations.parse_expiration("Never") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1h", timedelta(hours=1), id="preset 1h"),
        pytest.param("1d", timedelta(days=1), id="preset 1d"),
        pytest.param("7d", timedelta(days=7), id="preset 7d"),
        pytest.param("30d", timedelta(days=30), id="preset 30d"),
        pytest.param("90d", timedelta(days=90), id="preset 90d"),
        pytest.param("180d", timedelta(days=180), id="preset 180d"),
        pytest.param("360d", timedelta(days=360), id="preset 360d"),
        pytest.param("45s", timedelta(seconds=45), id="a custom expiration"),
    ],
)
def test_parse_expiration(text: str, expected: timedelta) -> None:
    assert durations.parse_expiration(text) == expected


def test_the_presets_are_the_contracts() -> None:
    assert durations.PRESETS == ("1h", "1d", "7d", "30d", "90d", "180d", "360d")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("0d", r"'0d': an expiration must be longer than 0; or use Never",
                     id="zero days is refused with a message"),
        pytest.param("0s", r"'0s': an expiration must be longer than 0; or use Never",
                     id="zero seconds is refused with a message"),
        pytest.param("never", "is not a duration", id="never in lower case"),
        pytest.param("NEVER", "is not a duration", id="never in upper case"),
        pytest.param("5x", "is not a duration", id="a bad unit"),
        pytest.param("-1d", "is not a duration", id="a negative expiration"),
        pytest.param(f"{LONGEST_DAYS + 1}d", "longer than the longest",
                     id="an expiration beyond 36600 days"),
    ],
)
def test_parse_expiration_refuses(text: str, message: str) -> None:
    with pytest.raises(durations.DurationError, match=message):
        durations.parse_expiration(text)
