"""ApiKeyPolicies and ApiKeyRoles as installed: the operator (webhooks on) and the
verifier run as their deploy/ ServiceAccounts. Every policy rule is refused at apply
time in its own words; a role edit that would put keys out of policy is refused,
listing them; keys that predate a policy are warned or deactivated per `enforcement`;
roles and policies say in their status how many keys they concern."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from keywright import kube
from keywright.controller import catalog, summaries
from keywright.dev import controlplane
from tests.support.audit import operator_writes
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


def test_a_restart_writes_nothing_to_keys_roles_or_policies_that_have_not_changed(
    webhooks: Operator, cluster: Cluster, namespace: str,
    control_plane: controlplane.ControlPlane
) -> None:
    cluster.apply(role("invoices", namespace, READ_INVOICES))
    cluster.apply(apikey("keeps", namespace, roles=["invoices"], expiration="30d"))
    cluster.apply(apikey("lacks", namespace, roles=["invoices", "gone"]))
    cluster.apply(policy("guard", namespace, maxExpiration="60d"))
    cluster.apply(policy("strict", namespace, nameFormat="^(keeps|later)$"))  # "lacks" breaks it
    eventually(lambda: status_of(cluster, namespace, "apikeypolicies", "strict").get(
        "violating") == 1 and status_of(cluster, namespace, "apikeyroles", "invoices").get(
        "keys") == 2, timeout=15, what="roles and policies counted")
    time.sleep(summaries.DELAY + 1)  # anything still coalescing is written
    told = {name: cluster.events(namespace, name) for name in ("keeps", "lacks")}
    assert ("Warning", "RoleMissing") in [e[:2] for e in told["lacks"]]
    assert ("Warning", "PolicyViolation") in [e[:2] for e in told["lacks"]]
    began = time.time()
    webhooks.stop()
    assert webhooks.popen is not None
    assert webhooks.popen.returncode == 0  # asked to stop (SIGTERM): a clean exit
    webhooks.start(extra=webhooks.extra)
    # the restarted operator is at work: a new key moves the role's count to 3
    cluster.apply(apikey("later", namespace, roles=["invoices"]))
    eventually(lambda: status_of(cluster, namespace, "apikeyroles", "invoices").get(
        "keys") == 3, timeout=15, what="the restarted operator counting a new key")
    written = [w for w in operator_writes(control_plane, namespace, began)
               if not w.endswith(" later") and not w.startswith("create events/")]
    # events carry no name in the audit log: none new about the keys already there
    assert {name: cluster.events(namespace, name) for name in told} == told
    # only what the new key caused: its Secret and status (left out), the counts it moved
    assert sorted(set(written)) == sorted({
        "patch apikeypolicies/status guard", "patch apikeypolicies/status strict",
        "patch apikeyroles/status invoices"}), written


def test_one_listing_at_start_tells_the_catalog_every_role_policy_and_count(
    cluster: Cluster, namespace: str
) -> None:
    """What `prime` reads before the first reconcile (no watch event needed): so that a
    restart judges no key by a role or policy it has not seen yet."""
    cluster.apply(role("invoices", namespace, READ_INVOICES))
    cluster.apply(apikey("keeps", namespace, roles=["invoices"]))
    cluster.apply(apikey("lacks", namespace, roles=["invoices", "gone"], expiration="90d"))
    cluster.apply(policy("guard", namespace, maxExpiration="60d"))
    api = kube.Kube.connect(str(cluster.kubeconfig))
    try:
        found = catalog.Catalog()
        found.prime(api)
    finally:
        api.close()
    facts = found.facts(namespace, ["invoices", "gone"])
    assert ([p.name for p in facts.policies], set(facts.roles)) == (["guard"], {"invoices"})
    counted = {plural: (found.status(plural, namespace, name) or ({}, None))[0]
               for plural, name in (("apikeyroles", "invoices"), ("apikeypolicies", "guard"))}
    assert counted["apikeyroles"]["keys"] == 2
    assert (counted["apikeypolicies"]["keys"], counted["apikeypolicies"]["violating"]) == (2, 1)


def test_kubectl_explains_policies_and_lists_them_with_their_counts(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    explained = kubectl(cluster.kubeconfig, "explain", "apikeypolicy.spec.enforcement").stdout
    assert "Deactivate" in explained
    assert "requireIpAllowlistFor" in kubectl(cluster.kubeconfig, "explain",
                                              "akp.spec").stdout
    cluster.apply(apikey("listed", namespace, expiration="90d"))
    cluster.apply(policy("guard", namespace, maxExpiration="30d"))
    eventually(lambda: status_of(cluster, namespace, "apikeypolicies", "guard").get(
        "violating") == 1, timeout=10, what="the policy counting its violation")
    header, row = kubectl(cluster.kubeconfig, "-n", namespace, "get", "akp").stdout.splitlines()
    assert header.split() == ["NAME", "READY", "ENFORCEMENT", "KEYS", "VIOLATING", "AGE"]
    assert row.split()[:5] == ["guard", "True", "Warn", "1", "1"]
