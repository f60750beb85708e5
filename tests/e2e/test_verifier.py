"""The verifier behind a real gateway: Debian's nginx with `auth_request`, the local
control plane, the operator and `keywright verifier`, as in production."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from keywright.core import tokens
from keywright.dev import controlplane
from tests.support import gateway
from tests.support.k8s import Cluster, Operator, Plaintext, Verifier
from tests.support.manifests import apikey
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def home(api: client.ApiClient) -> str:
    """The namespace the gateway's /team/ location requires."""
    name = f"gw-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture
def ready(running_operator: Operator, verifier: Verifier) -> Verifier:
    if not verifier.running:
        verifier.start(wait_ready=False)
    eventually(lambda: verifier.get("/readyz")[0] == 200, timeout=30, what="verifier ready")
    return verifier


@pytest.fixture(scope="module")
def nginx(verifier: Verifier, home: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway.Nginx]:
    upstream = gateway.Upstream()
    front = gateway.Nginx(tmp_path_factory.mktemp("nginx"), verifier.port, upstream.port, home)
    front.start()
    try:
        eventually(lambda: front.get("/")[0] != 0, timeout=10, what="nginx up")
        yield front
    finally:
        front.stop()
        upstream.stop()


def issue(cluster: Cluster, verifier: Verifier, namespace: str, name: str,
          **spec: Any) -> Plaintext:
    """Apply an ApiKey, wait for Active and for the verifier to know its hash."""
    cluster.apply(apikey(name, namespace, **spec))
    cluster.wait_phase(namespace, name, "Active")
    key = cluster.plaintext(namespace, name)
    eventually(lambda: verifier.get("/verify", {"X-API-Key": key})[0] not in (401, 503),
               timeout=10, what=f"verifier indexed {namespace}/{name}")
    return key


@pytest.fixture(scope="module")
def keys(cluster: Cluster, operator: Operator, verifier: Verifier, home: str,
         api: client.ApiClient) -> dict[str, Plaintext]:
    if operator.popen is None or operator.popen.poll() is not None:
        operator.start()
    if not verifier.running:
        verifier.start(wait_ready=False)
    eventually(lambda: verifier.get("/readyz")[0] == 200, timeout=30, what="verifier ready")
    other = f"gw-other-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    return {
        "reader": issue(cluster, verifier, home, "reader", scopes=["Invoices.Read"],
                        context={"team": "payments"}, ipAllowlist=["127.0.0.0/8"]),
        "writer": issue(cluster, verifier, home, "writer", scopes=["Invoices.Write"]),
        "faraway": issue(cluster, verifier, home, "faraway", scopes=["Invoices.Read"],
                         ipAllowlist=["203.0.113.0/24", "2001:db8::/32"]),
        "limited": issue(cluster, verifier, home, "limited", scopes=["Invoices.Read"],
                         rateLimit={"requests": 3, "period": "1h"}),
        "stranger": issue(cluster, verifier, other, "stranger", scopes=["Invoices.Read"]),
    }


def test_a_valid_key_reaches_the_upstream_with_its_identity_and_without_the_key(
    nginx: gateway.Nginx, keys: dict[str, Plaintext], home: str
) -> None:
    status, _, body = nginx.get("/invoices/list", {"X-API-Key": keys["reader"]})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["x-keywright-namespace"] == home
    assert seen["x-keywright-name"] == "reader"
    assert seen["x-keywright-scopes"] == "Invoices.Read"
    assert seen["x-keywright-context-team"] == "payments"
    assert "x-api-key" not in seen
    assert keys["reader"] not in body.decode()


def test_bearer_works_too_and_write_satisfies_read(
    nginx: gateway.Nginx, keys: dict[str, Plaintext]
) -> None:
    status, _, _ = nginx.get("/invoices/x", {"Authorization": f"Bearer {keys['writer']}"})
    assert status == 200


@pytest.mark.parametrize(("path", "who", "headers", "expected", "code"), [
    pytest.param("/invoices/", None, {}, 401, "MISSING_KEY", id="no key is 401"),
    pytest.param("/invoices/", "broken", {}, 401, "MALFORMED_KEY",
                 id="a wrong checksum is 401"),
    pytest.param("/invoices/", "unknown", {}, 401, "INVALID_KEY", id="an unknown key is 401"),
    pytest.param("/team/", "stranger", {}, 401, "INVALID_KEY",
                 id="a key from another namespace is 401, like an unknown one"),
    pytest.param("/admin/", "reader", {}, 403, "INSUFFICIENT_SCOPE",
                 id="a missing scope is 403"),
    pytest.param("/invoices/", "faraway", {}, 403, "IP_NOT_ALLOWED",
                 id="an address outside the allowlist is 403"),
    pytest.param("/invoices/", "faraway", {"X-Forwarded-For": "203.0.113.7"}, 403,
                 "IP_NOT_ALLOWED", id="a client's own X-Forwarded-For does not get it in"),
])
def test_each_refusal_is_answered_by_nginx_with_its_status(
    nginx: gateway.Nginx, verifier: Verifier, keys: dict[str, Plaintext], path: str,
    who: str | None, headers: dict[str, str], expected: int, code: str
) -> None:
    sent = dict(headers)
    if who == "broken":
        key = keys["reader"]
        sent["X-API-Key"] = key[:-1] + ("A" if key[-1] != "A" else "B")
    elif who == "unknown":
        sent["X-API-Key"] = tokens.generate("kw")
    elif who is not None:
        sent["X-API-Key"] = keys[who]
    uri = f"{path}{uuid.uuid4().hex}"
    status, answer_headers, _ = nginx.get(uri, sent)
    assert status == expected
    if expected == 401:
        assert answer_headers.get("www-authenticate") == 'Bearer realm="keywright"'
    line = eventually(lambda: [a for a in verifier.audit_lines() if a["uri"] == uri],
                      timeout=5, what="the audit line")
    assert [a["code"] for a in line] == [code]


def test_past_its_rate_limit_a_key_gets_429_with_retry_after_through_nginx(
    nginx: gateway.Nginx, keys: dict[str, Plaintext]
) -> None:
    # 3 an hour, and `issue` used one when it checked the verifier had the key
    answers = [nginx.get("/invoices/", {"X-API-Key": keys["limited"]}) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    retry_after = int(answers[2][1]["retry-after"])
    assert 1100 <= retry_after <= 1200  # the next token is 20 minutes away


def test_deactivating_a_key_makes_nginx_answer_401_within_a_second(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "soon-off", scopes=["Invoices.Read"])
    assert nginx.get("/invoices/", {"X-API-Key": key})[0] == 200
    started = time.monotonic()
    cluster.apply(apikey("soon-off", namespace, scopes=["Invoices.Read"], active=False))
    eventually(lambda: nginx.get("/invoices/", {"X-API-Key": key})[0] == 401,
               timeout=5, interval=0.01, what="401 after deactivation")
    elapsed = time.monotonic() - started
    print(f"deactivation -> 401 through nginx: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0
    assert ready.get("/verify", {"X-API-Key": key})[2] == b'{"code":"INACTIVE"}'


def test_expiry_is_checked_against_the_clock_on_every_request(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "brief", scopes=["Invoices.Read"],
                expiration="4s")
    expires = cluster.status(namespace, "brief")["expiresAt"]
    assert nginx.get("/invoices/", {"X-API-Key": key})[0] == 200
    eventually(lambda: ready.get("/verify", {"X-API-Key": key})[2] == b'{"code":"EXPIRED"}',
               timeout=8, interval=0.05, what="EXPIRED")
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) >= expires
    assert nginx.get("/invoices/", {"X-API-Key": key})[0] == 401


def test_a_rotated_key_works_through_its_grace_period_and_not_after(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    spec = {"scopes": ["Invoices.Read"], "rotation": {"gracePeriod": "4s"}}
    old = issue(cluster, ready, namespace, "rolling", **spec)
    manifest = apikey("rolling", namespace, **spec)
    manifest["metadata"]["annotations"] = {"keywright.dev/rotate": "now-1"}
    cluster.apply(manifest)
    eventually(lambda: cluster.status(namespace, "rolling").get("revision") == 2,
               what="revision 2")
    new = cluster.plaintext(namespace, "rolling")
    assert new != old
    eventually(lambda: nginx.get("/invoices/", {"X-API-Key": new})[0] == 200, timeout=5,
               what="the new key accepted")
    retires = cluster.status(namespace, "rolling")["previous"][0]["retiresAt"]
    assert nginx.get("/invoices/", {"X-API-Key": old})[0] == 200  # inside its grace
    eventually(lambda: nginx.get("/invoices/", {"X-API-Key": old})[0] == 401, timeout=10,
               interval=0.05, what="the old key refused after its grace")
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) >= retires
    assert nginx.get("/invoices/", {"X-API-Key": new})[0] == 200


def test_use_shows_in_status_as_last_used_at_per_revision(
    ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "used", scopes=["Invoices.Read"])
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    assert ready.get("/verify", {"X-API-Key": key})[0] == 200
    status = eventually(lambda: cluster.status(namespace, "used").get("lastUsedAt") and
                        cluster.status(namespace, "used"), timeout=10, what="lastUsedAt")
    assert status["lastUsedAt"] >= before
    assert status["lastUsedByRevision"] == {"1": status["lastUsedAt"]}
    assert status["phase"] == "Active"  # the operator's fields are untouched


BAD_INPUT = [
    pytest.param({"X-API-Key": ""}, "MISSING_KEY", id="an empty header"),
    pytest.param({"Authorization": "Bearer "}, "MISSING_KEY", id="Bearer with nothing"),
    pytest.param({"X-API-Key": "k" * 65536}, "MALFORMED_KEY", id="a 64 KB header"),
    pytest.param({"X-API-Key": "kw_\udcff\udcfe"}, "MALFORMED_KEY", id="bytes not UTF-8"),
]


@pytest.mark.parametrize(("headers", "code"), BAD_INPUT)
def test_bad_input_straight_to_the_verifier_gets_the_contract_answer(
    ready: Verifier, headers: dict[str, str], code: str
) -> None:
    sent = {k: v.encode("utf-8", "surrogateescape").decode("latin-1")
            for k, v in headers.items()}
    status, answer_headers, body = ready.get("/verify", sent)
    assert (status, body) == (401, f'{{"code":"{code}"}}'.encode())
    assert answer_headers["www-authenticate"] == 'Bearer realm="keywright"'


def test_header_precedence_and_ambiguity_straight_to_the_verifier(
    ready: Verifier, keys: dict[str, Plaintext]
) -> None:
    import http.client
    reader, writer = keys["reader"], keys["writer"]

    def raw(*headers: tuple[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", ready.port, timeout=10)
        connection.putrequest("GET", "/verify")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        result = response.status, response.read()
        connection.close()
        return result

    assert raw(("X-API-Key", reader), ("Authorization", f"Bearer {tokens.generate('kw')}")) \
        == (200, b'{"code":"OK"}')
    assert raw(("Authorization", f"bearer {writer}")) == (200, b'{"code":"OK"}')
    assert raw(("Authorization", f"Bearer {reader}"), ("Authorization", f"Bearer {writer}")) \
        == (401, b'{"code":"MALFORMED_KEY"}')


def test_an_untrusted_peer_cannot_claim_an_allowed_address(
    ready: Verifier, keys: dict[str, Plaintext]
) -> None:
    # the test process is 127.0.0.1, not the trusted 127.0.0.2
    status, _, body = ready.get("/verify", {"X-API-Key": keys["faraway"],
                                            "X-Forwarded-For": "203.0.113.7",
                                            "X-Real-IP": "203.0.113.7"})
    assert (status, body) == (403, b'{"code":"IP_NOT_ALLOWED"}')


def test_metrics_count_decisions_and_keys(ready: Verifier, keys: dict[str, Plaintext]) -> None:
    def count(text: str, code: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'keywright_verifier_decisions_total{{code="{code}"'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
    before = ready.get("/metrics")[2].decode()
    assert ready.get("/verify")[0] == 401
    after = ready.get("/metrics")[2].decode()
    assert count(after, "MISSING_KEY") == count(before, "MISSING_KEY") + 1
    indexed = [line for line in after.splitlines()
               if line.startswith("keywright_verifier_keys_indexed ")]
    assert float(indexed[0].split()[1]) >= len(keys)
    assert "keywright_verifier_decision_duration_seconds_bucket" in after
    assert "keywright_verifier_seconds_since_sync 0.0" in after


def test_not_ready_until_the_first_list(
    control_plane: controlplane.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> None:
    unreachable = tmp_path_factory.mktemp("nowhere") / "kubeconfig"
    unreachable.write_text(control_plane.kubeconfig.read_text().replace(
        control_plane.server, "https://127.0.0.1:9"))
    lonely = Verifier(unreachable, unreachable.parent)
    lonely.start(wait_ready=False)
    try:
        eventually(lambda: lonely.get("/healthz")[0] == 200, timeout=30, what="healthz")
        assert lonely.get("/readyz")[0] == 503
        assert lonely.get("/verify", {"X-API-Key": tokens.generate("kw")})[:3:2] == \
            (503, b'{"code":"NOT_READY"}')
    finally:
        lonely.stop()


def test_it_keeps_serving_its_last_snapshot_while_the_api_server_is_away(
    ready: Verifier, control_plane: controlplane.ControlPlane, keys: dict[str, Plaintext]
) -> None:
    def stale() -> float:
        for line in ready.get("/metrics")[2].decode().splitlines():
            if line.startswith("keywright_verifier_seconds_since_sync "):
                return float(line.split()[1])
        return -1.0
    control_plane.stop_apiserver()
    try:
        eventually(lambda: stale() > 1.0, timeout=15, what="staleness shown")
        assert ready.get("/verify", {"X-API-Key": keys["reader"]})[0] == 200
        assert ready.get("/readyz")[0] == 200  # no --max-staleness: keep serving
    finally:
        control_plane.start_apiserver()
    eventually(lambda: stale() == 0.0, timeout=30, what="in sync again")
