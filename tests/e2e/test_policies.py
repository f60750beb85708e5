"""ApiKeyPolicies and ApiKeyRoles as installed: the operator (webhooks on) and the
verifier run as their deploy/ ServiceAccounts. Every policy rule is refused at apply
time in its own words; a role edit that would put keys out of policy is refused,
listing them; keys that predate a policy are warned or deactivated per `enforcement`;
roles and policies say in their status how many keys they concern."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.k8s import Cluster, Operator, Verifier, answer, issue, kubectl
from tests.support.manifests import apikey, policy, role
from tests.support.waiting import eventually

WRITE_INVOICES = {"area": "Invoices", "actions": ["Write"]}
READ_INVOICES = {"area": "Invoices", "actions": ["Read"]}


def applied(cluster: Cluster, manifest: dict[str, Any]) -> Any:
    return kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                   stdin=json.dumps(manifest))


def condition(cluster: Cluster, namespace: str, name: str, kind: str,
              plural: str = "apikeys") -> dict[str, Any] | None:
    found = json.loads(kubectl(cluster.kubeconfig, "-n", namespace, "get", plural, name,
                               "-o", "json").stdout)
    return next((c for c in (found.get("status") or {}).get("conditions") or []
                 if c["type"] == kind), None)


def status_of(cluster: Cluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(kubectl(
        cluster.kubeconfig, "-n", namespace, "get", plural, name, "-o", "json").stdout)
    return found.get("status") or {}


RULES = [
    pytest.param({"maxExpiration": "90d"}, "billing-sync-prod", {"expiration": "180d"},
                 "ApiKeyPolicy guard: spec.expiration 180d is longer than maxExpiration 90d",
                 id="MaxExpiration"),
    pytest.param({"maxExpiration": "90d"}, "billing-sync-prod", {"expiration": "Never"},
                 "ApiKeyPolicy guard: spec.expiration Never is not allowed: maxExpiration "
                 "is 90d", id="MaxExpiration refuses Never"),
    pytest.param({"allowedAreas": ["Reviews"]}, "billing-sync-prod",
                 {"scopes": ["Billing.Read"]},
                 "ApiKeyPolicy guard: spec.scopes: area Billing is not in allowedAreas "
                 "(Reviews)", id="AllowedAreas"),
    pytest.param({"allowedScopes": ["Reviews.Read"]}, "billing-sync-prod",
                 {"scopes": ["Reviews.Write"]},
                 "ApiKeyPolicy guard: spec.scopes: Reviews.Write is not in allowedScopes "
                 "(Reviews.Read)", id="AllowedScopes"),
    pytest.param({"requireIpAllowlistFor": ["Write", "Update", "Delete"]},
                 "billing-sync-prod", {"roles": ["invoice-writer"]},
                 "ApiKeyPolicy guard: write scopes require spec.ipAllowlist (Invoices.Write; "
                 "requireIpAllowlistFor: Write, Update, Delete)",
                 id="RequireIpAllowlist, through a role"),
    pytest.param({"allowedPrefixes": ["acme"]}, "billing-sync-prod", {},
                 "ApiKeyPolicy guard: spec.prefix (the operator's default, kw) is not in "
                 "allowedPrefixes (acme)", id="AllowedPrefixes"),
    pytest.param({"maxRateLimit": {"requests": 100, "period": "1m"}}, "billing-sync-prod",
                 {"rateLimit": {"requests": 10, "period": "1s"}},
                 "ApiKeyPolicy guard: spec.rateLimit 10 per 1s is more than maxRateLimit 100 "
                 "per 1m", id="MaxRateLimit"),
    pytest.param({"requireQuota": True}, "billing-sync-prod", {},
                 "ApiKeyPolicy guard: spec.quota is required by requireQuota",
                 id="RequireQuota"),
    pytest.param({"nameFormat": "^[a-z]+-[a-z]+-(dev|prod)$"}, "billing", {},
                 "ApiKeyPolicy guard: metadata.name billing does not match nameFormat "
                 "^[a-z]+-[a-z]+-(dev|prod)$", id="NameFormat"),
]


@pytest.mark.parametrize(("rule", "name", "spec", "words"), RULES)
def test_every_policy_rule_is_refused_at_apply_time_in_its_words(
    rule: dict[str, Any], name: str, spec: dict[str, Any], words: str, webhooks: Operator,
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(role("invoice-writer", namespace, WRITE_INVOICES))
    cluster.apply(policy("guard", namespace, **rule))
    refused = applied(cluster, apikey(name, namespace, **spec))
    assert refused.returncode != 0
    assert words in refused.stderr, refused.stderr
    listed = kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikeys,secrets",
                     "-o", "name").stdout
    assert "apikey" not in listed  # nothing stored, nothing issued
    # the same key, brought in line, is admitted: the refusal was the rule's alone
    kept = applied(cluster, apikey("billing-sync-prod", namespace, expiration="30d",
                                   scopes=["Reviews.Read"], prefix="acme",
                                   ipAllowlist=["10.0.0.0/8"], quota={"limit": 10},
                                   rateLimit={"requests": 10, "period": "1m"}))
    assert kept.returncode == 0, kept.stderr


def test_a_role_edit_that_would_put_keys_out_of_policy_is_refused_listing_them(
    webhooks: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(role("invoices", namespace, READ_INVOICES))
    for name in ("payments-api", "ledger-sync"):
        cluster.apply(apikey(name, namespace, roles=["invoices"]))
    cluster.apply(apikey("fenced", namespace, roles=["invoices"], ipAllowlist=["10.0.0.0/8"]))
    cluster.apply(policy("guard", namespace, requireIpAllowlistFor=["Write"]))
    refused = applied(cluster, role("invoices", namespace, WRITE_INVOICES))
    assert refused.returncode != 0
    assert ("ApiKeyRole invoices: this change would put 2 ApiKeys out of policy: "
            "ledger-sync (ApiKeyPolicy guard: write scopes require spec.ipAllowlist "
            "(Invoices.Write; requireIpAllowlistFor: Write)); payments-api (") \
        in refused.stderr, refused.stderr
    held = json.loads(kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikeyrole",
                              "invoices", "-o", "json").stdout)
    assert held["spec"]["permissions"] == [READ_INVOICES]  # unchanged


@pytest.mark.parametrize("enforcement", ["Warn", "Deactivate"])
def test_a_key_that_predates_a_policy_is_warned_or_deactivated_per_enforcement(
    enforcement: str, webhooks: Operator, ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "old-key", expiration="180d",
                scopes=["Reviews.Read"])
    made = applied(cluster, policy("guard", namespace, maxExpiration="90d",
                                   enforcement=enforcement))
    assert made.returncode == 0, made.stderr
    # the person applying the policy is told which keys it finds out of line
    assert "keywright: 1 ApiKey in" in made.stderr, made.stderr
    assert "already breaks ApiKeyPolicy guard: old-key" in made.stderr

    def violated() -> dict[str, Any] | None:
        found = condition(cluster, namespace, "old-key", "PolicyCompliant")
        return found if found and found["status"] == "False" else None
    found = eventually(violated, timeout=10, what="PolicyCompliant=False")
    why = "ApiKeyPolicy guard: spec.expiration 180d is longer than maxExpiration 90d"
    assert (found["reason"], found["message"]) == ("PolicyViolation", why)
    eventually(lambda: "PolicyViolation" in cluster.reasons(namespace, "old-key"),
               timeout=10, what="a PolicyViolation event")
    if enforcement == "Warn":
        assert cluster.status(namespace, "old-key")["phase"] == "Active"
        assert ready.get("/verify", {"X-API-Key": key})[2] == answer("OK")
    else:
        status = cluster.wait_phase(namespace, "old-key", "Inactive", timeout=10)
        assert status["deactivated"]["reason"] == "PolicyViolation"
        eventually(lambda: ready.get("/verify", {"X-API-Key": key})[2] == answer("INACTIVE"),
                   timeout=5, what="the verifier refusing the deactivated key")
    eventually(lambda: status_of(cluster, namespace, "apikeypolicies", "guard").get(
        "violating") == 1, timeout=10, what="the policy counting its violation")
    policy_status = status_of(cluster, namespace, "apikeypolicies", "guard")
    assert policy_status["keys"] == 1
    assert [c["status"] for c in policy_status["conditions"] if c["type"] == "Ready"] == \
        ["True"]

    # the policy goes: the key is back as it was, and says so
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "apikeypolicy", "guard")
    eventually(lambda: condition(cluster, namespace, "old-key", "PolicyCompliant") is None,
               timeout=10, what="PolicyCompliant gone with the last policy")
    status = cluster.wait_phase(namespace, "old-key", "Active", timeout=10)
    assert "deactivated" not in status
    eventually(lambda: ready.get("/verify", {"X-API-Key": key})[2] == answer("OK"),
               timeout=5, what="the key working again")


def test_a_missing_role_is_a_condition_and_a_warning_and_a_role_counts_its_keys(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("early", namespace, roles=["invoices"]))
    cluster.wait_phase(namespace, "early", "Active")

    def resolved(status: str) -> dict[str, Any] | None:
        found = condition(cluster, namespace, "early", "RolesResolved")
        return found if found and found["status"] == status else None
    missing = eventually(lambda: resolved("False"), timeout=10, what="RolesResolved=False")
    assert (missing["reason"], missing["message"]) == (
        "RoleMissing", f"ApiKeyRole invoices not found in namespace {namespace}: its "
        "permissions are not granted")
    eventually(lambda: "RoleMissing" in cluster.reasons(namespace, "early"), timeout=10,
               what="a RoleMissing event")

    cluster.apply(role("invoices", namespace, READ_INVOICES))
    cluster.apply(apikey("late", namespace, roles=["invoices"]))
    eventually(lambda: resolved("True"), timeout=10, what="RolesResolved=True")
    eventually(lambda: status_of(cluster, namespace, "apikeyroles", "invoices").get("keys")
               == 2, timeout=10, what="the role counting two keys")
    ready = condition(cluster, namespace, "invoices", "Ready", "apikeyroles")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", "Valid")
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "apikey", "late")
    eventually(lambda: status_of(cluster, namespace, "apikeyroles", "invoices").get("keys")
               == 1, timeout=10, what="the role counting one key once the other is gone")
