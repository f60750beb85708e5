"""compliance.judge as a table: what a key's roles and its namespace's policies make of
its RolesResolved and PolicyCompliant conditions, the events, and deactivation."""

from __future__ import annotations

from typing import Any

import pytest

from keywright.core import compliance, conditions, models, policy
from keywright.core.permissions import Permission

INVOICES = (Permission("Invoices", ("Write",)),)
TEAM = (Permission("Orders", ("Read",), (("team", "${context.team}"),)),)


def guard(name: str = "guard", **spec: Any) -> policy.Policy:
    return policy.Policy(name, models.validate_policy_spec(spec))


def facts(*policies: policy.Policy, **roles: tuple[Permission, ...] | None) -> compliance.Facts:
    return compliance.Facts("ns", policies, {name.replace("_", "-"): found
                                             for name, found in roles.items()})


def was(kind: str, status: str, reason: str, message: str = "m") -> models.Condition:
    return models.Condition(type=kind, status=status, reason=reason,  # type: ignore[arg-type]
                            message=message, lastTransitionTime="2026-11-01T12:00:00Z")


def judged(spec: dict[str, Any], given: compliance.Facts,
           before: tuple[models.Condition, ...] = ()) -> compliance.Verdict:
    parsed = models.validate_spec({"expiration": "30d", "scopes": ["Reviews.Read"], **spec})
    return compliance.judge("billing-sync-prod", parsed, "kw", given, before)


def shown(verdict: compliance.Verdict) -> dict[str, tuple[str, str, str]]:
    return {c.type: (c.status, c.reason, c.message) for c in verdict.conditions}


def told(verdict: compliance.Verdict) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in verdict.events]


RESOLVED = ("True", "Resolved", "ApiKeyRole invoice-writer found")
CASES = [
    pytest.param({}, facts(), (), {}, [], (),
                 id="a key without roles in a namespace without policies gets neither "
                    "condition"),
    pytest.param({"roles": ["invoice-writer"]}, facts(invoice_writer=INVOICES), (),
                 {"RolesResolved": RESOLVED}, [], (),
                 id="a key whose roles exist has them resolved, quietly"),
    pytest.param({"roles": ["invoice-writer", "gone"]}, facts(invoice_writer=INVOICES), (),
                 {"RolesResolved": ("False", "RoleMissing", "ApiKeyRole gone not found in "
                                    "namespace ns: its permissions are not granted")},
                 [("Warning", "RoleMissing")], (),
                 id="a missing role is RoleMissing with a Warning"),
    pytest.param({"roles": ["gone"]}, facts(),
                 (was("RolesResolved", "False", "RoleMissing",
                      "ApiKeyRole gone not found in namespace ns: its permissions are not "
                      "granted"),),
                 {"RolesResolved": ("False", "RoleMissing", "ApiKeyRole gone not found in "
                                    "namespace ns: its permissions are not granted")}, [], (),
                 id="a role still missing warns no more"),
    pytest.param({"roles": ["invoice-writer"]}, facts(invoice_writer=INVOICES),
                 (was("RolesResolved", "False", "RoleMissing"),),
                 {"RolesResolved": RESOLVED}, [("Normal", "RolesResolved")], (),
                 id="a role that appears again is told with a Normal event"),
    pytest.param({"roles": ["broken"]}, facts(broken=None), (),
                 {"RolesResolved": ("False", "RoleInvalid", "ApiKeyRole broken has a spec "
                                    "the operator cannot use: its permissions are not "
                                    "granted")},
                 [("Warning", "RoleInvalid")], (),
                 id="a role whose spec is unusable is RoleInvalid"),
    pytest.param({"roles": ["team-orders"]}, facts(team_orders=TEAM), (),
                 {"RolesResolved": ("False", "ContextMissing", "ApiKeyRole team-orders "
                                    "filters rows by spec.context.team, which the key "
                                    "lacks: those permissions are not granted")},
                 [("Warning", "ContextMissing")], (),
                 id="a filter naming a context entry the key lacks is ContextMissing"),
    pytest.param({}, facts(), (was("RolesResolved", "True", "Resolved"),), {}, [],
                 ("RolesResolved",),
                 id="a key whose roles were all removed loses the condition"),
    pytest.param({"ipAllowlist": ["10.0.0.0/8"]}, facts(guard(maxExpiration="90d")), (),
                 {"PolicyCompliant": ("True", "Compliant", "keeps ApiKeyPolicy guard")}, [],
                 (), id="a key keeping the policy is compliant, quietly"),
    pytest.param({"expiration": "180d"}, facts(guard(maxExpiration="90d"), guard("other")),
                 (), {"PolicyCompliant": ("False", "PolicyViolation",
                                          "ApiKeyPolicy guard: spec.expiration 180d is longer "
                                          "than maxExpiration 90d")},
                 [("Warning", "PolicyViolation")], (),
                 id="a key breaking a policy is PolicyViolation with a Warning"),
    pytest.param({"roles": ["invoice-writer"]},
                 facts(guard(requireIpAllowlistFor=["Write"]), invoice_writer=INVOICES), (),
                 {"RolesResolved": RESOLVED,
                  "PolicyCompliant": ("False", "PolicyViolation",
                                      "ApiKeyPolicy guard: write scopes require "
                                      "spec.ipAllowlist (Invoices.Write; "
                                      "requireIpAllowlistFor: Write)")},
                 [("Warning", "PolicyViolation")], (),
                 id="a permission held through a role counts against the policy"),
    pytest.param({}, facts(guard(maxExpiration="90d")),
                 (was("PolicyCompliant", "False", "PolicyViolation"),),
                 {"PolicyCompliant": ("True", "Compliant", "keeps ApiKeyPolicy guard")},
                 [("Normal", "PolicyCompliant")], (),
                 id="a key brought back into policy is told with a Normal event"),
    pytest.param({}, facts(), (was("PolicyCompliant", "False", "PolicyViolation"),), {}, [],
                 ("PolicyCompliant",),
                 id="a key whose namespace lost its policies loses the condition"),
]


@pytest.mark.parametrize(("spec", "given", "before", "conditions_", "events", "dropped"),
                         CASES)
def test_judge(spec: dict[str, Any], given: compliance.Facts,
               before: tuple[models.Condition, ...],
               conditions_: dict[str, tuple[str, str, str]], events: list[tuple[str, str]],
               dropped: tuple[str, ...]) -> None:
    verdict = judged(spec, given, before)
    assert shown(verdict) == conditions_
    assert told(verdict) == events
    assert verdict.dropped == dropped


def test_only_policies_that_deactivate_deactivate() -> None:
    warned = judged({"expiration": "180d"}, facts(guard(maxExpiration="90d")))
    assert len(warned.violations) == 1
    assert warned.deactivating == ()
    stopped = judged({"expiration": "180d"}, facts(
        guard(maxExpiration="90d"), guard("strict", maxExpiration="30d",
                                          enforcement="Deactivate")))
    assert [str(v) for v in stopped.deactivating] == [
        "ApiKeyPolicy strict: spec.expiration 180d is longer than maxExpiration 30d"]


def test_a_changed_complaint_warns_again() -> None:
    before = (was("PolicyCompliant", "False", "PolicyViolation",
                  "ApiKeyPolicy guard: spec.expiration 180d is longer than maxExpiration 90d"),)
    same = judged({"expiration": "180d"}, facts(guard(maxExpiration="90d")), before)
    assert told(same) == []
    other = judged({"expiration": "180d"}, facts(guard(maxExpiration="60d")), before)
    assert told(other) == [(conditions.WARNING, "PolicyViolation")]
