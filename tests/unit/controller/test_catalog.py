"""The operator's catalog of roles and policies, and the status it asks for: which keys a
change sends back to be judged, what each status should say, and that nothing is
written when it already says so. No cluster: the catalog is memory, the patch pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from keywright.controller import catalog, summaries
from keywright.core import names
from tests.support.manifests import policy, role

ROLES, POLICIES = names.ROLE_PLURAL, names.POLICY_PLURAL
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def filled() -> catalog.Catalog:
    """Namespace pay: role invoices, three keys (two naming it), policy guard broken by
    one; namespace other: one key."""
    found = catalog.Catalog()
    found.put(ROLES, role("invoices", "pay", {"area": "Invoices", "actions": ["Read"]}))
    found.put(POLICIES, policy("guard", "pay", maxExpiration="90d"))
    found.record("pay", "a", ["invoices"], [])
    found.record("pay", "b", ["invoices"], ["guard"])
    found.record("pay", "c", [], [])
    found.record("other", "d", ["invoices"], [])
    return found


def with_status(manifest: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "status": status}


def test_a_policy_change_sends_back_every_key_of_its_namespace_and_no_other() -> None:
    found = filled()
    assert found.put(POLICIES, policy("guard", "pay", maxExpiration="30d")) == {
        ("pay", "a"), ("pay", "b"), ("pay", "c")}


def test_a_role_change_sends_back_only_the_keys_that_name_it() -> None:
    found = filled()
    changed = role("invoices", "pay", {"area": "Invoices", "actions": ["Write"]})
    assert found.put(ROLES, changed) == {("pay", "a"), ("pay", "b")}
    assert found.remove(ROLES, "pay", "invoices") == {("pay", "a"), ("pay", "b")}
    assert found.remove(ROLES, "pay", "invoices") == set()  # gone already


def test_an_echo_of_a_status_write_sends_back_nothing() -> None:
    found = filled()
    echo = with_status(policy("guard", "pay", maxExpiration="90d"), {"keys": 3})
    assert found.put(POLICIES, echo) == set()


def test_facts_hold_the_policies_and_the_named_roles_that_exist() -> None:
    facts = filled().facts("pay", ["invoices", "gone"])
    assert [p.name for p in facts.policies] == ["guard"]
    assert set(facts.roles) == {"invoices"}
    assert filled().facts("elsewhere", ["invoices"]).roles == {}


def test_what_a_reconcile_records_marks_the_counts_it_moves() -> None:
    found = filled()
    assert found.record("pay", "a", ["invoices"], []) == set()  # nothing new
    assert found.record("pay", "a", ["invoices"], ["guard"]) == {(POLICIES, ("pay", "guard"))}
    assert found.record("pay", "c", ["invoices"], []) == {(ROLES, ("pay", "invoices"))}
    assert found.forget("pay", "c") == {(ROLES, ("pay", "invoices")),
                                        (POLICIES, ("pay", "guard"))}
    assert found.record("pay", "e", [], []) == {(POLICIES, ("pay", "guard"))}  # keys: +1


def test_statuses_count_their_keys_in_their_own_namespace() -> None:
    found = filled()
    wanted, _ = found.status(ROLES, "pay", "invoices") or ({}, None)
    assert wanted == {"keys": 2, "ready": ("True", "Valid", "1 permission in Invoices")}
    wanted, _ = found.status(POLICIES, "pay", "guard") or ({}, None)
    assert wanted == {"keys": 3, "violating": 1, "ready": (
        "True", "Enforced", "enforced on every ApiKey in pay (enforcement Warn)")}
    found.put(ROLES, role("broken", "pay"))  # no permissions: a spec the operator refuses
    wanted, _ = found.status(ROLES, "pay", "broken") or ({}, None)
    assert wanted["ready"][:2] == ("False", "InvalidSpec")
    assert found.status(ROLES, "pay", "gone") is None


def test_a_status_already_right_is_not_written_again() -> None:
    found = filled()
    wanted, seen = found.status(POLICIES, "pay", "guard") or ({}, None)
    assert seen is not None
    first = summaries.status_patch(wanted, seen, NOW)
    assert first["keys"] == 3
    assert first["violating"] == 1
    assert [c["type"] for c in first["conditions"]] == ["Ready"]
    # the status as written comes back through the watch: nothing more to write
    found.put(POLICIES, with_status(policy("guard", "pay", maxExpiration="90d"), first))
    wanted, seen = found.status(POLICIES, "pay", "guard") or ({}, None)
    assert seen is not None
    assert summaries.status_patch(wanted, seen, NOW) == {}
    found.record("pay", "c", [], ["guard"])  # one more key breaks it
    wanted, seen = found.status(POLICIES, "pay", "guard") or ({}, None)
    assert seen is not None
    assert summaries.status_patch(wanted, seen, NOW) == {"violating": 2}


def test_a_new_description_sends_back_nothing_but_a_new_rule_does() -> None:
    found = filled()
    described = policy("guard", "pay", maxExpiration="90d", description="why")
    assert found.put(POLICIES, described) == set()
    reworded = role("invoices", "pay", {"area": "Invoices", "actions": ["Read"]})
    reworded["spec"]["description"] = "reads invoices"
    assert found.put(ROLES, reworded) == set()
    enforced = policy("guard", "pay", maxExpiration="90d", description="why",
                      enforcement="Deactivate")
    assert found.put(POLICIES, enforced) == {("pay", "a"), ("pay", "b"), ("pay", "c")}
