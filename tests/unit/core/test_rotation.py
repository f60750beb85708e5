"""Rotation decisions as tables with a fixed clock: due or not, retire or not, refuse or not."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keywright.core import lifecycle, models, rotation, secretview, times
from tests.support.observed import CREATED, ISSUED, SYNCED, observed

T0 = CREATED  # 2026-11-01T12:00:00Z
ROTATED = {**ISSUED, "rotatedAt": "2026-11-05T12:00:00Z", "revision": 2}


def spec(**fields: Any) -> models.ApiKeySpec:
    return models.validate_spec({"expiration": "30d", **fields})


def status(**fields: Any) -> models.ApiKeyStatus:
    return models.ApiKeyStatus.model_validate({**ISSUED, **fields})


NOW = T0 + timedelta(days=10)  # 2026-11-11T12:00:00Z


@pytest.mark.parametrize(
    ("every", "fields", "expected"),
    [
        pytest.param(None, {}, None, id="no schedule, never due"),
        pytest.param("1d", {"scheduledEvery": "1d"}, T0 + timedelta(days=1),
                     id="first rotation counts from creation"),
        pytest.param("1d", {"scheduledEvery": "1d", "rotatedAt": "2026-11-05T12:00:00Z"},
                     datetime(2026, 11, 6, 12, tzinfo=UTC),
                     id="later ones count from the last rotation"),
        pytest.param("30d", {"scheduledEvery": "30d"}, None,
                     id="a rotation due at or after expiry never comes"),
        pytest.param("29d", {"scheduledEvery": "29d"}, T0 + timedelta(days=29),
                     id="one due a day before expiry comes"),
        pytest.param("1d", {}, NOW + timedelta(days=1),
                     id="a schedule added to an issued key counts from the moment it is added"),
        pytest.param("1d", {"scheduledEvery": "20d"}, NOW + timedelta(days=1),
                     id="a shortened schedule counts from the moment it is shortened"),
        pytest.param("7d", {"scheduledEvery": "12d"}, T0 + timedelta(days=12),
                     id="but never comes after the rotation the old schedule promised"),
        pytest.param("2d", {"scheduledEvery": "1d", "rotatedAt": "2026-11-05T12:00:00Z"},
                     datetime(2026, 11, 7, 12, tzinfo=UTC),
                     id="a lengthened schedule counts from the last rotation"),
        pytest.param("1d", {"scheduledEvery": "1d", "scheduleSince": "2026-11-09T12:00:00Z"},
                     datetime(2026, 11, 10, 12, tzinfo=UTC),
                     id="the moment of a change, once recorded, stays"),
        pytest.param("1d", {"scheduledEvery": "1d", "scheduleSince": "2026-11-03T12:00:00Z",
                            "rotatedAt": "2026-11-05T12:00:00Z"},
                     datetime(2026, 11, 6, 12, tzinfo=UTC),
                     id="a rotation after the change counts from the rotation"),
        pytest.param("1d", {"nextRotationAt": "2026-11-02T12:00:00Z"}, T0 + timedelta(days=1),
                     id="a schedule in force before the change was recorded keeps counting"),
    ],
)
def test_next_rotation(every: str | None, fields: dict[str, Any],
                       expected: datetime | None) -> None:
    rotation_spec = {"every": every} if every else {}
    wanted, before = spec(rotation=rotation_spec), status(**fields)
    got = rotation.next_rotation(wanted, before, T0 + timedelta(days=30),
                                 rotation.schedule_since(wanted, before, NOW))
    assert got == expected


@pytest.mark.parametrize(
    ("rotation_spec", "expected"),
    [
        pytest.param({}, timedelta(0), id="without a schedule or a grace period, none"),
        pytest.param({"gracePeriod": "1h"}, timedelta(hours=1), id="a grace period is kept"),
        pytest.param({"every": "1d", "gracePeriod": "0s"}, timedelta(0),
                     id="0s means what it says, even with a schedule"),
        pytest.param({"every": "1d"}, timedelta(hours=2, minutes=24),
                     id="a schedule's default grace is a tenth of every"),
        pytest.param({"every": "10m"}, timedelta(minutes=1), id="a short schedule's too"),
        pytest.param({"every": "5s"}, timedelta(seconds=1),
                     id="rounded up to whole seconds, as status writes them"),
        pytest.param({"every": "30d"}, timedelta(hours=24),
                     id="but never more than a day"),
    ],
)
def test_grace(rotation_spec: dict[str, Any], expected: timedelta) -> None:
    assert rotation.grace(spec(rotation=rotation_spec)) == expected


@pytest.mark.parametrize(
    ("annotation", "last", "pending"),
    [
        pytest.param(None, None, None, id="no annotation, no request"),
        pytest.param("a", None, "a", id="a first value is a request"),
        pytest.param("a", "a", None, id="a value already acted on is not"),
        pytest.param("b", "a", "b", id="a new value is"),
        pytest.param("", "a", None, id="an empty value is not"),
    ],
)
def test_pending_request(annotation: str | None, last: str | None,
                         pending: str | None) -> None:
    assert rotation.pending_request(annotation, status(lastRotateRequest=last)) == pending


def test_without_grace_the_replaced_key_is_gone_at_once() -> None:
    earlier = {"revision": 0, "hash": "h0", "lastCharacters": "abcd",
               "retiresAt": "2026-11-05T13:00:00Z"}
    got = rotation.previous_after_rotation(status(previous=[earlier]), T0, timedelta(0))
    assert [p.revision for p in got] == [0]  # only what was already in its grace


def test_with_grace_the_replaced_key_joins_previous_until_rotation_plus_grace() -> None:
    earlier = {"revision": 0, "hash": "h0", "lastCharacters": "abcd",
               "retiresAt": "2026-11-01T12:30:00Z"}
    got = rotation.previous_after_rotation(status(previous=[earlier]), T0, timedelta(hours=1))
    assert [(p.revision, p.hash, p.retiresAt) for p in got] == [
        (0, "h0", "2026-11-01T12:30:00Z"),
        (1, ISSUED["hash"], "2026-11-01T13:00:00Z")]


@pytest.mark.parametrize(
    ("now", "kept", "retired"),
    [
        pytest.param(T0 + timedelta(minutes=29, seconds=59), [0, 1], [],
                     id="a second before its retiresAt a key is kept"),
        pytest.param(T0 + timedelta(minutes=30), [1], [0],
                     id="at its retiresAt exactly it retires"),
        pytest.param(T0 + timedelta(hours=2), [], [0, 1], id="later all have retired"),
    ],
)
def test_retire(now: datetime, kept: list[int], retired: list[int]) -> None:
    previous = [models.PreviousKey(revision=0, hash="h0", lastCharacters="aaaa",
                                   retiresAt="2026-11-01T12:30:00Z"),
                models.PreviousKey(revision=1, hash="h1", lastCharacters="bbbb",
                                   retiresAt="2026-11-01T13:00:00Z")]
    got_kept, got_retired = rotation.retire(previous, now)
    assert ([p.revision for p in got_kept], [p.revision for p in got_retired]) == \
        (kept, retired)




@pytest.mark.parametrize(
    ("spec_fields", "annotation", "status_fields", "rotates", "recorded"),
    [
        pytest.param({}, "r1", {}, True, "r1", id="a new request on an active key rotates"),
        pytest.param({}, "r1", {"lastRotateRequest": "r1"}, False, None,
                     id="a request already acted on does nothing"),
        pytest.param({"rotation": {"every": "1d"}}, None, {"scheduledEvery": "1d"}, True, None,
                     id="an overdue schedule rotates"),
        pytest.param({"rotation": {"every": "11d"}}, None, {"scheduledEvery": "11d"}, False,
                     None, id="a schedule not yet due does not"),
        pytest.param({"rotation": {"every": "1d"}}, None, {}, False, None,
                     id="a schedule just added to a ten-day-old key does not rotate it at once"),
        pytest.param({"rotation": {"every": "1d"}}, None, {"scheduledEvery": "30d"}, False,
                     None, id="nor does a schedule just shortened"),
        pytest.param({"active": False}, "r1", {}, False, None, id="inactive: refused"),
        pytest.param({"active": False, "rotation": {"every": "1d"}}, None, {}, False, None,
                     id="inactive: the schedule waits"),
    ],
)
def test_when_a_rotation_is_decided(spec_fields: dict[str, Any], annotation: str | None,
                                    status_fields: dict[str, Any], rotates: bool,
                                    recorded: str | None) -> None:
    o = dataclasses.replace(observed(spec=spec_fields, status={**ISSUED, **status_fields},
                                     secret=SYNCED), rotate_request=annotation)
    plan = lifecycle.decide(o, NOW)
    assert (plan.issue is not None) == rotates
    if plan.issue is not None:
        assert (plan.issue.revision, plan.issue.replace, plan.issue.request) == \
            (2, True, recorded)


def test_an_inactive_key_refuses_a_request_and_records_it() -> None:
    o = dataclasses.replace(observed(spec={"active": False},
                                     status={**ISSUED, "phase": "Inactive"}, secret=SYNCED),
                            rotate_request="r1")
    plan = lifecycle.decide(o, NOW)
    assert plan.issue is None
    assert (plan.status["lastRotateRequest"], plan.status["lastRotateRefused"]) == ("r1", "r1")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RotationRefused")]


def test_an_inactive_keys_schedule_waits_and_a_reactivated_overdue_key_rotates_at_once(
) -> None:
    every = {"rotation": {"every": "1d"}}  # due at 2026-11-02T12:00:00Z, long past at NOW
    asleep = {**ISSUED, "phase": "Inactive", "nextRotationAt": "2026-11-02T12:00:00Z"}
    plan = lifecycle.decide(observed(spec={**every, "active": False}, status=asleep,
                                     secret=SYNCED), NOW)
    assert plan.issue is None
    assert {**asleep, **plan.status}["nextRotationAt"] == "2026-11-02T12:00:00Z"  # stays
    woken = lifecycle.decide(observed(spec=every, status=asleep, secret=SYNCED), NOW)
    assert woken.issue is not None
    assert (woken.issue.revision, woken.issue.replace) == (2, True)


def test_an_expired_key_refuses_a_request_and_records_it() -> None:
    o = dataclasses.replace(observed(status={**ISSUED, "phase": "Expired"}, secret=SYNCED),
                            rotate_request="late")
    plan = lifecycle.decide(o, T0 + timedelta(days=31))
    assert plan.issue is None
    assert plan.status["lastRotateRequest"] == "late"
    assert plan.status["lastRotateRefused"] == "late"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RotationRefused")]
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert "rotation request 'late' was refused" in ready["message"]


def test_a_refusal_is_remembered_in_the_condition_and_not_repeated() -> None:
    refused = {**ISSUED, "phase": "Inactive", "lastRotateRequest": "r1",
               "lastRotateRefused": "r1"}
    o = dataclasses.replace(observed(spec={"active": False}, status=refused, secret=SYNCED),
                            rotate_request="r1")
    plan = lifecycle.decide(o, NOW)
    assert plan.events == ()
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == "spec.active is false; rotation request 'r1' was refused"


@pytest.mark.parametrize(
    ("grace", "previous"),
    [pytest.param("0s", [], id="grace 0: the old hash is gone with the adoption"),
     pytest.param("1h", [(1, "hmac-sha256:v1:abc", "2026-11-11T13:00:00Z")],
                  id="grace 1h: the old hash stays until rotation plus 1h")],
)
def test_adopting_a_rotated_secret(grace: str, previous: list[tuple[int, str, str]]) -> None:
    rotated_secret = dataclasses.replace(
        SYNCED, hash="hmac-sha256:v1:new", revision=2, last_characters="NeWw",
        issued_at="2026-11-11T12:00:00Z", rotate_request="r1")
    o = observed(spec={"rotation": {"gracePeriod": grace}}, status=ISSUED,
                 secret=rotated_secret)
    plan = lifecycle.decide(o, NOW + timedelta(minutes=1))
    assert plan.issue is None
    assert plan.restarts == ()  # not before the new hash is in status
    assert (plan.status["revision"], plan.status["hash"], plan.status["rotatedAt"],
            plan.status["lastRotateRequest"], plan.status["keyPreview"]) == \
        (2, "hmac-sha256:v1:new", "2026-11-11T12:00:00Z", "r1", "kw_...NeWw")
    assert [(p["revision"], p["hash"], p["retiresAt"])
            for p in plan.status.get("previous", [])] == previous
    assert [e.reason for e in plan.events] == ["Rotated"]
    # the next wake-up: the grace key's retirement, or else the key's expiry
    assert plan.next_due == (times.parse(previous[0][2]) if previous
                             else datetime(2026, 12, 1, 12, tzinfo=UTC))


def test_restarts_come_once_the_new_revision_is_in_status() -> None:
    targets = [{"kind": "Deployment", "name": "app"}]
    rotated = {**ROTATED, "hash": "hmac-sha256:v1:new"}
    secret = dataclasses.replace(SYNCED, hash="hmac-sha256:v1:new", revision=2)
    plan = lifecycle.decide(observed(spec={"rotation": {"restartTargets": targets}},
                                     status=rotated, secret=secret), NOW)
    assert [(t.kind, t.name) for t in plan.restarts] == [("Deployment", "app")]
    assert plan.status["restartedRevision"] == 2
    done = lifecycle.decide(observed(spec={"rotation": {"restartTargets": targets}},
                                     status={**rotated, "restartedRevision": 2},
                                     secret=secret), NOW)
    assert done.restarts == ()
    assert "restartedRevision" not in done.status


def test_a_retirement_is_an_event_at_its_instant_and_the_next_wake_up_follows() -> None:
    previous = [{"revision": 1, "hash": "h1", "lastCharacters": "aaaa",
                 "retiresAt": "2026-11-11T12:00:00Z"},
                {"revision": 2, "hash": "h2", "lastCharacters": "bbbb",
                 "retiresAt": "2026-11-11T13:00:00Z"}]
    current = {**ROTATED, "revision": 3, "previous": previous}
    secret = dataclasses.replace(SYNCED, revision=3)
    plan = lifecycle.decide(observed(status=current, secret=secret),
                            datetime(2026, 11, 11, 12, tzinfo=UTC))
    assert [p["revision"] for p in plan.status["previous"]] == [2]
    assert [(e.reason, e.message) for e in plan.events] == [
        ("Retired", "Previous key kw_...aaaa (revision 1) retired at 2026-11-11T12:00:00Z")]
    assert plan.next_due == datetime(2026, 11, 11, 13, tzinfo=UTC)


def test_the_secret_records_the_request_it_answers() -> None:
    view = secretview.view_secret({"metadata": {"annotations": {
        "keywright.dev/rotate-request": "r9"}}, "data": {}}, "api-key")
    assert view.rotate_request == "r9"


def test_a_rotation_clears_the_refusal_record() -> None:
    rotated_secret = dataclasses.replace(
        SYNCED, hash="hmac-sha256:v1:new", revision=2, last_characters="NeWw",
        issued_at="2026-11-11T12:00:00Z", rotate_request="r2")
    o = observed(status={**ISSUED, "lastRotateRefused": "r1"}, secret=rotated_secret)
    plan = lifecycle.decide(o, NOW + timedelta(minutes=1))
    assert plan.status["lastRotateRefused"] is None  # merge patch: removes the field


def test_a_grace_period_never_outlives_the_key() -> None:
    got = rotation.previous_after_rotation(status(), T0 + timedelta(days=29),
                                           timedelta(days=7), T0 + timedelta(days=30))
    assert [p.retiresAt for p in got] == ["2026-12-01T12:00:00Z"]


@pytest.mark.parametrize(
    ("secret_change", "adopted"),
    [
        pytest.param({}, True, id="the next revision, with its data, is adopted"),
        pytest.param({"revision": 5}, False, id="a revision that skips ahead is not"),
        pytest.param({"has_key": False}, False, id="one without its data key is not"),
        pytest.param({"data_changed_by_others": True}, False,
                     id="one whose data someone else wrote is not"),
    ],
)
def test_only_a_secret_that_is_really_the_next_revision_is_adopted(
    secret_change: dict[str, Any], adopted: bool
) -> None:
    secret = dataclasses.replace(SYNCED, **{"hash": "hmac-sha256:v1:new", "revision": 2,
                                            "last_characters": "NeWw", **secret_change})
    plan = lifecycle.decide(observed(status=ISSUED, secret=secret), NOW)
    assert ("hash" in plan.status) == adopted
    if not adopted:
        synced = next(c for c in plan.status["conditions"] if c["type"] == "SecretSynced")
        assert synced["reason"] == "SecretModified"


def test_a_failed_key_still_expires_and_retires_on_time() -> None:
    previous = [{"revision": 1, "hash": "h1", "lastCharacters": "aaaa",
                 "retiresAt": "2026-11-11T12:00:00Z"}]
    current = {**ROTATED, "previous": previous}
    plan = lifecycle.decide(observed(spec={"ipAllowlist": ["10.0.0.1/8"]}, status=current,
                                     secret=SYNCED), NOW - timedelta(hours=1))
    assert plan.status["phase"] == "Failed"
    assert plan.next_due == datetime(2026, 11, 11, 12, tzinfo=UTC)
    later = lifecycle.decide(observed(spec={"ipAllowlist": ["10.0.0.1/8"]},
                                      status={**current, **plan.status}, secret=SYNCED),
                             datetime(2026, 11, 11, 12, tzinfo=UTC))
    assert later.status["previous"] == []
    assert later.next_due == T0 + timedelta(days=30)


@pytest.mark.parametrize(("lasted", "again"), [
    pytest.param(None, timedelta(seconds=1), id="a new conflict is looked at again in 1 s"),
    pytest.param(timedelta(seconds=4), timedelta(seconds=4),
                 id="one that has lasted 4 s, 4 s later: the wait doubles"),
    pytest.param(timedelta(minutes=5), timedelta(seconds=60),
                 id="one that has lasted minutes, a minute later"),
])
def test_a_conflict_is_checked_again_sooner_the_newer_it_is(
    lasted: timedelta | None, again: timedelta
) -> None:
    foreign = secretview.SecretView(exists=True, owner_uid="someone-else")
    status: dict[str, Any] = {}
    if lasted is not None:
        since = times.timestamp(NOW - lasted)
        status = {"phase": "Failed", "conditions": [
            {"type": "Ready", "status": "False", "reason": "SecretConflict", "message": "m",
             "lastTransitionTime": "2026-11-01T12:00:00Z"},  # False since deactivated
            {"type": "SecretSynced", "status": "False", "reason": "SecretConflict",
             "message": "m", "lastTransitionTime": since}]}
    plan = lifecycle.decide(observed(status=status, secret=foreign), NOW)
    assert plan.next_due == NOW + again


def test_grace_not_shorter_than_every_is_refused() -> None:
    with pytest.raises(models.SpecError) as caught:
        models.validate_spec({"expiration": "30d",
                              "rotation": {"every": "1h", "gracePeriod": "1h"}})
    assert caught.value.field == "spec.rotation.gracePeriod"


def test_a_schedule_added_to_an_old_key_is_recorded_and_comes_due_one_period_later() -> None:
    added = lifecycle.decide(observed(spec={"rotation": {"every": "1d"}}, status=ISSUED,
                                      secret=SYNCED), NOW)
    assert added.issue is None
    assert (added.status["scheduledEvery"], added.status["scheduleSince"],
            added.status["nextRotationAt"]) == \
        ("1d", "2026-11-11T12:00:00Z", "2026-11-12T12:00:00Z")
    assert added.next_due == datetime(2026, 11, 12, 12, tzinfo=UTC)
    recorded = {**ISSUED, **added.status}
    before = lifecycle.decide(observed(spec={"rotation": {"every": "1d"}}, status=recorded,
                                       secret=SYNCED), NOW + timedelta(hours=23))
    assert before.issue is None
    assert "scheduleSince" not in before.status  # unchanged: no write
    due = lifecycle.decide(observed(spec={"rotation": {"every": "1d"}}, status=recorded,
                                    secret=SYNCED), NOW + timedelta(days=1))
    assert due.issue is not None


def test_removing_the_schedule_forgets_it() -> None:
    scheduled = {**ISSUED, "scheduledEvery": "1d", "scheduleSince": "2026-11-09T12:00:00Z",
                 "nextRotationAt": "2026-11-10T12:00:00Z"}
    plan = lifecycle.decide(observed(status=scheduled, secret=SYNCED), NOW)
    assert (plan.status["scheduledEvery"], plan.status["scheduleSince"],
            plan.status["nextRotationAt"]) == (None, None, None)


def test_a_schedule_set_at_creation_counts_from_creation() -> None:
    issued = lifecycle.decide(observed(spec={"rotation": {"every": "1d"}}, secret=SYNCED),
                              T0 + timedelta(seconds=2))
    assert issued.status["nextRotationAt"] == "2026-11-02T12:00:00Z"
    assert issued.status["scheduledEvery"] == "1d"
    assert "scheduleSince" not in issued.status
