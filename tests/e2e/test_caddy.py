"""The verifier behind Debian's Caddy (2.6.2 on bookworm) with `forward_auth`, configured
as docs/gateways.md recommends (tests/support/gateway.py makes the Caddyfile for both),
in front of the local control plane, the operator and `keywright verifier`.

Caddy 2.6 calls the verifier from 127.0.0.1 (it cannot choose another address), so this
module runs a verifier of its own that trusts 127.0.0.1 as its proxy, and its clients
come to Caddy from 127.0.0.3 (or 127.0.0.4), which nothing trusts.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from keywright.core import tokens
from tests.support import gateway
from tests.support.k8s import Cluster, Operator, Plaintext, Response, Verifier, answer, issue
from tests.support.manifests import role
from tests.support.waiting import eventually

CHALLENGE = 'Bearer realm="keywright"'
ELSEWHERE = "127.0.0.4"  # another client, not the one a key is allowed for


@pytest.fixture(scope="module")
def home(api: client.ApiClient) -> str:
    """The namespace Caddy's /team/ route requires."""
    name = f"caddy-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def behind_caddy(accounts: dict[str, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verifier]:
    """A verifier that trusts Caddy's address (127.0.0.1) as its proxy, and no other."""
    running = Verifier(accounts["verifier"], tmp_path_factory.mktemp("verifier-caddy"),
                       "--trusted-proxy", "127.0.0.1/32")
    running.start(wait_ready=False)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def caddy(behind_caddy: Verifier, home: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway.Caddy]:
    upstream = gateway.Upstream()
    front = gateway.Caddy(tmp_path_factory.mktemp("caddy"), behind_caddy.port, upstream.port,
                          home)
    front.start()
    try:
        eventually(lambda: front.get("/")[0] != 0, timeout=10, what="caddy up")
        yield front
    finally:
        front.stop()
        upstream.stop()


@pytest.fixture(scope="module")
def keys(cluster: Cluster, operator: Operator, behind_caddy: Verifier, home: str,
         api: client.ApiClient) -> dict[str, Plaintext]:
    operator.ensure_running()
    behind_caddy.ensure_ready()
    other = f"caddy-other-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    cluster.apply(role("team-invoices", home, {"area": "Invoices", "actions": ["Read"],
                                                "filter": {"team": "${context.team}"}}))
    # the test process asks the verifier from 127.0.0.1, Caddy's address, with no
    # X-Forwarded-For: the verifier takes 127.0.0.1 for the client then
    return {
        "reader": issue(cluster, behind_caddy, home, "reader", scopes=["Invoices.Read"],
                        context={"team": "payments"}, ipAllowlist=["127.0.0.0/8"]),
        "by-role": issue(cluster, behind_caddy, home, "by-role",
                         probe="/verify?scope=Invoices.Read", scopes=["Reviews.Read"],
                         roles=["team-invoices"], context={"team": "payments"}),
        "near": issue(cluster, behind_caddy, home, "near", expect="IP_NOT_ALLOWED",
                      scopes=["Invoices.Read"], ipAllowlist=[f"{gateway.CADDY_CLIENT}/32"]),
        "faraway": issue(cluster, behind_caddy, home, "faraway", expect="IP_NOT_ALLOWED",
                         scopes=["Invoices.Read"], ipAllowlist=["203.0.113.0/24"]),
        "stranger": issue(cluster, behind_caddy, other, "stranger", scopes=["Invoices.Read"]),
        # the Admin area is one some key grants: /admin/'s Admin.Write is a scope the
        # reader lacks (403), not a typo of the gateway's (500)
        "admin": issue(cluster, behind_caddy, home, "admin", scopes=["Admin.Read"]),
    }


def upstream_saw(response: Response) -> dict[str, str]:
    """The headers the upstream received, as it echoed them."""
    status, _, body = response
    assert status == 200, body
    seen: dict[str, str] = json.loads(body)
    return seen


def keywright_headers(seen: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in seen.items() if name.startswith("x-keywright-")}


def decoded(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


NO_FILTERS = base64.urlsafe_b64encode(b'{"filters":{},"v":1}').rstrip(b"=").decode()
FORGED = {"X-Keywright-Name": "root", "X-Keywright-Namespace": "kube-system",
          "X-Keywright-Scopes": "Admin.Write", "X-Keywright-Context-Team": "admins",
          "X-Keywright-Context-Tier": "gold", "X-Keywright-Roles": "admin",
          "X-Keywright-Permissions": "Admin.Delete", "X-Keywright-Filters": "e30",
          # a requirement of the client's own, that no key can meet: if it reached the
          # verifier, the answer would be a 500
          "X-Keywright-Scope": "invoices.read"}


def test_the_upstream_gets_the_verifiers_identity_and_none_the_client_forged(
    caddy: gateway.Caddy, keys: dict[str, Plaintext], home: str
) -> None:
    """Every X-Keywright-* header the client sends is dropped before the verifier is
    asked; the upstream gets the verifier's, and no X-Keywright-Roles for a key without
    roles (neither the client's nor Caddy 2.6's unreplaced placeholder)."""
    seen = upstream_saw(caddy.get("/invoices/list", {"X-API-Key": keys["reader"], **FORGED}))
    assert keywright_headers(seen) == {
        "x-keywright-namespace": home, "x-keywright-name": "reader",
        "x-keywright-scopes": "Invoices.Read", "x-keywright-context-team": "payments",
        "x-keywright-permissions": "Invoices.Read", "x-keywright-filters": NO_FILTERS}


def test_a_key_with_a_role_brings_its_roles_permissions_and_filters(
    caddy: gateway.Caddy, keys: dict[str, Plaintext], home: str
) -> None:
    seen = upstream_saw(caddy.get("/invoices/list", {"X-API-Key": keys["by-role"], **FORGED}))
    found = keywright_headers(seen)
    assert found.pop("x-keywright-roles") == "team-invoices"
    assert found.pop("x-keywright-permissions") == "Invoices.Read,Reviews.Read"
    assert decoded(found.pop("x-keywright-filters")) == {
        "v": 1, "filters": {"Invoices": {"Read": [{"team": "payments"}]}}}
    assert found == {"x-keywright-namespace": home, "x-keywright-name": "by-role",
                     "x-keywright-scopes": "Reviews.Read",
                     "x-keywright-context-team": "payments"}


@pytest.mark.parametrize(("authorization", "passed"), gateway.KEY_CARRIERS)
def test_the_key_never_reaches_the_upstream_whichever_header_carried_it(
    caddy: gateway.Caddy, keys: dict[str, Plaintext], authorization: str, passed: bool
) -> None:
    headers = gateway.carrying(keys["reader"], authorization)
    response = caddy.get("/invoices/list", headers)
    seen = upstream_saw(response)
    assert seen.get("authorization") == (authorization if passed else None)
    assert "x-api-key" not in seen
    assert seen["x-keywright-name"] == "reader"  # the verifier did get the key
    leaked = keys["reader"] in response[2].decode()
    assert not leaked, "the upstream received the key"


@pytest.mark.parametrize(("key", "source", "forwarded", "status"), [
    pytest.param("near", gateway.CADDY_CLIENT, None, 200,
                 id="the client's own address, from Caddy, meets the allowlist"),
    pytest.param("near", ELSEWHERE, gateway.CADDY_CLIENT, 403,
                 id="another client claiming that address in X-Forwarded-For does not"),
    pytest.param("faraway", gateway.CADDY_CLIENT, "203.0.113.7", 403,
                 id="nor does a client claiming an address inside a far allowlist"),
])
def test_the_verifier_takes_the_client_address_caddy_sets_never_the_clients_claim(
    caddy: gateway.Caddy, behind_caddy: Verifier, keys: dict[str, Plaintext], key: str,
    source: str, forwarded: str | None, status: int
) -> None:
    """Caddy (127.0.0.1, trusted) sets X-Forwarded-For to the address the client came
    from, dropping the one the client sent; X-Real-IP is not read beside it."""
    claims = {"X-Forwarded-For": forwarded, "X-Real-IP": forwarded} if forwarded else {}
    uri = f"/invoices/{uuid.uuid4().hex}"
    got, headers, body = caddy.get(uri, {"X-API-Key": keys[key], **claims}, source=source)
    assert got == status, body
    if status == 403:
        assert (body, headers["x-keywright-code"]) == (answer("IP_NOT_ALLOWED"),
                                                       "IP_NOT_ALLOWED")
    line = eventually(lambda: [a for a in behind_caddy.audit_lines() if a["uri"] == uri],
                      timeout=5, what="the audit line")
    assert [a["client"] for a in line] == [source]  # not Caddy's 127.0.0.1, not the claim


@pytest.mark.parametrize(("path", "who", "status", "code"), [
    pytest.param("/invoices/", None, 401, "MISSING_KEY", id="no key is 401"),
    pytest.param("/invoices/", "broken", 401, "MALFORMED_KEY", id="a wrong checksum is 401"),
    pytest.param("/invoices/", "unknown", 401, "INVALID_KEY", id="an unknown key is 401"),
    pytest.param("/team/", "stranger", 401, "INVALID_KEY",
                 id="a key from another namespace is 401, like an unknown one"),
    pytest.param("/admin/", "reader", 403, "INSUFFICIENT_SCOPE", id="a missing scope is 403"),
    pytest.param("/invoices/", "faraway", 403, "IP_NOT_ALLOWED",
                 id="an address outside the allowlist is 403"),
])
def test_each_refusal_reaches_the_client_as_the_verifier_said_it_and_is_audited_by_its_uri(
    caddy: gateway.Caddy, behind_caddy: Verifier, keys: dict[str, Plaintext], path: str,
    who: str | None, status: int, code: str
) -> None:
    """Status, body, code header and challenge as the verifier answered (Caddy hands a
    refusal back whole); the audit line names the URI the client asked for, not the
    X-Original-URI or X-Forwarded-Uri it sent."""
    sent = {"X-Original-URI": "/forged", "X-Forwarded-Uri": "/forged"}
    if who == "broken":
        key = keys["reader"]
        sent["X-API-Key"] = Plaintext(key[:-1] + ("A" if key[-1] != "A" else "B"))
    elif who == "unknown":
        sent["X-API-Key"] = tokens.generate("kw")
    elif who is not None:
        sent["X-API-Key"] = keys[who]
    uri = f"{path}{uuid.uuid4().hex}?page=2"
    got, headers, body = caddy.get(uri, sent)
    assert (got, body) == (status, answer(code))
    assert headers["x-keywright-code"] == code
    assert headers.get("www-authenticate") == (CHALLENGE if status == 401 else None)
    line = eventually(lambda: [a for a in behind_caddy.audit_lines() if a["uri"] == uri],
                      timeout=5, what="the audit line")
    assert [a["code"] for a in line] == [code]


def test_a_gateways_impossible_requirement_reaches_the_client_as_the_verifiers_500(
    caddy: gateway.Caddy, keys: dict[str, Plaintext]
) -> None:
    """/typo/ asks for Invocies.Read: the client gets the verifier's 500 and its code, not
    the upstream (nginx's auth_request would have turned it into a bare 500)."""
    status, headers, body = caddy.get("/typo/x", {"X-API-Key": keys["reader"]})
    assert (status, body) == (500, answer("INVALID_REQUIREMENT"))
    assert headers["x-keywright-code"] == "INVALID_REQUIREMENT"


RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                      "ratelimit-policy", "ratelimit")


def told(response: Response) -> dict[str, str]:
    """The rate-limit headers of an answer Caddy gave its client."""
    return {name: value for name, value in response[1].items() if name in RATE_LIMIT_HEADERS}


def test_past_its_rate_limit_a_client_gets_429_with_retry_after_and_is_told_its_limit(
    caddy: gateway.Caddy, behind_caddy: Verifier, cluster: Cluster, namespace: str
) -> None:
    # 3 an hour; the probe asks for a scope the key lacks (a refusal takes no token)
    key = issue(cluster, behind_caddy, namespace, "limited",
                probe="/verify?scope=Invoices.Write", expect="INSUFFICIENT_SCOPE",
                scopes=["Invoices.Read"], rateLimit={"requests": 3, "period": "1h"})
    answers = [caddy.get("/invoices/", {"X-API-Key": key}) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    for response in answers[:3]:  # the upstream's answers, proxied
        assert upstream_saw(response)["x-keywright-name"] == "limited"
    seen = [told(response) for response in answers]
    assert [headers["x-ratelimit-remaining"] for headers in seen] == ["2", "1", "0", "0"]
    for headers in seen:
        reset = int(headers["x-ratelimit-reset"])
        assert 3590 <= reset <= 3600  # the first request leaves the window in an hour
        assert headers == {
            "x-ratelimit-limit": "3", "x-ratelimit-remaining": headers["x-ratelimit-remaining"],
            "x-ratelimit-reset": str(reset), "ratelimit-policy": '"keywright";q=3;w=3600',
            "ratelimit": f'"keywright";r={headers["x-ratelimit-remaining"]};t={reset}'}
    _, headers, body = answers[3]
    assert (body, headers["x-keywright-code"]) == (answer("RATE_LIMITED"), "RATE_LIMITED")
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == headers["x-ratelimit-reset"]


def test_no_limit_means_no_rate_limit_headers(
    caddy: gateway.Caddy, keys: dict[str, Plaintext]
) -> None:
    ok = caddy.get("/invoices/", {"X-API-Key": keys["reader"]})
    refused = caddy.get("/invoices/", {"X-API-Key": tokens.generate("kw")})
    assert (ok[0], refused[0]) == (200, 401)
    assert (told(ok), told(refused)) == ({}, {})  # not even empty ones


def test_a_verifier_caddy_cannot_reach_lets_nothing_through_and_caddy_logs_no_key(
    caddy: gateway.Caddy, keys: dict[str, Plaintext]
) -> None:
    """/dead/ asks a port nothing listens on: 502, the upstream is not asked. Caddy logs
    the request's headers with the error; the Caddyfile's log filter keeps the key out."""
    status, _, body = caddy.get("/dead/x", {"X-API-Key": keys["reader"]})
    assert status == 502
    assert b"x-keywright" not in body  # not the upstream's echo
    eventually(lambda: "connection refused" in caddy.log.read_text(), timeout=5,
               what="Caddy's error line")
    leaked = keys["reader"] in caddy.log.read_text()
    assert not leaked, "Caddy's log holds the key"


def test_caddy_closes_idle_verifier_connections_before_the_verifier_does(
    caddy: gateway.Caddy
) -> None:
    """The verifier keeps an idle connection 75 s; Caddy, told so, keeps its own 60 s (by
    default 2 minutes) and as many idle ones as its default keeps."""
    routes = caddy.adapted()["apps"]["http"]["servers"]["srv0"]["routes"]
    transports = [handler["transport"] for handler in _handlers(routes)
                  if handler.get("handler") == "reverse_proxy" and "handle_response" in handler]
    assert len(transports) == 5  # one forward_auth per route
    for transport in transports:
        assert transport["keep_alive"] == {"idle_timeout": 60_000_000_000,
                                           "max_idle_conns_per_host": 32}


def _handlers(routes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for route in routes:
        for handler in route.get("handle", ()):
            yield handler
            yield from _handlers(handler.get("routes", ()))


def test_no_key_in_this_modules_verifier_or_caddy_logs(
    caddy: gateway.Caddy, behind_caddy: Verifier, keys: dict[str, Plaintext]
) -> None:
    """The session's hygiene scan reads the session verifier's logs, not this one's: each
    key goes through Caddy once more (the refused ones too), then neither the verifier's
    log and audit lines nor Caddy's log may hold it."""
    uri = f"/invoices/{uuid.uuid4().hex}"
    for key in keys.values():
        assert caddy.get(uri, {"X-API-Key": key})[0] in (200, 403)
    eventually(lambda: len([a for a in behind_caddy.audit_lines() if a["uri"] == uri])
               == len(keys), timeout=5, what="the audit lines")
    logs = behind_caddy.all_logs() + caddy.log.read_text()
    leaked = [name for name, key in keys.items() if key in logs]
    assert not leaked, f"keys in the logs: {leaked}"
