"""The verifier against docs/reference/api.md and docs/gateways.md, end to end: the local
control plane, the operator and `keywright verifier` as their ServiceAccounts, requests
straight to the verifier as a gateway would make them. Every expectation is the
contract's (lengths, codes, headers, audit fields), never a constant of the code.

Some tests run a verifier of their own (its own flags, or a fresh memory of use) next to
the session's; each stops it in a `finally`.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from keywright.core import tokens
from keywright.dev import controlplane
from tests.support.k8s import (
    Cluster,
    Operator,
    Plaintext,
    Relay,
    Response,
    Verifier,
    answer,
    issue,
    kubectl,
)
from tests.support.manifests import apikey
from tests.support.waiting import eventually

CHALLENGE = 'Bearer realm="keywright"'  # every 401, and only a 401, carries it
PROXY = "127.0.0.2"  # the session verifier runs with --trusted-proxy 127.0.0.2/32
ALLOWED, REFUSED = "203.0.113.7", "198.51.100.7"  # inside and outside 203.0.113.0/24


def now_stamp() -> str:
    """Now as status timestamps are written (RFC 3339, UTC, whole seconds), rounded down."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def unique_uri() -> str:
    return f"/v1/{uuid.uuid4().hex}?page=2"


def audit_line(verifier: Verifier, uri: str) -> dict[str, Any]:
    """The one audit line of the request sent with this (unique) original URI."""
    lines = eventually(lambda: [a for a in verifier.audit_lines() if a["uri"] == uri],
                       timeout=5, what=f"the audit line of {uri}")
    assert len(lines) == 1
    return lines[0]


def last_used(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The ApiKey's status once the verifier has written `lastUsedAt` into it."""
    def written() -> dict[str, Any] | None:
        status = cluster.status(namespace, name)
        return status if "lastUsedAt" in status else None
    return eventually(written, timeout=10, what=f"lastUsedAt of {namespace}/{name}")


def first_answer(verifier: Verifier, path: str, headers: dict[str, str]) -> Response:
    """The answer to the first request that finds the key: until the verifier has indexed
    it the key is unknown (INVALID_KEY), which is no use of it and takes no token."""
    def found() -> Response | None:
        response = verifier.get(path, headers)
        return None if response[2] == answer("INVALID_KEY") else response
    return eventually(found, timeout=10, interval=0.02, what="the verifier finding the key")


@pytest.fixture(scope="module")
def home(api: client.ApiClient) -> str:
    name = f"vc-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def keys(cluster: Cluster, operator: Operator, verifier: Verifier,
         home: str) -> dict[str, Plaintext]:
    """Keys several tests present, none rate-limited (no test can use another's up)."""
    operator.ensure_running()
    verifier.ensure_ready()
    return {
        "plain": issue(cluster, verifier, home, "plain", scopes=["Invoices.Read"]),
        "allowlisted": issue(cluster, verifier, home, "allowlisted", expect="IP_NOT_ALLOWED",
                             scopes=["Invoices.Read"], ipAllowlist=["203.0.113.0/24"]),
    }


@pytest.fixture
def another_namespace(api: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


# -- 1. every key the operator can issue verifies ----------------------------------------

@pytest.mark.parametrize(("prefix", "length"), [
    # the contract: <prefix>_<43-character body><6 check characters>, prefix 2 to 16
    pytest.param("ab", 2 + 1 + 43 + 6,
                 id="a 2-character prefix, the shortest, gives a 52-character key that verifies"),
    pytest.param("abcdefghijklmno", 15 + 1 + 43 + 6,
                 id="a 15-character prefix gives a 65-character key that verifies"),
    pytest.param("abcdefghijklmnop", 16 + 1 + 43 + 6,
                 id="a 16-character prefix, the longest, gives a 66-character key that verifies"),
])
def test_a_key_with_any_allowed_prefix_is_issued_and_verifies(
    ready: Verifier, cluster: Cluster, namespace: str, prefix: str, length: int
) -> None:
    name = f"prefix-{len(prefix)}"
    # `issue` waits for the verifier to answer OK for it: a key too long for the verifier
    # would be answered MALFORMED_KEY and never get there
    key = issue(cluster, ready, namespace, name, prefix=prefix, scopes=["Invoices.Read"])
    assert len(key) == length
    assert key.startswith(f"{prefix}_")
    assert cluster.status(namespace, name)["prefix"] == prefix
    # by X-API-Key and by Authorization: Bearer alike
    assert ready.get("/verify?scope=Invoices.Read", {"X-API-Key": key})[:3:2] == \
        (200, answer("OK"))
    assert ready.get("/verify?scope=Invoices.Read", {"Authorization": key.bearer()})[:3:2] == \
        (200, answer("OK"))


def test_a_value_one_character_longer_than_the_longest_key_is_malformed(
    ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "longest", prefix="abcdefghijklmnop")
    status, headers, body = ready.get("/verify", {"X-API-Key": Plaintext(key + "A")})
    assert (status, body) == (401, answer("MALFORMED_KEY"))
    assert headers["www-authenticate"] == CHALLENGE


# -- 2. a deleted ApiKey: its key refused at once, its rate limit and use forgotten ------

def test_deleting_an_apikey_refuses_its_key_at_once_and_forgets_its_rate_limit_and_use(
    ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    name, limit = "reborn", {"requests": 1, "period": "1h"}
    # each life has a Secret name of its own: the old Secret may outlive its ApiKey a
    # while (the garbage collector deletes it), and a new ApiKey never takes over a
    # Secret it does not own
    spec: dict[str, Any] = {"scopes": ["Invoices.Read"], "rateLimit": limit,
                            "secret": {"name": "reborn-first"}}
    no_token = "/verify?scope=Invoices.Write"  # refused for scope: takes no token
    issue(cluster, ready, namespace, name, probe=no_token, expect="INSUFFICIENT_SCOPE",
          **spec)
    # rotate once, so the old life's use is of revision 2, which the new life has not
    rotated = apikey(name, namespace, **spec)
    rotated["metadata"]["annotations"] = {"keywright.dev/rotate": "second"}
    cluster.apply(rotated)
    eventually(lambda: cluster.status(namespace, name).get("revision") == 2, what="revision 2")
    old = cluster.plaintext(namespace, "reborn-first")
    eventually(lambda: ready.get(no_token, {"X-API-Key": old})[2] ==
               answer("INSUFFICIENT_SCOPE"), timeout=10, what="revision 2 indexed")
    assert ready.get("/verify", {"X-API-Key": old})[:3:2] == (200, answer("OK"))
    assert ready.get("/verify", {"X-API-Key": old})[:3:2] == (429, answer("RATE_LIMITED"))
    last_used(cluster, namespace, name)  # the first life's use was reported once...
    # ...so the next use waits for the next minute: the verifier holds it, unreported
    assert ready.get("/verify", {"X-API-Key": old})[:3:2] == (429, answer("RATE_LIMITED"))

    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "apikey", name)
    deleted = time.monotonic()
    def unknown() -> Response | None:
        response = ready.get("/verify", {"X-API-Key": old})
        return response if response[2] == answer("INVALID_KEY") else None
    refused = eventually(unknown, timeout=2, interval=0.01,
                         what="INVALID_KEY for the deleted ApiKey's key")
    print(f"ApiKey deleted -> INVALID_KEY: {(time.monotonic() - deleted) * 1000:.0f} ms")
    assert refused[0] == 401
    assert refused[1]["www-authenticate"] == CHALLENGE

    # the same name again: a new ApiKey, with nothing of the old one's
    cluster.apply(apikey(name, namespace, **{**spec, "secret": {"name": "reborn-second"}}))
    fresh = cluster.wait_phase(namespace, name, "Active")
    assert "lastUsedAt" not in fresh
    assert "lastUsedByRevision" not in fresh
    new = cluster.plaintext(namespace, "reborn-second")
    assert new != old
    before = now_stamp()
    assert "lastUsedAt" not in cluster.status(namespace, name)  # not used yet: none
    # its first request: the old bucket (empty) is gone, so it has its one token
    assert first_answer(ready, "/verify", {"X-API-Key": new})[:3:2] == (200, answer("OK"))
    # reported at once, as for any ApiKey not reported on before (the old one's minute
    # does not hold it back), and with no revision 2: that was the old life's
    status = last_used(cluster, namespace, name)
    assert status["lastUsedAt"] >= before
    assert status["lastUsedByRevision"] == {"1": status["lastUsedAt"]}


def test_an_apikey_deleted_and_recreated_while_the_verifier_was_cut_off_starts_afresh(
    running_operator: Operator, cluster: Cluster, namespace: str, accounts: dict[str, Path],
    control_plane: controlplane.ControlPlane, tmp_path: Path
) -> None:
    """The verifier misses both events (its connection to the API server is down), and
    learns of the change only from its next full list: the same name, another ApiKey."""
    name, limit = "phoenix", {"requests": 1, "period": "1h"}
    spec: dict[str, Any] = {"scopes": ["Invoices.Read"], "rateLimit": limit,
                            "secret": {"name": "phoenix-first"}}
    relay = Relay(control_plane.server)
    cut_off = Verifier(relay.kubeconfig(accounts["verifier"], tmp_path / "kubeconfig"),
                       tmp_path)

    def since_sync() -> float:
        return float(json.loads(cut_off.get("/readyz")[2])["secondsSinceSync"])
    try:
        cut_off.start()
        no_token = "/verify?scope=Invoices.Write"  # refused for scope: takes no token
        old = issue(cluster, cut_off, namespace, name, probe=no_token,
                    expect="INSUFFICIENT_SCOPE", **spec)
        assert cut_off.get("/verify", {"X-API-Key": old})[:3:2] == (200, answer("OK"))
        assert cut_off.get("/verify", {"X-API-Key": old})[:3:2] == (429, answer("RATE_LIMITED"))
        last_used(cluster, namespace, name)  # reported once; the next use waits a minute
        assert cut_off.get("/verify", {"X-API-Key": old})[:3:2] == (429, answer("RATE_LIMITED"))

        relay.cut()
        eventually(lambda: since_sync() > 0, timeout=10, what="the verifier out of touch")
        kubectl(cluster.kubeconfig, "-n", namespace, "delete", "apikey", name)
        cluster.apply(apikey(name, namespace, **{**spec, "secret": {"name": "phoenix-second"}}))
        assert "lastUsedAt" not in cluster.wait_phase(namespace, name, "Active")
        new = cluster.plaintext(namespace, "phoenix-second")
        relay.mend()
        eventually(lambda: since_sync() == 0, timeout=20, what="the verifier in touch again")

        before = now_stamp()
        assert "lastUsedAt" not in cluster.status(namespace, name)  # not used yet: none
        assert first_answer(cut_off, "/verify", {"X-API-Key": new})[:3:2] == \
            (200, answer("OK"))  # a bucket of its own, full
        status = last_used(cluster, namespace, name)  # at once: nothing reported on it yet
        assert status["lastUsedAt"] >= before
        assert status["lastUsedByRevision"] == {"1": status["lastUsedAt"]}
        # and the old key opens nothing, as after any deletion
        assert cut_off.get("/verify", {"X-API-Key": old})[:3:2] == (401, answer("INVALID_KEY"))
    finally:
        cut_off.stop()
        relay.stop()


# -- 3. use is any request that presents a known key -------------------------------------

@pytest.mark.parametrize(("spec", "path", "code"), [
    pytest.param({"scopes": ["Invoices.Read"]}, "/verify?scope=Invoices.Write",
                 "INSUFFICIENT_SCOPE", id="a request refused for its scope counts as use"),
    pytest.param({"scopes": ["Invoices.Read"], "ipAllowlist": ["203.0.113.0/24"]},
                 "/verify?scope=Invoices.Read", "IP_NOT_ALLOWED",
                 id="a request refused for its address counts as use"),
])
def test_a_refused_request_with_a_known_key_shows_in_last_used_at(
    ready: Verifier, cluster: Cluster, namespace: str, spec: dict[str, Any], path: str,
    code: str
) -> None:
    cluster.apply(apikey("refused", namespace, **spec))
    cluster.wait_phase(namespace, "refused", "Active")
    key = cluster.plaintext(namespace, "refused")
    before = now_stamp()
    uri = unique_uri()
    # the only requests ever made with this key: refused, or not yet found (no use)
    status, _, body = first_answer(ready, path, {"X-API-Key": key, "X-Original-URI": uri})
    assert (status, body) == (403, answer(code))
    found = last_used(cluster, namespace, "refused")
    assert found["lastUsedAt"] >= before
    assert found["lastUsedByRevision"] == {"1": found["lastUsedAt"]}
    assert found["phase"] == "Active"  # the operator's fields are untouched
    line = audit_line(ready, uri)
    assert (line["code"], line["status"], line["name"]) == (code, 403, "refused")


def test_a_previous_key_presented_after_its_grace_counts_as_use_until_the_operator_drops_it(
    ready: Verifier, running_operator: Operator, cluster: Cluster, namespace: str,
    accounts: dict[str, Path], tmp_path: Path
) -> None:
    """api.md: use is noted "including a previous key past its grace until the operator
    removes it" from status.previous, which it does at retiresAt; with the operator down
    that lasts, and the key is answered INVALID_KEY yet its use is reported."""
    name, spec = "graceful", {"rotation": {"gracePeriod": "3s"}}
    cluster.apply(apikey(name, namespace, **spec))
    cluster.wait_phase(namespace, name, "Active")
    old = cluster.plaintext(namespace, name)
    rotated = apikey(name, namespace, **spec)
    rotated["metadata"]["annotations"] = {"keywright.dev/rotate": "now"}
    cluster.apply(rotated)
    def second() -> dict[str, Any] | None:
        status = cluster.status(namespace, name)
        return status if status.get("revision") == 2 else None
    retires_at = eventually(second, timeout=10, what="revision 2")["previous"][0]["retiresAt"]
    running_operator.kill()  # before retiresAt: nobody drops revision 1 from status
    fresh = Verifier(accounts["verifier"], tmp_path)  # a memory of use of its own
    try:
        assert [p["revision"] for p in cluster.status(namespace, name)["previous"]] == [1]
        fresh.start()  # ready: it has listed the ApiKey as it is now
        eventually(lambda: now_stamp() > retires_at, timeout=10, what="the grace over")
        before = now_stamp()
        uri = unique_uri()
        status, headers, body = fresh.get("/verify", {"X-API-Key": old,
                                                      "X-Original-URI": uri})
        assert (status, body) == (401, answer("INVALID_KEY"))
        assert headers["www-authenticate"] == CHALLENGE
        used = last_used(cluster, namespace, name)
        assert used["lastUsedByRevision"] == {"1": used["lastUsedAt"]}
        assert used["lastUsedAt"] >= before
        line = audit_line(fresh, uri)
        assert (line["code"], line["name"], line["revision"]) == ("INVALID_KEY", name, 1)
    finally:
        fresh.stop()
        running_operator.start()
    eventually(lambda: cluster.status(namespace, name).get("previous", []) == [],
               timeout=10, what="revision 1 retired by the operator")

    # removed from status, the old key matches nothing: no name in the audit line
    def matched_nothing() -> dict[str, Any] | None:
        uri = unique_uri()
        status, _, body = ready.get("/verify", {"X-API-Key": old, "X-Original-URI": uri})
        assert (status, body) == (401, answer("INVALID_KEY"))
        line = audit_line(ready, uri)
        return line if line["name"] is None else None
    line = eventually(matched_nothing, timeout=5, what="the retired key matching nothing")
    assert (line["namespace"], line["revision"], line["lastCharacters"]) == (None, None, None)


# -- 4. behind a trusted proxy: X-Real-IP when there is no X-Forwarded-For ---------------

@pytest.mark.parametrize(("headers", "expected", "code", "client"), [
    pytest.param({"X-Real-IP": ALLOWED}, 200, "OK", ALLOWED,
                 id="from a trusted proxy an allowed X-Real-IP gets in"),
    pytest.param({"X-Real-IP": REFUSED}, 403, "IP_NOT_ALLOWED", REFUSED,
                 id="from a trusted proxy an X-Real-IP outside the allowlist is refused"),
    pytest.param({"X-Real-IP": ALLOWED, "X-Forwarded-For": REFUSED}, 403, "IP_NOT_ALLOWED",
                 REFUSED, id="X-Forwarded-For, when there is one, wins over X-Real-IP"),
])
def test_behind_a_trusted_proxy_the_allowlist_is_checked_against_the_forwarded_address(
    ready: Verifier, keys: dict[str, Plaintext], headers: dict[str, str], expected: int,
    code: str, client: str
) -> None:
    uri = unique_uri()
    status, _, body = ready.request(
        "/verify", {"X-API-Key": keys["allowlisted"], "X-Original-URI": uri, **headers},
        source=PROXY)
    assert (status, body) == (expected, answer(code))
    assert audit_line(ready, uri)["client"] == client


def test_from_an_untrusted_peer_x_real_ip_is_ignored(
    ready: Verifier, keys: dict[str, Plaintext]
) -> None:
    uri = unique_uri()
    status, _, body = ready.get("/verify", {"X-API-Key": keys["allowlisted"],
                                            "X-Real-IP": ALLOWED, "X-Original-URI": uri})
    assert (status, body) == (403, answer("IP_NOT_ALLOWED"))
    assert audit_line(ready, uri)["client"] == "127.0.0.1"


# -- 5. the audit line: the original URI, and the method of any method -------------------

@pytest.mark.parametrize(("path", "header"), [
    pytest.param("/verify", "X-Original-URI", id="nginx and ingress-nginx send X-Original-URI"),
    pytest.param("/verify", "X-Forwarded-Uri", id="Traefik sends X-Forwarded-Uri"),
    pytest.param("/verify/v1/invoices", "X-Envoy-Original-Path",
                 id="Envoy calls a path under /verify/ and sends X-Envoy-Original-Path"),
])
def test_the_audit_line_records_the_original_uri_the_gateway_sends(
    ready: Verifier, keys: dict[str, Plaintext], home: str, path: str, header: str
) -> None:
    uri = unique_uri()
    status, _, body = ready.get(f"{path}?scope=Invoices.Read",
                                {"X-API-Key": keys["plain"], header: uri})
    assert (status, body) == (200, answer("OK"))
    line = audit_line(ready, uri)
    assert (line["code"], line["status"], line["method"]) == ("OK", 200, "GET")
    assert (line["namespace"], line["name"], line["revision"]) == (home, "plain", 1)
    assert line["lastCharacters"] == keys["plain"][-4:]
    assert line["scopes"] == ["Invoices.Read"]


def test_the_first_uri_header_in_the_contracts_order_is_the_one_recorded(
    ready: Verifier, keys: dict[str, Plaintext]
) -> None:
    original, forwarded, envoy = unique_uri(), unique_uri(), unique_uri()
    assert ready.get("/verify", {"X-API-Key": keys["plain"], "X-Envoy-Original-Path": envoy,
                                 "X-Forwarded-Uri": forwarded, "X-Original-URI": original}
                     )[:3:2] == (200, answer("OK"))
    assert ready.get("/verify", {"X-API-Key": keys["plain"], "X-Envoy-Original-Path": envoy,
                                 "X-Forwarded-Uri": forwarded})[:3:2] == (200, answer("OK"))
    assert audit_line(ready, original)["method"] == "GET"
    assert audit_line(ready, forwarded)["method"] == "GET"  # written after the first...
    assert [a for a in ready.audit_lines() if a["uri"] == envoy] == []  # ...so all are in


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_any_method_is_verified_and_recorded_in_the_audit_line(
    ready: Verifier, keys: dict[str, Plaintext], method: str
) -> None:
    uri = unique_uri()
    status, headers, body = ready.request(
        "/verify?scope=Invoices.Read", {"X-API-Key": keys["plain"], "X-Forwarded-Uri": uri},
        method=method, body=b'{"a gateway may":"forward a body"}' if method == "POST" else None)
    assert status == 200
    # HEAD: the headers of the answer, no body
    assert body == (b"" if method == "HEAD" else answer("OK"))
    assert headers["x-keywright-name"] == "plain"
    line = audit_line(ready, uri)
    assert (line["method"], line["code"], line["status"]) == (method, "OK", 200)
    refused = unique_uri()
    status, _, _ = ready.request("/verify", {"X-Forwarded-Uri": refused}, method=method)
    assert status == 401
    line = audit_line(ready, refused)
    assert (line["method"], line["code"]) == (method, "MISSING_KEY")


# -- 6. the verifier's flags: --no-audit, --key-header, --watch-namespace ----------------

def test_with_no_audit_the_verifier_answers_and_writes_no_audit_line(
    running_operator: Operator, cluster: Cluster, namespace: str, accounts: dict[str, Path],
    tmp_path: Path
) -> None:
    quiet = Verifier(accounts["verifier"], tmp_path, "--no-audit")
    try:
        quiet.start()
        key = issue(cluster, quiet, namespace, "unaudited", scopes=["Invoices.Read"])
        assert quiet.get("/verify", {"X-API-Key": key, "X-Original-URI": unique_uri()}
                         )[:3:2] == (200, answer("OK"))
        assert quiet.get("/verify")[:3:2] == (401, answer("MISSING_KEY"))
        last_used(cluster, namespace, "unaudited")  # it did its work, seconds after
    finally:
        quiet.stop()  # the audit writer's last batch goes out as the process ends
    assert quiet.audit.exists()  # its stdout: where the lines would be
    assert quiet.audit.read_text() == ""
    assert "verifier listening" in quiet.log.read_text()  # it ran, and logged elsewhere


def test_with_key_header_the_verifier_takes_the_key_from_that_header_too(
    ready: Verifier, cluster: Cluster, namespace: str, accounts: dict[str, Path],
    tmp_path: Path
) -> None:
    key = issue(cluster, ready, namespace, "acrity", scopes=["Invoices.Read"])
    unknown = Plaintext(tokens.generate("kw"))
    # the session verifier has no --key-header: to it the header is nothing
    assert ready.get("/verify", {"X-Acrity-Key": key})[:3:2] == (401, answer("MISSING_KEY"))
    acrity = Verifier(accounts["verifier"], tmp_path, "--key-header", "X-Acrity-Key")
    try:
        acrity.start()  # ready: it has listed the key
        status, headers, body = acrity.get("/verify", {"X-Acrity-Key": key})
        assert (status, body) == (200, answer("OK"))
        assert headers["x-keywright-name"] == "acrity"
        # after X-API-Key, before Authorization
        assert acrity.get("/verify", {"X-API-Key": unknown, "X-Acrity-Key": key}
                          )[:3:2] == (401, answer("INVALID_KEY"))
        assert acrity.get("/verify", {"X-Acrity-Key": key, "Authorization": unknown.bearer()}
                          )[:3:2] == (200, answer("OK"))
    finally:
        acrity.stop()


def test_with_watch_namespace_the_verifier_knows_only_that_namespaces_keys(
    ready: Verifier, cluster: Cluster, namespace: str, another_namespace: str,
    accounts: dict[str, Path], tmp_path: Path
) -> None:
    inside = issue(cluster, ready, namespace, "inside", scopes=["Invoices.Read"])
    outside = issue(cluster, ready, another_namespace, "outside", scopes=["Invoices.Read"])
    watching = Verifier(accounts["verifier"], tmp_path, "--watch-namespace", namespace)
    try:
        watching.start()  # ready: it has listed its namespace
        status, headers, body = watching.get("/verify", {"X-API-Key": inside})
        assert (status, body) == (200, answer("OK"))
        assert headers["x-keywright-namespace"] == namespace
        # valid (the session verifier says OK above), but not in the namespace watched
        status, headers, body = watching.get("/verify", {"X-API-Key": outside})
        assert (status, body) == (401, answer("INVALID_KEY"))
        assert headers["www-authenticate"] == CHALLENGE
        assert ready.get("/verify", {"X-API-Key": outside})[:3:2] == (200, answer("OK"))
        status, _, body = watching.get("/readyz")
        assert status == 200
        assert json.loads(body)["keysIndexed"] == 1  # one key hash: its one ApiKey's
    finally:
        watching.stop()

