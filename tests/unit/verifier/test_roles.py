"""Roles in the verifier, as tables: a key's roles resolved in its namespace decide what
it may do; a role's change decides the next request; a missing, deleted or unreadable
role grants nothing; the 200 answer names roles, permissions and row filters. The ASGI
app called directly: no server, no cluster."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import yaml

from keywright.core import admission, compliance, models
from keywright.core.permissions import Permission
from keywright.verifier import app, decision, index
from tests.support.k8s import REPO
from tests.support.keys import KEY, NOW, PEPPERS, apikey

TEAM = (("team", "${context.team}"),)
INVOICE_READER = (Permission("Invoices", ("Read",), TEAM),)
INVOICE_WRITER = (Permission("Invoices", ("Write",)),)


def keys_with(table: dict[str, tuple[Permission, ...]], namespace: str = "pay",
              **spec: Any) -> index.Index:
    """The usual key (in namespace pay, Reviews.Read, context team=payments) with `spec`
    changed, and the roles `table` in `namespace`."""
    keys = index.Index()
    keys.replace_all([apikey(**{"scopes": ["Reviews.Read"], "context": {"team": "payments"},
                                **spec})])
    keys.replace_roles([(namespace, name, granted) for name, granted in table.items()])
    return keys


def decide(keys: index.Index, *scopes: str) -> str:
    ask = decision.Ask({"x-api-key": [KEY.encode()]}, "203.0.113.9", frozenset(scopes))
    return decision.decide(ask, keys, PEPPERS, NOW).code


@pytest.mark.parametrize(("roles", "namespace", "named", "scope", "code"), [
    pytest.param({"invoice-reader": INVOICE_READER}, "pay", ["invoice-reader"],
                 "Invoices.Read", "OK", id="a role grants its permission"),
    pytest.param({"invoice-reader": INVOICE_READER}, "pay", ["invoice-reader"],
                 "Reviews.Read", "OK", id="the key's own scopes still count"),
    pytest.param({"invoice-reader": INVOICE_READER}, "pay", ["invoice-reader"],
                 "Invoices.Write", "INSUFFICIENT_SCOPE", id="and nothing more"),
    pytest.param({"invoice-writer": INVOICE_WRITER}, "pay", ["invoice-writer"],
                 "Invoices.Read", "OK", id="a role's Write grants Read"),
    pytest.param({"invoice-reader": INVOICE_READER}, "pay", ["invoice-writer"],
                 "Invoices.Read", "INSUFFICIENT_SCOPE",
                 id="a missing role grants nothing: closed, not a typo's 500"),
    pytest.param({"invoice-reader": INVOICE_READER}, "other", ["invoice-reader"],
                 "Invoices.Read", "INSUFFICIENT_SCOPE",
                 id="a role of another namespace grants nothing"),
    pytest.param({}, "pay", [], "Invoices.Read", "INVALID_REQUIREMENT",
                 id="an area no key and no role grants is the gateway's mistake"),
    pytest.param({}, "pay", ["gone"], "Invoices.Read", "INSUFFICIENT_SCOPE",
                 id="unless the key names a missing role, which may have granted it"),
])
def test_roles_decide(roles: dict[str, tuple[Permission, ...]], namespace: str,
                      named: list[str], scope: str, code: str) -> None:
    assert decide(keys_with(roles, namespace, roles=named), scope) == code


def test_a_role_change_decides_the_next_request() -> None:
    keys = keys_with({"invoice-reader": INVOICE_READER}, roles=["invoice-reader"])
    assert decide(keys, "Invoices.Read") == "OK"
    keys.set_role("pay", "invoice-reader", (Permission("Invoices", ("Delete",)),))
    assert decide(keys, "Invoices.Read") == "INSUFFICIENT_SCOPE"
    assert decide(keys, "Invoices.Delete") == "OK"
    keys.remove_role("pay", "invoice-reader")
    assert decide(keys, "Invoices.Delete") == "INSUFFICIENT_SCOPE"
    keys.set_role("pay", "invoice-reader", INVOICE_READER)
    assert decide(keys, "Invoices.Read") == "OK"
    keys.set_role("pay", "invoice-reader", None)  # a spec that cannot be read
    assert decide(keys, "Invoices.Read") == "INSUFFICIENT_SCOPE"


def test_a_new_list_of_roles_replaces_only_its_namespace() -> None:
    keys = keys_with({"invoice-reader": INVOICE_READER}, roles=["invoice-reader"])
    keys.replace_roles([], "elsewhere")
    assert decide(keys, "Invoices.Read") == "OK"
    keys.replace_roles([], "pay")
    assert decide(keys, "Invoices.Read") == "INSUFFICIENT_SCOPE"


def served(keys: index.Index, path: str, query: bytes, key: str = KEY,
           client: str = "203.0.113.9") -> list[dict[str, Any]]:
    """What the app sends for one GET with the key: the ASGI messages, no server."""
    verifier = app.Verifier(keys, lambda: PEPPERS, lambda: True, lambda: 0.0,
                            app.VerifierSettings(audit=False))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)
    asyncio.run(verifier({"type": "http", "method": "GET", "path": path,
                          "query_string": query, "headers": [(b"x-api-key", key.encode())],
                          "client": (client, 40000)}, receive, send))
    return sent


def answer(keys: index.Index, query: bytes, client: str = "203.0.113.9") -> dict[str, str]:
    """The headers of the app's answer to /verify?<query> with the usual key; a 200."""
    sent = served(keys, "/verify", query, client=client)
    assert sent[0]["status"] == 200
    return {k.decode(): v.decode() for k, v in sent[0]["headers"]}


def filters(headers: dict[str, str]) -> Any:
    value = headers["x-keywright-filters"]
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def test_a_200_names_the_roles_the_permissions_and_the_filters_asked_for() -> None:
    keys = keys_with({"invoice-reader": INVOICE_READER}, roles=["invoice-reader", "gone"])
    headers = answer(keys, b"scope=Invoices.Read")
    assert headers["x-keywright-roles"] == "invoice-reader"  # the ones found
    assert headers["x-keywright-permissions"] == "Invoices.Read,Reviews.Read"
    assert filters(headers) == {"v": 1, "filters": {"Invoices": {"Read": [
        {"team": "payments"}]}}}
    assert filters(answer(keys, b"scope=Reviews.Read")) == {"v": 1, "filters": {}}
    assert filters(answer(keys, b"")) == {"v": 1, "filters": {"Invoices": {"Read": [
        {"team": "payments"}]}}}


def test_a_key_without_roles_says_its_permissions_and_no_filters() -> None:
    headers = answer(keys_with({}, scopes=["Reviews.Write"]), b"")
    assert "x-keywright-roles" not in headers
    assert headers["x-keywright-permissions"] == "Reviews.Read,Reviews.Write"
    assert filters(headers) == {"v": 1, "filters": {}}


def contract_block(name: str) -> str:
    text = (REPO / "docs" / "reference" / "api.md").read_text()
    after = text[text.index(f"<!-- contract-example: {name} -->"):]
    start = after.index("\n", after.index("```")) + 1
    return after[start:after.index("\n```", start)]


def test_the_contracts_worked_example_is_what_the_verifier_and_the_policy_say() -> None:
    """docs/reference/api.md's role, policy and key: the headers it shows are the 200's,
    and the refusal it quotes is the policy's, word for word."""
    role, guard, key = yaml.safe_load_all(contract_block("manifests"))
    namespace = key["metadata"]["namespace"]
    keys = index.Index()
    keys.replace_all([apikey(key["metadata"]["name"], namespace, **key["spec"])])
    keys.replace_roles([(namespace, role["metadata"]["name"], models.role_permissions(
        models.validate_role_spec(role["spec"])))])
    got = {k: v for k, v in answer(keys, b"scope=Invoices.Write", "203.0.113.7").items()
           if k.startswith("x-keywright-")}
    shown = dict(line.split(": ", 1) for line in contract_block("headers").splitlines())
    assert {k.lower(): v for k, v in shown.items()} == got
    decoded = json.dumps(filters(got), separators=(",", ":"), sort_keys=True)
    assert f"`{decoded}`" in (REPO / "docs" / "reference" / "api.md").read_text()

    facts = compliance.facts_of(namespace, [guard], [role])
    admission.check_apikey_policies("CREATE", key, None, facts, "kw")  # admitted as shown
    unfenced = {**key, "spec": {k: v for k, v in key["spec"].items() if k != "ipAllowlist"}}
    with pytest.raises(admission.Refused) as refused:
        admission.check_apikey_policies("CREATE", unfenced, None, facts, "kw")
    text = " ".join((REPO / "docs" / "reference" / "api.md").read_text().split())
    assert f"`{refused.value}`" in text


def checked(keys: index.Index, query: bytes, key: str = KEY) -> tuple[int, Any]:
    sent = served(keys, "/check", query, key)
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_check_says_what_verify_would_and_whose_key_it_is_without_spending_anything() -> None:
    keys = keys_with({}, rateLimit={"requests": 1, "period": "1h"},
                     ipAllowlist=["198.51.100.0/24"])
    for _ in range(3):  # a rate of one an hour: a check spends nothing
        status, found = checked(keys, b"scope=Reviews.Read")
        assert status == 200
        assert found == {"code": "OK", "status": 200, "apikey": {
            "namespace": "pay", "name": "billing", "revision": 2,
            "lastCharacters": KEY[-4:], "retiresAt": None}}  # the address is not judged
    answer(keys, b"scope=Reviews.Read", "198.51.100.7")  # the one request of the hour: 200
    assert checked(keys, b"scope=Reviews.Write")[1]["code"] == "INSUFFICIENT_SCOPE"
    assert checked(keys, b"", key=KEY[:-1] + "x")[1] == {"code": "MALFORMED_KEY",
                                                          "status": 401}
