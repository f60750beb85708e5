"""ApiKeyPolicy's rules as tables: each named check of the chain on keys that keep it
and keys that break it, permissions held through roles counting as scopes, several
policies at once, and the policy spec's own validation."""

from __future__ import annotations

from typing import Any

import pytest

from keywright.core import models, permissions, policy
from keywright.core.permissions import Permission

ROLES = {"invoice-writer": [Permission("Invoices", ("Write",))]}


def key(name: str = "billing-sync-prod", roles: tuple[str, ...] = (), prefix: str = "kw",
        spec_prefix: str | None = None, **spec: Any) -> policy.Subject:
    parsed = models.validate_spec({"expiration": "30d", "scopes": ["Reviews.Read"], **spec,
                                   **({"prefix": spec_prefix} if spec_prefix else {})})
    effective = permissions.effective(parsed.scopes, roles, ROLES, parsed.context)
    return policy.Subject(name, parsed, prefix, effective)


def rules(spec: dict[str, Any], subject: policy.Subject) -> list[tuple[str, str, str]]:
    found = policy.evaluate([policy.Policy("guard", models.validate_policy_spec(spec))],
                            subject)
    return [(v.rule, v.field, v.reason) for v in found]


CASES = [
    pytest.param({}, key(), [], id="an empty policy allows anything"),
    pytest.param({"maxExpiration": "90d"}, key(expiration="30d"), [],
                 id="an expiration within the maximum is kept"),
    pytest.param({"maxExpiration": "90d"}, key(expiration="180d"),
                 [(policy.MAX_EXPIRATION, "spec.expiration",
                   "spec.expiration 180d is longer than maxExpiration 90d")],
                 id="a longer expiration breaks MaxExpiration"),
    pytest.param({"maxExpiration": "90d"}, key(expiration="Never"),
                 [(policy.MAX_EXPIRATION, "spec.expiration",
                   "spec.expiration Never is not allowed: maxExpiration is 90d")],
                 id="Never is refused once a maximum is set"),
    pytest.param({"allowedAreas": ["Reviews"]}, key(scopes=["Reviews.Write"]), [],
                 id="scopes inside the allowed areas are kept"),
    pytest.param({"allowedAreas": ["Reviews"]}, key(scopes=["Reviews.Read", "Billing.Read"]),
                 [(policy.ALLOWED_AREAS, "spec.scopes",
                   "spec.scopes: area Billing is not in allowedAreas (Reviews)")],
                 id="a scope outside the allowed areas breaks AllowedAreas"),
    pytest.param({"allowedAreas": ["Reviews"]}, key(roles=("invoice-writer",)),
                 [(policy.ALLOWED_AREAS, "spec.roles",
                   "spec.roles: area Invoices is not in allowedAreas (Reviews)")],
                 id="an area held through a role counts, and names spec.roles"),
    pytest.param({"allowedScopes": ["Reviews.Write"]}, key(scopes=["Reviews.Read"]), [],
                 id="a Read under an allowed Write is kept"),
    pytest.param({"allowedScopes": ["Reviews.Read"]}, key(scopes=["Reviews.Write"]),
                 [(policy.ALLOWED_SCOPES, "spec.scopes",
                   "spec.scopes: Reviews.Write is not in allowedScopes (Reviews.Read)")],
                 id="a Write where only Read is allowed breaks AllowedScopes"),
    pytest.param({"requireIpAllowlistFor": ["Write", "Update", "Delete"]},
                 key(scopes=["Reviews.Read"]), [],
                 id="read-only keys need no allowlist"),
    pytest.param({"requireIpAllowlistFor": ["Write"]}, key(scopes=["Reviews.Write"]),
                 [(policy.REQUIRE_IP_ALLOWLIST, "spec.ipAllowlist",
                   "write scopes require spec.ipAllowlist (Reviews.Write; "
                   "requireIpAllowlistFor: Write)")],
                 id="a write scope without an allowlist breaks RequireIpAllowlist"),
    pytest.param({"requireIpAllowlistFor": ["Write", "Update", "Delete"]},
                 key(roles=("invoice-writer",)),
                 [(policy.REQUIRE_IP_ALLOWLIST, "spec.ipAllowlist",
                   "write scopes require spec.ipAllowlist (Invoices.Write; "
                   "requireIpAllowlistFor: Write, Update, Delete)")],
                 id="a write permission through a role needs the allowlist too"),
    pytest.param({"requireIpAllowlistFor": ["Write"]},
                 key(scopes=["Reviews.Write"], ipAllowlist=["10.0.0.0/8"]), [],
                 id="with an allowlist a write scope is kept"),
    pytest.param({"allowedPrefixes": ["kw", "acme"]}, key(prefix="acme"), [],
                 id="an allowed prefix is kept"),
    pytest.param({"allowedPrefixes": ["kw"]}, key(prefix="acme", spec_prefix="acme"),
                 [(policy.ALLOWED_PREFIXES, "spec.prefix",
                   "spec.prefix acme is not in allowedPrefixes (kw)")],
                 id="a prefix the spec names breaks AllowedPrefixes by its name"),
    pytest.param({"requireIpAllowlistFor": ["Write", "Delete"]},
                 key(scopes=["Reviews.Write", "Reviews.Delete", "Orders.Update"]),
                 [(policy.REQUIRE_IP_ALLOWLIST, "spec.ipAllowlist",
                   "write and delete scopes require spec.ipAllowlist (Reviews.Delete, "
                   "Reviews.Write; requireIpAllowlistFor: Write, Delete)")],
                 id="only the actions the policy names need the allowlist"),
    pytest.param({"allowedPrefixes": ["acme"]}, key(prefix="kw"),
                 [(policy.ALLOWED_PREFIXES, "spec.prefix",
                   "spec.prefix (the operator's default, kw) is not in "
                   "allowedPrefixes (acme)")],
                 id="the default prefix counts when the spec names none"),
    pytest.param({"maxRateLimit": {"requests": 100, "period": "1m"}},
                 key(rateLimit={"requests": 3000, "period": "1h"}), [],
                 id="a slower rate in other units is kept"),
    pytest.param({"maxRateLimit": {"requests": 100, "period": "1m"}},
                 key(rateLimit={"requests": 2, "period": "1s"}),
                 [(policy.MAX_RATE_LIMIT, "spec.rateLimit",
                   "spec.rateLimit 2 per 1s is more than maxRateLimit 100 per 1m")],
                 id="a faster rate breaks MaxRateLimit"),
    pytest.param({"maxRateLimit": {"requests": 100, "period": "1m"}}, key(),
                 [(policy.MAX_RATE_LIMIT, "spec.rateLimit",
                   "spec.rateLimit is required: maxRateLimit is 100 per 1m")],
                 id="no rate limit at all breaks MaxRateLimit"),
    pytest.param({"requireQuota": True}, key(quota={"limit": 10}), [],
                 id="a key with a quota keeps RequireQuota"),
    pytest.param({"requireQuota": True}, key(),
                 [(policy.REQUIRE_QUOTA, "spec.quota", "spec.quota is required by requireQuota")],
                 id="a key without one breaks it"),
    pytest.param({"nameFormat": "^[a-z]+-[a-z]+-(dev|prod)$"}, key("billing-sync-prod"), [],
                 id="a name in the format is kept"),
    pytest.param({"nameFormat": "[a-z]+-[a-z]+-(dev|prod)"}, key("billing-sync-prod-2"),
                 [(policy.NAME_FORMAT, "metadata.name",
                   "metadata.name billing-sync-prod-2 does not match nameFormat "
                   "[a-z]+-[a-z]+-(dev|prod)")],
                 id="the format must match the whole name, anchors or not"),
    pytest.param({"maxExpiration": "7d", "requireQuota": True}, key(expiration="30d"),
                 [(policy.MAX_EXPIRATION, "spec.expiration",
                   "spec.expiration 30d is longer than maxExpiration 7d"),
                  (policy.REQUIRE_QUOTA, "spec.quota", "spec.quota is required by requireQuota")],
                 id="every broken rule is named, in the chain's order"),
]


@pytest.mark.parametrize(("spec", "subject", "broken"), CASES)
def test_policy_rules(spec: dict[str, Any], subject: policy.Subject,
                      broken: list[tuple[str, str, str]]) -> None:
    assert rules(spec, subject) == broken


def test_several_policies_all_apply_and_are_named_in_the_message() -> None:
    policies = [
        policy.Policy("prod-guardrails", models.validate_policy_spec(
            {"requireIpAllowlistFor": ["Write"], "enforcement": "Deactivate"})),
        policy.Policy("naming", models.validate_policy_spec({"nameFormat": "^[a-z]+-prod$"})),
    ]
    found = policy.evaluate(policies, key("billing-sync-prod", scopes=["Invoices.Write"]))
    assert [str(v) for v in found] == [
        "ApiKeyPolicy naming: metadata.name billing-sync-prod does not match nameFormat "
        "^[a-z]+-prod$",
        "ApiKeyPolicy prod-guardrails: write scopes require spec.ipAllowlist "
        "(Invoices.Write; requireIpAllowlistFor: Write)"]
    assert [v.enforcement for v in found] == ["Warn", "Deactivate"]


def test_every_rule_of_the_chain_has_a_row_that_breaks_it() -> None:
    """A rule added to the chain without a table row that breaks it goes untested."""
    broken = {rule for case in CASES for rule, _, _ in case.values[2]}
    assert {rule for rule, _ in policy.CHAIN} == broken


@pytest.mark.parametrize(("spec", "field"), [
    pytest.param({"maxExpiration": "Never"}, "spec.maxExpiration",
                 id="maxExpiration is a duration, not Never"),
    pytest.param({"allowedAreas": ["Reviews.Read"]}, "spec.allowedAreas[0]",
                 id="an area is not a scope"),
    pytest.param({"allowedScopes": ["Reviews.Admin"]}, "spec.allowedScopes[0]",
                 id="allowed scopes use the scope grammar"),
    pytest.param({"requireIpAllowlistFor": ["Admin"]}, "spec.requireIpAllowlistFor[0]",
                 id="requireIpAllowlistFor takes actions"),
    pytest.param({"nameFormat": "(unclosed"}, "spec.nameFormat",
                 id="nameFormat must compile"),
    pytest.param({"enforcement": "Delete"}, "spec.enforcement",
                 id="enforcement is Warn or Deactivate"),
    pytest.param({"maxRateLimit": {"requests": 0, "period": "1m"}},
                 "spec.maxRateLimit.requests", id="a maximum rate allows something"),
    pytest.param({"surprise": True}, "spec.surprise", id="an unknown field is refused"),
])
def test_a_bad_policy_spec_names_its_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(models.SpecError) as refused:
        models.validate_policy_spec(spec)
    assert refused.value.field == field
