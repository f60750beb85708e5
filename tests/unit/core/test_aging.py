"""aging.judge as tables with a fixed clock: expiry warnings, never-used keys, unused keys."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keywright.core import aging, conditions, durations, models, policy

CREATED = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
EXPIRES = CREATED + 30 * DAY
KEY = aging.Key(preview="kw_...x9Qa", created=CREATED, expires=EXPIRES, last_used=None,
                reactivated=None, warned=None, used=None, unused_after=None, live=True)
WATCH = aging.Watch(expiry_warnings=(14 * DAY, DAY), never_used_after=7 * DAY)


def key(**changes: Any) -> aging.Key:
    return dataclasses.replace(KEY, **changes)


def kinds(told: aging.Aging) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in told.conditions}


def reasons(told: aging.Aging) -> list[str]:
    return [e.reason for e in told.events]


NEVER_USED = conditions.false(aging.USED, aging.NEVER_USED, "m")

# -- ExpiringSoon: (what, key, now, condition, event reasons, expiryWarning, next due) ----
EXPIRY_ROWS = [
    ("a key 20 days from expiry says nothing yet and wakes at 14 days before",
     KEY, CREATED + 10 * DAY, None, [], None, EXPIRES - 14 * DAY),
    ("at 14 days before expiry it is ExpiringSoon, with one warning, waking at 1 day before",
     KEY, EXPIRES - 14 * DAY, ("True", "ExpiringSoon"), ["ExpiringSoon"], "14d",
     EXPIRES - DAY),
    ("a 14-day warning already told is not told again",
     key(warned="14d"), EXPIRES - 10 * DAY, ("True", "ExpiringSoon"), [], None, EXPIRES - DAY),
    ("crossing 1 day before expiry is the second warning",
     key(warned="14d"), EXPIRES - DAY, ("True", "ExpiringSoon"), ["ExpiringSoon"], "1d", None),
    ("both thresholds crossed at once (the operator was away) make one warning, the 1-day",
     KEY, EXPIRES - timedelta(hours=2), ("True", "ExpiringSoon"), ["ExpiringSoon"], "1d",
     None),
    ("an expired key drops the condition and wakes for nothing more",
     key(warned="1d"), EXPIRES, None, [], None, None),
    ("a key that never expires never warns",
     key(expires=None), CREATED + 400 * DAY, None, [], None, None),
    ("a key made to live 3 days is ExpiringSoon from birth but warned only at 1 day before",
     key(expires=CREATED + 3 * DAY), CREATED, ("True", "ExpiringSoon"), [], "14d",
     CREATED + 2 * DAY),
    ("... and at 1 day before, it is",
     key(expires=CREATED + 3 * DAY, warned="14d"), CREATED + 2 * DAY,
     ("True", "ExpiringSoon"), ["ExpiringSoon"], "1d", None),
    ("an inactive key is ExpiringSoon but not warned about",
     key(live=False), EXPIRES - 14 * DAY, ("True", "ExpiringSoon"), [], "14d", EXPIRES - DAY),
    ("the 1-day warning told, nothing more is told until expiry",
     key(warned="1d"), EXPIRES - timedelta(hours=1), ("True", "ExpiringSoon"), [], None, None),
]


@pytest.mark.parametrize(("what", "it", "now", "condition", "events", "warned", "due"),
                         EXPIRY_ROWS, ids=[r[0] for r in EXPIRY_ROWS])
def test_expiry_warnings(what: str, it: aging.Key, now: datetime,
                         condition: tuple[str, str] | None, events: list[str],
                         warned: str | None, due: datetime | None) -> None:
    told = aging.judge(it, dataclasses.replace(WATCH, never_used_after=None), now)
    assert kinds(told).get("ExpiringSoon") == condition
    if condition is None:
        assert "ExpiringSoon" in told.dropped
    assert reasons(told) == events
    assert told.status.get("expiryWarning") == warned
    assert told.next_due == due


def test_the_warning_names_the_key_its_instant_and_the_threshold() -> None:
    told = aging.judge(KEY, WATCH, EXPIRES - 14 * DAY)
    assert told.events[0].type == "Warning"
    assert told.events[0].message.startswith(
        "Key kw_...x9Qa expires at 2026-12-01T12:00:00Z, in less than 14d")
    assert told.conditions[0].message == \
        "key kw_...x9Qa expires at 2026-12-01T12:00:00Z, within 14d"


def test_thresholds_in_seconds_are_spelled_as_given() -> None:
    watch = aging.Watch(expiry_warnings=(timedelta(seconds=20), timedelta(seconds=10)),
                        never_used_after=None)
    short = key(expires=CREATED + timedelta(seconds=30))
    told = aging.judge(short, watch, CREATED + timedelta(seconds=11))
    assert told.status == {"expiryWarning": "20s"}
    assert told.next_due == CREATED + timedelta(seconds=20)


def test_no_thresholds_means_no_condition() -> None:
    told = aging.judge(KEY, aging.QUIET, EXPIRES - DAY)
    assert told.conditions == ()
    assert set(told.dropped) == {"ExpiringSoon", "Used"}


# -- Used: (what, key, now, condition, events, next due) ---------------------------------
USED_ROWS = [
    ("a new key unused for less than 7 days says nothing and wakes at 7 days",
     KEY, CREATED + 3 * DAY, None, [], CREATED + 7 * DAY),
    ("unused 7 days after creation it is NeverUsed, with one warning",
     KEY, CREATED + 7 * DAY, ("False", "NeverUsed"), ["NeverUsed"], None),
    ("NeverUsed already said is not warned again",
     key(used=NEVER_USED), CREATED + 8 * DAY, ("False", "NeverUsed"), [], None),
    ("a key used within its first 7 days never gets the condition",
     key(last_used=CREATED + DAY), CREATED + 20 * DAY, None, [], None),
    ("a NeverUsed key used at last is Used, with a Normal event",
     key(used=NEVER_USED, last_used=CREATED + 9 * DAY), CREATED + 9 * DAY,
     ("True", "Used"), ["Used"], None),
    ("an inactive key nobody uses says nothing new",
     key(live=False), CREATED + 8 * DAY, None, [], None),
]


@pytest.mark.parametrize(("what", "it", "now", "condition", "events", "due"), USED_ROWS,
                         ids=[r[0] for r in USED_ROWS])
def test_never_used(what: str, it: aging.Key, now: datetime,
                    condition: tuple[str, str] | None, events: list[str],
                    due: datetime | None) -> None:
    told = aging.judge(it, dataclasses.replace(WATCH, expiry_warnings=()), now)
    assert kinds(told).get("Used") == condition
    assert reasons(told) == events
    assert told.next_due == due


# -- unused deactivation: (what, key, now, deactivated?, next due) ------------------------
WINDOW = (30 * DAY, "spec.deactivateAfterUnused 30d")
UNUSED_ROWS = [
    ("a key with no window is never deactivated as unused",
     key(expires=None), CREATED + 400 * DAY, False, None),
    ("a key never used is deactivated 30 days after creation",
     key(expires=None, unused_after=WINDOW), CREATED + 30 * DAY, True, None),
    ("... and before that, wakes at that instant",
     key(expires=None, unused_after=WINDOW), CREATED + 29 * DAY, False, CREATED + 30 * DAY),
    ("a use moves the deadline to 30 days after it",
     key(expires=None, unused_after=WINDOW, last_used=CREATED + 20 * DAY),
     CREATED + 30 * DAY, False, CREATED + 50 * DAY),
    ("a key last used 30 days ago is deactivated",
     key(expires=None, unused_after=WINDOW, last_used=CREATED + 20 * DAY),
     CREATED + 50 * DAY, True, None),
    ("a reactivation restarts the clock",
     key(expires=None, unused_after=WINDOW, last_used=CREATED + DAY,
         reactivated=CREATED + 60 * DAY), CREATED + 70 * DAY, False, CREATED + 90 * DAY),
    ("a key already inactive for another reason is left to that reason",
     key(expires=None, unused_after=WINDOW, live=False), CREATED + 40 * DAY, False, None),
]


@pytest.mark.parametrize(("what", "it", "now", "deactivated", "due"), UNUSED_ROWS,
                         ids=[r[0] for r in UNUSED_ROWS])
def test_unused_keys(what: str, it: aging.Key, now: datetime, deactivated: bool,
                     due: datetime | None) -> None:
    told = aging.judge(it, aging.QUIET, now)
    assert (told.unused is not None) == deactivated
    assert told.next_due == due


def test_the_unused_message_says_since_when_and_which_setting() -> None:
    told = aging.judge(key(expires=None, unused_after=WINDOW, last_used=CREATED + DAY),
                       aging.QUIET, CREATED + 40 * DAY)
    assert told.unused == ("unused: last used at 2026-11-02T12:00:00Z, 30d ago or more "
                           "(spec.deactivateAfterUnused 30d)")


def _policy(name: str, unused: str | None) -> policy.Policy:
    return policy.Policy(name, models.validate_policy_spec(
        {"deactivateAfterUnused": unused} if unused else {}))


WINDOW_ROWS = [
    ("the key's own setting wins over any policy default",
     {"deactivateAfterUnused": "90d"}, [_policy("p", "30d")],
     (90 * DAY, "spec.deactivateAfterUnused 90d")),
    ("without one, the shortest policy default applies, named",
     {}, [_policy("long", "180d"), _policy("short", "60d"), _policy("none", None)],
     (60 * DAY, "ApiKeyPolicy short's deactivateAfterUnused 60d")),
    ("with neither, there is no window", {}, [_policy("none", None)], None),
]


@pytest.mark.parametrize(("what", "spec", "policies", "window"), WINDOW_ROWS,
                         ids=[r[0] for r in WINDOW_ROWS])
def test_where_the_unused_window_comes_from(
        what: str, spec: dict[str, Any], policies: list[policy.Policy],
        window: tuple[timedelta, str] | None) -> None:
    parsed = models.validate_spec({"expiration": "Never", **spec})
    assert aging.unused_window(parsed, tuple(policies)) == window


@pytest.mark.parametrize("text", ["0d", "-1d", "90", "1w", "Never"])
def test_a_bad_window_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(models.SpecError) as found:
        models.validate_spec({"expiration": "Never", "deactivateAfterUnused": text})
    assert "spec.deactivateAfterUnused" in str(found.value)
    with pytest.raises(models.SpecError) as found:
        models.validate_policy_spec({"deactivateAfterUnused": text})
    assert "spec.deactivateAfterUnused" in str(found.value)


@pytest.mark.parametrize(("text", "spelled"), [("14d", "14d"), ("36h", "36h"),
                                                ("120m", "2h"), ("90s", "90s"), ("0s", "0s")])
def test_durations_are_spelled_shortest(text: str, spelled: str) -> None:
    assert durations.format(durations.parse(text)) == spelled
