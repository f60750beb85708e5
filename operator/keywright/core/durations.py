"""Durations as the contract writes them: `<n>s|m|h|d`, and `Never` for expiration.

Owns: parsing and formatting durations, the presets. Pure.
"""

from __future__ import annotations

import re
from datetime import timedelta

NEVER = "Never"
PATTERN = r"^[0-9]+[smhd]$"
POSITIVE_PATTERN = r"^[1-9][0-9]*[smhd]$"
EXPIRATION_PATTERN = r"^(Never|[1-9][0-9]*[smhd])$"
PRESETS = ("1h", "1d", "7d", "30d", "90d", "180d", "360d")
# Far enough for any key, near enough that adding it to a date never overflows.
LONGEST = timedelta(days=100 * 366)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHAPE = re.compile(r"([0-9]+)([smhd])")
_DIGITS = 12  # more digits are past LONGEST in any unit; int() of them is never attempted


class DurationError(ValueError):
    """Not a duration of the contract's grammar, or too long."""


def parse(text: str) -> timedelta:
    """`90d` -> 90 days. Raises DurationError for anything else, with the reason."""
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise DurationError(f"{text!r} is not a duration: write <n>s, <n>m, <n>h or <n>d")
    digits = match.group(1)
    if len(digits) > _DIGITS or int(digits) * _UNITS[match.group(2)] > LONGEST.total_seconds():
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise DurationError(f"{shown!r} is longer than the longest allowed duration (36600d)")
    return timedelta(seconds=int(digits) * _UNITS[match.group(2)])


def parse_expiration(text: str) -> timedelta | None:
    """`Never` -> None; otherwise a positive duration."""
    if text == NEVER:
        return None
    value = parse(text)
    if not value:
        raise DurationError(f"{text!r}: an expiration must be longer than 0; or use Never")
    return value


def format(value: timedelta) -> str:
    """The contract's shortest spelling: 14 days -> `14d`, 36 hours -> `36h`, 90 s ->
    `90s`."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
