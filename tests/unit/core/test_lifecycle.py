"""lifecycle.decide as a table with a fixed clock: what each situation leads to."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

from keywright.core import aging, compliance, lifecycle, models, policy, secretview
from tests.support.observed import CREATED, HASH, ISSUED, NOW, SYNCED, UID, observed


def reasons(plan: lifecycle.Plan) -> list[str]:
    return [e.reason for e in plan.events]


def condition(plan: lifecycle.Plan, kind: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == kind)


def test_a_new_key_is_issued_into_a_secret_named_after_it() -> None:
    plan = lifecycle.decide(observed(spec={"secret": {"labels": {"team": "a"}}}), NOW)
    assert plan.issue == lifecycle.Issue(
        secret_name="k", data_key="api-key", prefix="kw", revision=1,
        labels={"team": "a", "app.kubernetes.io/managed-by": "keywright",
                "keywright.dev/apikey": "k"},
        annotations={}, replace=False)
    assert plan.status == {}
    assert plan.events == ()


def test_the_spec_chooses_the_secret_name_key_and_prefix() -> None:
    plan = lifecycle.decide(observed(spec={"prefix": "acme", "secret": {
        "name": "other", "key": "token"}}), NOW)
    assert plan.issue is not None
    assert (plan.issue.secret_name, plan.issue.data_key, plan.issue.prefix) == \
        ("other", "token", "acme")


def test_a_secret_written_before_a_crash_is_adopted_not_rewritten() -> None:
    secret = dataclasses.replace(SYNCED, hash="hmac-sha256:v1:new", last_characters="AbCd")
    plan = lifecycle.decide(observed(secret=secret), NOW)
    assert plan.issue is None
    assert plan.status["hash"] == "hmac-sha256:v1:new"
    assert plan.status["revision"] == 1
    assert plan.status["keyPreview"] == "kw_...AbCd"
    assert plan.status["createdAt"] == "2026-11-01T12:00:00Z"
    assert plan.status["expiresAt"] == "2026-12-01T12:00:00Z"
    assert plan.status["phase"] == "Active"
    assert reasons(plan) == ["Issued"]
    assert plan.next_due == CREATED + timedelta(days=30)


def test_a_foreign_secret_of_that_name_is_a_conflict_and_never_touched() -> None:
    foreign = secretview.SecretView(exists=True, owner_uid=None, has_key=True)
    plan = lifecycle.decide(observed(secret=foreign), NOW)
    assert plan.issue is None
    assert plan.status["phase"] == "Failed"
    assert condition(plan, "Ready")["reason"] == "SecretConflict"
    assert reasons(plan) == ["SecretConflict"]


def test_a_conflict_already_reported_is_not_reported_again() -> None:
    foreign = secretview.SecretView(exists=True, owner_uid="someone-else")
    first = lifecycle.decide(observed(secret=foreign), NOW)
    again = lifecycle.decide(observed(status=first.status, secret=foreign), NOW)
    assert again.events == ()
    assert again.status == {}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"ipAllowlist": ["10.0.0.1/8"]}, "spec.ipAllowlist[0]",
                     id="a CIDR with host bits set fails naming the entry"),
        pytest.param({"expiration": "99999999d"}, "spec.expiration",
                     id="an expiration too far away fails naming expiration"),
    ],
)
def test_a_spec_only_code_can_refuse_ends_failed_invalid_spec(
    spec: dict[str, Any], field: str
) -> None:
    plan = lifecycle.decide(observed(spec=spec), NOW)
    assert plan.issue is None
    assert plan.status["phase"] == "Failed"
    ready = condition(plan, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(field + ":")
    assert reasons(plan) == ["InvalidSpec"]


@pytest.mark.parametrize(
    ("spec", "now", "phase", "events", "ready_reason"),
    [
        pytest.param({}, NOW, "Active", [], "Active", id="an active key in its life stays quiet"),
        pytest.param({"active": False}, NOW, "Inactive", ["Deactivated"], "Deactivated",
                     id="active false deactivates with an event"),
        pytest.param({}, CREATED + timedelta(days=30), "Expired", ["Expired"], "Expired",
                     id="at the expiry instant exactly the key is expired"),
        pytest.param({}, CREATED + timedelta(days=30) - timedelta(seconds=1), "Active", [],
                     "Active", id="one second before expiry it is still active"),
        pytest.param({"active": False}, CREATED + timedelta(days=31), "Expired", ["Expired"],
                     "Expired", id="expiry wins over deactivation"),
    ],
)
def test_phase_follows_active_flag_and_clock(
    spec: dict[str, Any], now: datetime, phase: str, events: list[str], ready_reason: str
) -> None:
    plan = lifecycle.decide(observed(spec=spec, status=ISSUED, secret=SYNCED), now)
    assert plan.issue is None
    assert plan.status.get("phase", "Active") == phase
    assert reasons(plan) == events
    after = {**ISSUED, **plan.status}  # the status once the patch is applied
    assert next(c for c in after["conditions"] if c["type"] == "Ready")["reason"] == \
        ready_reason


def test_reactivating_an_inactive_key_is_an_activated_event() -> None:
    inactive = {**ISSUED, "phase": "Inactive"}
    plan = lifecycle.decide(observed(status=inactive, secret=SYNCED), NOW)
    assert plan.status["phase"] == "Active"
    assert reasons(plan) == ["Activated"]


def test_reactivating_an_expired_key_keeps_it_expired() -> None:
    expired = {**ISSUED, "phase": "Expired"}
    later = CREATED + timedelta(days=40)
    plan = lifecycle.decide(observed(status=expired, secret=SYNCED, generation=2), later)
    assert plan.status.get("phase", expired["phase"]) == "Expired"
    assert condition(plan, "Ready")["reason"] == "Expired"
    assert "Activated" not in reasons(plan)
    assert plan.next_due is None


def test_the_next_wake_up_is_the_expiry_instant() -> None:
    plan = lifecycle.decide(observed(status=ISSUED, secret=SYNCED), NOW)
    assert plan.next_due == CREATED + timedelta(days=30)


def test_a_key_that_never_expires_needs_no_wake_up() -> None:
    never = {**ISSUED, "expiresAt": None}
    plan = lifecycle.decide(observed(spec={"expiration": "Never"}, status=never,
                                     secret=SYNCED), NOW)
    assert plan.next_due is None
    assert plan.status.get("phase", "Active") == "Active"


def test_a_changed_expiration_never_moves_expires_at_and_warns_once() -> None:
    plan = lifecycle.decide(observed(spec={"expiration": "360d"}, status=ISSUED,
                                     secret=SYNCED, generation=2), NOW)
    assert "expiresAt" not in plan.status
    assert plan.next_due == CREATED + timedelta(days=30)
    assert reasons(plan) == ["ExpirationImmutable"]
    assert "expiresAt stays 2026-12-01T12:00:00Z" in plan.events[0].message
    seen = {**ISSUED, "observedGeneration": 2}
    again = lifecycle.decide(observed(spec={"expiration": "360d"}, status=seen,
                                      secret=SYNCED, generation=2), NOW)
    assert reasons(again) == []


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        pytest.param(secretview.MISSING, "SecretMissing", id="a deleted Secret is missing"),
        pytest.param(dataclasses.replace(SYNCED, hash="hmac-sha256:v1:other"), "SecretModified",
                     id="a changed hash annotation is a modification"),
        pytest.param(dataclasses.replace(SYNCED, has_key=False), "SecretModified",
                     id="a removed data key is a modification"),
        pytest.param(dataclasses.replace(SYNCED, data_changed_by_others=True), "SecretModified",
                     id="data written by another field manager is a modification"),
    ],
)
def test_a_missing_or_altered_secret_is_reported_and_the_key_kept(
    secret: secretview.SecretView, reason: str
) -> None:
    plan = lifecycle.decide(observed(status=ISSUED, secret=secret), NOW)
    assert plan.issue is None
    assert "hash" not in plan.status
    assert "revision" not in plan.status
    synced = condition(plan, "SecretSynced")
    assert (synced["status"], synced["reason"]) == ("False", reason)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reason)]
    again = lifecycle.decide(observed(status={**ISSUED, **plan.status}, secret=secret), NOW)
    assert again.events == ()


def test_a_key_whose_whole_life_passed_before_issuing_is_expired_without_a_secret() -> None:
    plan = lifecycle.decide(observed(spec={"expiration": "1h"}), CREATED + timedelta(hours=2))
    assert plan.issue is None
    assert plan.status["phase"] == "Expired"
    assert plan.status["expiresAt"] == "2026-11-01T13:00:00Z"


def test_an_unchanged_status_costs_no_write() -> None:
    first = lifecycle.decide(observed(status=ISSUED, secret=SYNCED), NOW)
    settled = lifecycle.decide(observed(status={**ISSUED, **first.status}, secret=SYNCED),
                               NOW + timedelta(minutes=1))
    assert settled.status == {}
    assert settled.events == ()


def test_view_secret_reads_annotations_and_field_managers_not_the_plaintext() -> None:
    raw: dict[str, Any] = {
        "metadata": {
            "ownerReferences": [{"uid": "other", "controller": False},
                                {"uid": UID, "controller": True}],
            "annotations": {"keywright.dev/hash": HASH, "keywright.dev/revision": "3",
                            "keywright.dev/last-characters": "x9Qa"},
            "managedFields": [
                {"manager": "keywright", "fieldsV1": {"f:data": {"f:api-key": {}}}},
                {"manager": "kubectl-edit", "fieldsV1": {"f:metadata": {}}},
            ],
        },
        "data": {"api-key": "c2VjcmV0"},
    }
    view = secretview.view_secret(raw, "api-key")
    assert view == secretview.SecretView(exists=True, owner_uid=UID, hash=HASH, revision=3,
                                         last_characters="x9Qa", has_key=True,
                                         data_changed_by_others=False,
                                         our_data_keys=frozenset({"api-key"}))
    raw["metadata"]["managedFields"][1]["fieldsV1"] = {"f:data": {"f:api-key": {}}}
    assert secretview.view_secret(raw, "api-key").data_changed_by_others
    missing = secretview.view_secret(None, "api-key")
    assert (missing.exists, missing.hash, missing.revision, missing.has_key) == \
        (False, None, None, False)


@pytest.mark.parametrize("managers", [
    pytest.param([("keywright", "api-key")], id="a Secret only Keywright wrote"),
    pytest.param([("keywright", "api-key"), ("kubectl-edit", "api-key")],
                 id="one whose key someone else wrote too"),
    pytest.param([("keywright", "old-key"), ("helm", "extra")],
                 id="one holding other data keys, the key itself missing"),
    pytest.param([], id="one with no field managers at all"),
])
def test_a_listed_secret_kept_as_metadata_only_reads_as_its_metadata_get_would(
        managers: list[tuple[str, str]]) -> None:
    """What the reconciler keeps of a listed Secret gives the view a GET of its metadata
    gives (PartialObjectMetadata: every metadata field, no data)."""
    meta: dict[str, Any] = {
        "name": "billing", "namespace": "pay", "uid": "s-1", "resourceVersion": "42",
        "labels": {"app.kubernetes.io/managed-by": "keywright"},
        "creationTimestamp": "2026-12-01T00:00:00Z",
        "ownerReferences": [{"uid": "other", "controller": False},
                            {"uid": UID, "controller": True, "kind": "ApiKey"}],
        "annotations": {"keywright.dev/hash": HASH, "keywright.dev/revision": "3",
                        "keywright.dev/issued-at": "2026-12-01T00:00:00Z",
                        "keywright.dev/sealed-to": "age1a,age1b"},
        "managedFields": [
            {"manager": who, "operation": "Update", "time": "2026-12-01T00:00:00Z",
             "fieldsV1": {"f:data": {f"f:{key}": {}}, "f:metadata": {"f:labels": {}}}}
            for who, key in managers] + [
            {"manager": "kube-controller-manager", "fieldsV1": {"f:metadata": {}}}],
    }
    kept = secretview.metadata_only({"metadata": meta, "data": {"api-key": "c2VjcmV0"}})
    assert "data" not in kept
    assert secretview.view_secret(kept, "api-key") == \
        secretview.view_secret({"metadata": meta}, "api-key")


@pytest.mark.parametrize(
    ("annotations", "revision", "issued_at"),
    [
        pytest.param({"keywright.dev/revision": "\u00b2"}, None, None,
                     id="a superscript digit is not a revision"),
        pytest.param({"keywright.dev/revision": "2",
                      "keywright.dev/issued-at": "yesterday"}, 2, None,
                     id="an unreadable issued-at is ignored, not a crash"),
    ],
)
def test_view_secret_survives_edited_annotations(
    annotations: dict[str, str], revision: int | None, issued_at: str | None
) -> None:
    view = secretview.view_secret({"metadata": {"annotations": annotations}}, "api-key")
    assert (view.revision, view.issued_at) == (revision, issued_at)


def test_metadata_alone_tells_whether_the_data_key_exists() -> None:
    meta_only = {"metadata": {"managedFields": [
        {"manager": "keywright", "fieldsV1": {"f:data": {".": {}, "f:api-key": {}}}}]}}
    assert secretview.view_secret(meta_only, "api-key").has_key
    assert not secretview.view_secret(meta_only, "token").has_key


# --- policies with enforcement Deactivate ------------------------------------------------

STRICT = compliance.Facts("ns", (policy.Policy("strict", models.validate_policy_spec(
    {"maxExpiration": "7d", "enforcement": "Deactivate"})),))
LENIENT = compliance.Facts("ns", (policy.Policy("lenient", models.validate_policy_spec(
    {"maxExpiration": "7d"})),))


def test_a_key_breaking_a_deactivating_policy_stops_working_and_says_why() -> None:
    plan = lifecycle.decide(observed(status=ISSUED, secret=SYNCED, facts=STRICT,
                                     spec={"rotation": {"every": "1d"}}), NOW)
    assert plan.issue is None  # a deactivated key is not rotated on schedule either
    assert plan.status["phase"] == "Inactive"
    why = "deactivated: ApiKeyPolicy strict: spec.expiration 30d is longer than maxExpiration 7d"
    assert (condition(plan, "Ready")["reason"], condition(plan, "Ready")["message"]) == \
        ("PolicyViolation", why)
    assert condition(plan, "PolicyCompliant")["status"] == "False"
    assert plan.status["deactivated"] == {"reason": "PolicyViolation", "message": why,
                                          "since": "2026-11-11T12:00:00Z"}
    assert [(e.type, e.reason) for e in plan.events] == [
        ("Warning", "PolicyViolation"), ("Warning", "Deactivated")]


def test_a_key_breaking_a_warning_policy_keeps_working() -> None:
    plan = lifecycle.decide(observed(status=ISSUED, secret=SYNCED, facts=LENIENT), NOW)
    assert "phase" not in plan.status  # still Active
    assert "deactivated" not in plan.status
    assert condition(plan, "PolicyCompliant")["reason"] == "PolicyViolation"
    assert reasons(plan) == ["PolicyViolation"]


def test_a_key_brought_back_into_policy_works_again() -> None:
    stopped = lifecycle.decide(observed(status=ISSUED, secret=SYNCED, facts=STRICT), NOW)
    status = {**ISSUED, **stopped.status}
    later = NOW + timedelta(minutes=5)
    again = lifecycle.decide(observed(status=status, secret=SYNCED, facts=STRICT), later)
    assert again.status == {}  # nothing new: `since` stays
    fixed = lifecycle.decide(observed(status=status, secret=SYNCED), later)
    assert fixed.status["phase"] == "Active"
    assert fixed.status["deactivated"] is None
    assert reasons(fixed) == ["Activated"]  # its policy was deleted: the condition goes
    assert "PolicyCompliant" not in [c["type"] for c in fixed.status["conditions"]]


def test_a_key_deactivated_by_its_spec_is_not_marked_as_deactivated_by_policy() -> None:
    plan = lifecycle.decide(observed(status=ISSUED, secret=SYNCED, facts=STRICT,
                                     spec={"active": False}), NOW)
    assert plan.status["phase"] == "Inactive"
    assert condition(plan, "Ready")["reason"] == "Deactivated"
    assert "deactivated" not in plan.status


# --- over time: expiry warnings, never-used and unused keys (aging) ----------------------

WARNS = aging.Watch(expiry_warnings=(timedelta(days=14), timedelta(days=1)),
                    never_used_after=timedelta(days=7))
USED = {**ISSUED, "lastUsedAt": "2026-11-02T12:00:00Z"}  # used the day after creation
FOREVER = {k: v for k, v in USED.items() if k != "expiresAt"}  # expiration Never


def aged(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
         facts: compliance.Facts = compliance.NONE, reactivate: str | None = None,
         ) -> lifecycle.Observed:
    return dataclasses.replace(observed(spec=spec, status=status or USED, secret=SYNCED,
                                        facts=facts),
                               watch=WARNS, reactivate_request=reactivate)


def test_a_key_14_days_from_expiry_is_expiring_soon_in_the_same_write_as_its_warning() -> None:
    plan = lifecycle.decide(aged(), CREATED + timedelta(days=16))
    assert condition(plan, "ExpiringSoon")["status"] == "True"
    assert plan.status["expiryWarning"] == "14d"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ExpiringSoon")]
    assert plan.next_due == CREATED + timedelta(days=29)  # the 1-day warning is next
    again = lifecycle.decide(aged(status={**USED, **plan.status}),
                             CREATED + timedelta(days=17))
    assert again.status == {}  # told once: nothing to write, no event
    assert again.events == ()


def test_a_steady_key_far_from_expiry_wakes_at_its_first_warning() -> None:
    plan = lifecycle.decide(aged(), NOW)
    assert "ExpiringSoon" not in [c["type"] for c in plan.status["conditions"]]
    assert plan.events == ()
    assert plan.next_due == CREATED + timedelta(days=16)


def test_a_key_never_used_for_7_days_says_so_once() -> None:
    plan = lifecycle.decide(aged(status=ISSUED), NOW)
    assert (condition(plan, "Used")["status"], condition(plan, "Used")["reason"]) == \
        ("False", "NeverUsed")
    assert reasons(plan) == ["NeverUsed"]
    assert "phase" not in plan.status  # a warning, not a deactivation


def test_a_key_unused_past_its_window_is_deactivated_saying_why() -> None:
    plan = lifecycle.decide(aged(spec={"deactivateAfterUnused": "7d"}), NOW)
    assert plan.issue is None
    assert plan.status["phase"] == "Inactive"
    why = ("deactivated as unused: last used at 2026-11-02T12:00:00Z, 7d ago or more "
           "(spec.deactivateAfterUnused 7d)")
    assert (condition(plan, "Ready")["reason"], condition(plan, "Ready")["message"]) == \
        ("Unused", why)
    assert plan.status["deactivated"] == {"reason": "Unused", "message": why,
                                          "since": "2026-11-11T12:00:00Z"}
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "Deactivated")]
    later = lifecycle.decide(aged(spec={"deactivateAfterUnused": "7d"},
                                  status={**USED, **plan.status}), NOW + timedelta(hours=1))
    assert later.status == {}  # nothing new to say while it stays unused


def test_before_its_window_ends_an_unused_key_wakes_at_the_end() -> None:
    plan = lifecycle.decide(aged(spec={"deactivateAfterUnused": "30d", "expiration": "Never"},
                                 status=FOREVER), NOW)
    assert "phase" not in plan.status
    assert plan.next_due == CREATED + timedelta(days=31)  # 30 days after its last use


def test_a_policy_default_deactivates_a_key_that_sets_no_window() -> None:
    facts = compliance.Facts("ns", (policy.Policy("tidy", models.validate_policy_spec(
        {"deactivateAfterUnused": "5d"})),))
    plan = lifecycle.decide(aged(facts=facts), NOW)
    assert plan.status["deactivated"]["message"].endswith(
        "(ApiKeyPolicy tidy's deactivateAfterUnused 5d)")


def test_an_unused_key_is_not_rotated_and_refuses_a_rotate_request() -> None:
    unused = {"deactivateAfterUnused": "7d", "rotation": {"every": "1d"}}
    plan = lifecycle.decide(dataclasses.replace(aged(spec=unused), rotate_request="r1"), NOW)
    assert plan.issue is None
    assert "RotationRefused" in reasons(plan)


def test_the_reactivate_annotation_restarts_the_unused_clock() -> None:
    unused = {"deactivateAfterUnused": "7d", "expiration": "Never"}
    stopped = lifecycle.decide(aged(spec=unused, status=FOREVER), NOW)
    status = {**FOREVER, **stopped.status}
    plan = lifecycle.decide(aged(spec=unused, status=status, reactivate="please"),
                            NOW + timedelta(hours=1))
    assert plan.status["phase"] == "Active"
    assert plan.status["deactivated"] is None
    assert plan.status["reactivatedAt"] == "2026-11-11T13:00:00Z"
    assert plan.status["lastReactivateRequest"] == "please"
    assert reasons(plan) == ["Activated"]
    assert plan.next_due == NOW + timedelta(days=7, hours=1)
    again = lifecycle.decide(aged(spec=unused, status={**status, **plan.status},
                                  reactivate="please"),
                             NOW + timedelta(hours=2))
    assert again.status == {}  # the same value is not a second reactivation


def test_spec_active_turned_true_again_restarts_the_unused_clock() -> None:
    off = lifecycle.decide(aged(spec={"active": False}), NOW)
    status = {**USED, **off.status}
    on = lifecycle.decide(aged(spec={"deactivateAfterUnused": "7d"}, status=status),
                          NOW + timedelta(hours=1))
    assert on.status["phase"] == "Active"
    assert on.status["reactivatedAt"] == "2026-11-11T13:00:00Z"


# --- sealed delivery --------------------------------------------------------------------

AGE = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
SHOW = "age1z4g7wvlsz25cse58eqhyx5zftrye68u28lpdhacvlf9rdknepu6sqr0y08"
SEALED_ONLY = {"secret": {"create": False}, "delivery": {"age": {"recipients": [AGE]}}}


def sealed_view(revision: int = 1, to: tuple[str, ...] = (AGE,)) -> secretview.SecretView:
    return secretview.issued(UID, f"hmac-sha256:v1:new{revision}", revision, "AbCd",
                             "2026-11-11T12:00:00Z", None, "-----BEGIN AGE...", to)


def test_a_key_without_a_secret_is_issued_sealed_to_its_recipients_and_the_annotations() -> None:
    seen = dataclasses.replace(observed(spec=SEALED_ONLY), seal_to=(SHOW, AGE))
    plan = lifecycle.decide(seen, NOW)
    assert plan.issue is not None
    assert (plan.issue.secret, plan.issue.recipients) == (False, (AGE, SHOW))


def test_a_key_without_a_secret_and_without_a_recipient_is_never_issued() -> None:
    plan = lifecycle.decide(observed(spec={"secret": {"create": False}}), NOW)
    assert plan.issue is None
    assert plan.status["phase"] == "Failed"
    assert condition(plan, "Ready")["message"] == lifecycle.NO_RECIPIENT


def test_a_sealed_key_is_adopted_with_its_ciphertext_and_no_secret_or_secret_condition() -> None:
    plan = lifecycle.decide(observed(spec=SEALED_ONLY, secret=sealed_view()), NOW)
    assert plan.issue is None
    assert "secretName" not in plan.status
    assert plan.status["sealed"] == {"revision": 1, "recipients": [AGE],
                                     "ciphertext": "-----BEGIN AGE..."}
    assert [c["type"] for c in plan.status["conditions"]] == ["Ready", "Expired"]
    assert [e.message for e in plan.events] == [
        "Issued key kw_...AbCd (revision 1) with no Secret; sealed to 1 age recipient"]


def test_a_rotation_of_a_key_whose_recipients_are_gone_is_refused_not_sealed_to_no_one() -> None:
    status = {**ISSUED, "secretName": None, "conditions": ISSUED["conditions"][:1]}
    seen = dataclasses.replace(observed(spec={"secret": {"create": False}}, status=status),
                               rotate_request="now")
    plan = lifecycle.decide(seen, NOW)
    assert plan.issue is None
    assert reasons(plan) == ["RotationRefused"]
    assert lifecycle.NO_RECIPIENT in plan.events[0].message
    scheduled = lifecycle.decide(observed(spec={"secret": {"create": False},
                                                "rotation": {"every": "1d"}}, status=status),
                                 NOW)
    assert scheduled.issue is None  # no scheduled rotation into the void either
    assert scheduled.next_due == CREATED + timedelta(days=30)


def test_a_rotation_that_is_not_sealed_leaves_no_older_ciphertext_behind() -> None:
    status = {**ISSUED, "sealed": {"revision": 1, "recipients": [AGE], "ciphertext": "old"}}
    rotated = dataclasses.replace(SYNCED, hash="hmac-sha256:v1:two", revision=2,
                                  last_characters="EfGh", issued_at="2026-11-11T12:00:00Z")
    plan = lifecycle.decide(observed(status=status, secret=rotated), NOW)
    assert plan.status["revision"] == 2
    assert plan.status["sealed"] is None  # removed: the new key was not sealed
