"""The verifier behind a real gateway: Debian's nginx with `auth_request`, the local
control plane, the operator and `keywright verifier`, as in production."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from keywright.core import tokens
from keywright.dev import controlplane
from keywright.dev.redis import RedisServer
from keywright.kits import processes
from tests.support import gateway
from tests.support.k8s import (
    Cluster,
    Operator,
    Plaintext,
    Response,
    Verifier,
    answer,
    issue,
    kubectl,
)
from tests.support.manifests import apikey, role
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def home(api: client.ApiClient) -> str:
    """The namespace the gateway's /team/ location requires."""
    name = f"gw-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@contextlib.contextmanager
def nginx_in_front_of(verifier: Verifier, home: str,
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


@pytest.fixture(scope="module")
def nginx(verifier: Verifier, home: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway.Nginx]:
    """nginx in front of the session verifier (limits kept in process)."""
    with nginx_in_front_of(verifier, home, tmp_path_factory) as front:
        yield front


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@contextlib.contextmanager
def verifier_on_redis(accounts: dict[str, Path], url: str, password_file: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verifier]:
    # 0.5 s per Redis call, not 50 ms: on 2 busy cores a slow call would let the request
    # through without its limit (and without the headers under test)
    running = Verifier(accounts["verifier"], tmp_path_factory.mktemp("verifier-redis"),
                       "--trusted-proxy", "127.0.0.2/32", "--redis-url", url,
                       "--redis-password-file", str(password_file), "--redis-timeout", "0.5")
    running.start(wait_ready=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_nginx(accounts: dict[str, Path], redis_server: RedisServer, home: str,
                 tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[tuple[Verifier, gateway.Nginx]]:
    """nginx in front of a verifier keeping its limits on Redis: the one that tells
    clients their rate limit (X-RateLimit-*, RateLimit-Policy, RateLimit)."""
    with verifier_on_redis(accounts, redis_server.address, redis_server.password_file,
                           tmp_path_factory) as shared, \
            nginx_in_front_of(shared, home, tmp_path_factory) as front:
        yield shared, front


@pytest.fixture(scope="module")
def stranded_nginx(accounts: dict[str, Path], home: str,
                   tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[tuple[Verifier, gateway.Nginx]]:
    """nginx in front of a verifier whose Redis never answers (nothing listens on its
    port): quotas fail closed, 429 LIMITS_UNAVAILABLE."""
    password = tmp_path_factory.mktemp("no-redis") / "password"
    password.write_text("unused")
    nowhere = f"redis://127.0.0.1:{processes.free_port()}/0"
    with verifier_on_redis(accounts, nowhere, password, tmp_path_factory) as stranded, \
            nginx_in_front_of(stranded, home, tmp_path_factory) as front:
        yield stranded, front


CHALLENGE = 'Bearer realm="keywright"'  # every 401, and only a 401, carries it


def metric(text: str, start: str) -> float | None:
    """The value of the sample whose line starts with `start` (name, and labels as far
    as given); None when there is none."""
    for line in text.splitlines():
        if line.startswith(start):
            return float(line.rsplit(" ", 1)[1])
    return None


def now_stamp() -> str:
    """Now as status timestamps are written (RFC 3339, UTC, whole seconds), rounded down."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@pytest.fixture(scope="module")
def keys(cluster: Cluster, operator: Operator, verifier: Verifier, home: str,
         api: client.ApiClient) -> dict[str, Plaintext]:
    operator.ensure_running()
    verifier.ensure_ready()
    other = f"gw-other-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    return {
        "reader": issue(cluster, verifier, home, "reader", scopes=["Invoices.Read"],
                        context={"team": "payments"}, ipAllowlist=["127.0.0.0/8"]),
        "writer": issue(cluster, verifier, home, "writer", scopes=["Invoices.Write"]),
        "deleter": issue(cluster, verifier, home, "deleter", probe="/verify?scope=Invoices.Delete",
                         scopes=["Invoices.Delete"]),
        "faraway": issue(cluster, verifier, home, "faraway", expect="IP_NOT_ALLOWED",
                         scopes=["Invoices.Read"],
                         ipAllowlist=["203.0.113.0/24", "2001:db8::/32"]),
        "stranger": issue(cluster, verifier, other, "stranger", scopes=["Invoices.Read"]),
        # an admin's key: the Admin area is one some ApiKey grants, so /admin/'s
        # Admin.Write is a scope the reader lacks (403), not a gateway's typo (500)
        "admin": issue(cluster, verifier, home, "admin", scopes=["Admin.Read"]),
    }



SKEW = 0.05  # seconds: two processes' reads of the clock, on two cores of a VM, can differ


def not_before(instant: str) -> bool:
    """The refusal came no earlier than `instant` (RFC 3339, whole seconds): the verifier
    read the clock just before answering; we read it just after, give or take SKEW (seen:
    a 401 logged at :25.001 while this process still read :24.99)."""
    return time.time() >= datetime.strptime(instant, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC).timestamp() - SKEW

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
    received = sorted(seen)  # the header names only: a failure must not print the key
    assert "x-api-key" not in received
    leaked = keys["reader"] in body.decode()
    assert not leaked, "the upstream received the key"


NO_FILTERS = base64.urlsafe_b64encode(b'{"filters":{},"v":1}').rstrip(b"=").decode()


def test_no_x_keywright_header_a_client_sends_reaches_the_upstream(
    nginx: gateway.Nginx, keys: dict[str, Plaintext], home: str
) -> None:
    """A client forging the identity the upstream trusts: every X-Keywright-* header it
    sends is dropped before the verifier is asked, and the upstream sees only what the
    verifier said (issue 14: the example used to override the three identity headers
    only, so a client's own X-Keywright-Context-team went through untouched)."""
    forged = {"X-Keywright-Name": "root", "X-Keywright-Namespace": "kube-system",
              "X-Keywright-Scopes": "Admin.Write", "X-Keywright-Context-Team": "admins",
              "X-Keywright-Context-Tier": "gold", "X-Keywright-Roles": "admin",
              "X-Keywright-Permissions": "Admin.Delete", "X-Keywright-Filters": "e30",
              # a requirement the client adds: dropped too, so it cannot make a 500
              "X-Keywright-Scope": "invoices.read"}
    status, _, body = nginx.get("/invoices/list", {"X-API-Key": keys["reader"], **forged})
    assert status == 200, body
    seen = json.loads(body)
    assert {name: value for name, value in seen.items()
            if name.startswith("x-keywright-")} == {
        "x-keywright-namespace": home, "x-keywright-name": "reader",
        "x-keywright-scopes": "Invoices.Read", "x-keywright-context-team": "payments",
        "x-keywright-permissions": "Invoices.Read",
        "x-keywright-filters": NO_FILTERS}  # no roles: no X-Keywright-Roles


@pytest.mark.parametrize(("authorization", "passed"), gateway.KEY_CARRIERS)
def test_the_key_never_reaches_the_upstream_whichever_header_carried_it(
    nginx: gateway.Nginx, keys: dict[str, Plaintext], authorization: str, passed: bool
) -> None:
    headers = gateway.carrying(keys["reader"], authorization)
    status, _, body = nginx.get("/invoices/list", headers)
    assert status == 200, body
    seen = json.loads(body)
    assert ("authorization" in seen) is passed
    if passed:
        assert seen["authorization"] == authorization
    assert "x-api-key" not in seen
    leaked = keys["reader"] in body.decode()
    assert not leaked, "the upstream received the key"


def test_bearer_works_too_and_write_satisfies_read(
    nginx: gateway.Nginx, keys: dict[str, Plaintext]
) -> None:
    status, _, _ = nginx.get("/invoices/x", {"Authorization": keys["writer"].bearer()})
    assert status == 200


def decoded(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def test_a_role_grants_through_nginx_with_its_row_filters(
    nginx: gateway.Nginx, cluster: Cluster, ready: Verifier, home: str
) -> None:
    """A key holding Invoices.Read only through a role: nginx lets it in, and the
    upstream learns the role, the permissions and the row filter, context filled in."""
    cluster.apply(role("team-invoices", home, {"area": "Invoices", "actions": ["Read"],
                                                "filter": {"team": "${context.team}"}}))
    key = issue(cluster, ready, home, "by-role", probe="/verify?scope=Invoices.Read",
                scopes=["Reviews.Read"], roles=["team-invoices"], context={"team": "payments"})
    status, _, body = nginx.get("/invoices/list", {"X-API-Key": key})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["x-keywright-roles"] == "team-invoices"
    assert seen["x-keywright-permissions"] == "Invoices.Read,Reviews.Read"
    assert decoded(seen["x-keywright-filters"]) == {
        "v": 1, "filters": {"Invoices": {"Read": [{"team": "payments"}]}}}


def test_a_role_edit_decides_within_a_second_and_a_missing_role_fails_closed(
    cluster: Cluster, ready: Verifier, home: str
) -> None:
    cluster.apply(role("editable", home, {"area": "Ledger", "actions": ["Read"]}))
    key = issue(cluster, ready, home, "by-editable-role", probe="/verify?scope=Ledger.Read",
                roles=["editable"])

    def code(scope: str) -> str:
        return str(json.loads(ready.get(f"/verify?scope={scope}",
                                        {"X-API-Key": key})[2])["code"])
    cluster.apply(role("editable", home, {"area": "Ledger", "actions": ["Delete"]}))
    edited = time.monotonic()  # the API server has the edit
    eventually(lambda: code("Ledger.Delete") == "OK", timeout=5, interval=0.02,
               what="the edited role's permission")
    took = time.monotonic() - edited
    assert took < 1.0, f"a role edit took {took:.2f} s to decide"
    assert code("Ledger.Read") == "INSUFFICIENT_SCOPE"
    k8s_delete(cluster, "apikeyrole", home, "editable")
    eventually(lambda: code("Ledger.Delete") == "INSUFFICIENT_SCOPE", timeout=5,
               interval=0.02, what="a deleted role granting nothing")


def k8s_delete(cluster: Cluster, kind: str, namespace: str, name: str) -> None:
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", kind, name, "--wait=false")


@pytest.mark.parametrize(("who", "scope", "status"), [
    pytest.param("deleter", "Invoices.Delete", 200, id="Delete satisfies Delete"),
    pytest.param("deleter", "Invoices.Read", 403, id="Delete does not satisfy Read"),
    pytest.param("writer", "Invoices.Delete", 403, id="Write does not satisfy Delete"),
    pytest.param("writer", "Invoices.Update", 403, id="Write does not satisfy Update"),
])
def test_update_and_delete_are_only_what_they_say(
    ready: Verifier, keys: dict[str, Plaintext], who: str, scope: str, status: int
) -> None:
    """Keys the real API server accepted with the grown scope grammar, asked straight."""
    got, _, body = ready.get(f"/verify?scope={scope}", {"X-API-Key": keys[who]})
    assert got == status, body


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
        sent["X-API-Key"] = Plaintext(key[:-1] + ("A" if key[-1] != "A" else "B"))
    elif who == "unknown":
        sent["X-API-Key"] = tokens.generate("kw")
    elif who is not None:
        sent["X-API-Key"] = keys[who]
    uri = f"{path}{uuid.uuid4().hex}"
    status, answer_headers, _ = nginx.get(uri, sent)
    assert status == expected
    assert answer_headers.get("www-authenticate") == (CHALLENGE if expected == 401 else None)
    line = eventually(lambda: [a for a in verifier.audit_lines() if a["uri"] == uri],
                      timeout=5, what="the audit line")
    assert [a["code"] for a in line] == [code]


def test_past_its_rate_limit_a_key_gets_429_with_retry_after_through_nginx(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    # 3 an hour; the probe asks for a scope the key lacks, and a refused request counts
    # for nothing, so all three are left for nginx
    key = issue(cluster, ready, namespace, "limited", probe="/verify?scope=Invoices.Write",
                expect="INSUFFICIENT_SCOPE", scopes=["Invoices.Read"],
                rateLimit={"requests": 3, "period": "1h"})
    answers = [nginx.get("/invoices/", {"X-API-Key": key}) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    retry_after = int(answers[3][1]["retry-after"])
    # in the verifier's process, as on Redis, a sliding window: not before the first of
    # the three leaves it, an hour after it came (a token bucket would say 20 minutes)
    assert 3590 <= retry_after <= 3600
    assert told(answers[3]) == {  # and the client is told so, without Redis too
        "x-ratelimit-limit": "3", "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(retry_after), "ratelimit-policy": '"keywright";q=3;w=3600',
        "ratelimit": f'"keywright";r=0;t={retry_after}'}
    assert answers[3][2] == answer("RATE_LIMITED")


RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                      "ratelimit-policy", "ratelimit")


def told(response: Response) -> dict[str, str]:
    """The rate-limit headers of an answer nginx gave its client."""
    return {name: value for name, value in response[1].items() if name in RATE_LIMIT_HEADERS}


def behind_shared_nginx(shared_nginx: tuple[Verifier, gateway.Nginx], cluster: Cluster,
                        namespace: str, name: str, **spec: Any,
                        ) -> tuple[gateway.Nginx, Plaintext]:
    """The nginx in front of the Redis-backed verifier, and a key with scope
    Invoices.Read and `spec` it knows. The probe asks for a scope the key lacks: a
    refused request counts for no limit."""
    shared, front = shared_nginx
    shared.ensure_ready()
    return front, issue(cluster, shared, namespace, name, probe="/verify?scope=Invoices.Write",
                        expect="INSUFFICIENT_SCOPE", scopes=["Invoices.Read"], **spec)


def test_through_nginx_a_client_is_told_its_rate_limit_on_200_and_on_429(
    running_operator: Operator, shared_nginx: tuple[Verifier, gateway.Nginx],
    cluster: Cluster, namespace: str
) -> None:
    front, key = behind_shared_nginx(shared_nginx, cluster, namespace, "told",
                                     rateLimit={"requests": 3, "period": "1h"})
    answers = [front.get("/invoices/", {"X-API-Key": key}) for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    for _, _, body in answers[:3]:  # the upstream's answers, proxied
        assert json.loads(body)["x-keywright-name"] == "told"
    seen = [told(response) for response in answers]
    assert [int(headers["x-ratelimit-remaining"]) for headers in seen] == [2, 1, 0, 0]
    for headers in seen:
        assert headers["x-ratelimit-limit"] == "3"
        assert headers["ratelimit-policy"] == '"keywright";q=3;w=3600'
        reset = int(headers["x-ratelimit-reset"])
        assert 3500 <= reset <= 3600  # the first request leaves the window in an hour
        assert headers["ratelimit"] == \
            f'"keywright";r={headers["x-ratelimit-remaining"]};t={reset}'
    _, headers, body = answers[3]
    assert body == answer("RATE_LIMITED")
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == headers["x-ratelimit-reset"]


def test_through_nginx_no_limit_means_no_rate_limit_headers(
    running_operator: Operator, shared_nginx: tuple[Verifier, gateway.Nginx],
    cluster: Cluster, namespace: str
) -> None:
    shared, front = shared_nginx
    shared.ensure_ready()
    key = issue(cluster, shared, namespace, "unlimited", scopes=["Invoices.Read"])
    ok = front.get("/invoices/", {"X-API-Key": key})
    refused = front.get("/invoices/", {"X-API-Key": tokens.generate("kw")})
    assert (ok[0], refused[0]) == (200, 401)
    assert (told(ok), told(refused)) == ({}, {})  # not even empty ones


@pytest.mark.parametrize(("refill", "retry_after"), [
    pytest.param(None, None, id="spent for good: no Retry-After"),
    pytest.param({"every": "1h"}, (3500, 3600), id="refilled hourly: Retry-After"),
])
def test_through_nginx_a_spent_quota_is_usage_limit_reached(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str,
    refill: dict[str, str] | None, retry_after: tuple[int, int] | None
) -> None:
    quota: dict[str, Any] = {"limit": 2, **({"refill": refill} if refill else {})}
    key = issue(cluster, ready, namespace, "spent", probe="/verify?scope=Invoices.Write",
                expect="INSUFFICIENT_SCOPE", scopes=["Invoices.Read"], quota=quota)
    answers = [nginx.get("/invoices/", {"X-API-Key": key}) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, body = answers[2]
    assert body == answer("USAGE_LIMIT_REACHED")
    if retry_after is None:
        assert "retry-after" not in headers  # waiting will not help
    else:
        assert retry_after[0] <= int(headers["retry-after"]) <= retry_after[1]


def test_through_nginx_a_spent_quota_with_a_rate_limit_says_both(
    running_operator: Operator, shared_nginx: tuple[Verifier, gateway.Nginx],
    cluster: Cluster, namespace: str
) -> None:
    front, key = behind_shared_nginx(shared_nginx, cluster, namespace, "both",
                                     rateLimit={"requests": 10, "period": "1h"},
                                     quota={"limit": 1})
    answers = [front.get("/invoices/", {"X-API-Key": key}) for _ in range(2)]
    assert [status for status, _, _ in answers] == [200, 429]
    _, headers, body = answers[1]
    assert body == answer("USAGE_LIMIT_REACHED")  # whatever the rate says
    assert "retry-after" not in headers
    # the refusal took no token: 9 of 10 left, on the 200 and on the 429
    assert [told(response)["x-ratelimit-remaining"] for response in answers] == ["9", "9"]
    assert told(answers[1])["ratelimit-policy"] == '"keywright";q=10;w=3600'


def test_through_nginx_a_quota_the_backend_cannot_check_is_limits_unavailable(
    running_operator: Operator, stranded_nginx: tuple[Verifier, gateway.Nginx],
    cluster: Cluster, namespace: str
) -> None:
    stranded, front = stranded_nginx
    stranded.ensure_ready()
    key = issue(cluster, stranded, namespace, "stranded", probe="/verify?scope=Invoices.Write",
                expect="INSUFFICIENT_SCOPE", scopes=["Invoices.Read"], quota={"limit": 5})
    status, headers, body = front.get("/invoices/", {"X-API-Key": key})
    assert (status, body) == (429, answer("LIMITS_UNAVAILABLE"))  # quotas fail closed
    assert headers["retry-after"] == "1"
    assert told((status, headers, body)) == {}


def test_deactivating_a_key_makes_nginx_answer_401_within_half_a_second_of_the_change(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "soon-off", scopes=["Invoices.Read"])
    assert nginx.get("/invoices/", {"X-API-Key": key})[0] == 200
    cluster.apply(apikey("soon-off", namespace, scopes=["Invoices.Read"], active=False))
    # kubectl has returned: the change is in the API. From here on the time is the
    # verifier's (its watch, its index) and nginx's, not kubectl's start-up.
    started = time.monotonic()
    assert cluster.apikey(namespace, "soon-off")["spec"]["active"] is False
    eventually(lambda: nginx.get("/invoices/", {"X-API-Key": key})[0] == 401,
               timeout=5, interval=0.01, what="401 after deactivation")
    elapsed = time.monotonic() - started
    print(f"deactivation in the API -> 401 through nginx: {elapsed * 1000:.0f} ms")
    # a watch delivers in milliseconds (5 ms here, idle); a verifier that learnt of the
    # change by polling, or only when it re-lists, would not make it
    assert elapsed < 0.5
    assert ready.get("/verify", {"X-API-Key": key})[2] == answer("INACTIVE")


def test_expiry_is_checked_against_the_clock_on_every_request(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "brief", scopes=["Invoices.Read"],
                expiration="4s")
    expires = cluster.status(namespace, "brief")["expiresAt"]
    assert nginx.get("/invoices/", {"X-API-Key": key})[0] == 200
    eventually(lambda: ready.get("/verify", {"X-API-Key": key})[2] == answer("EXPIRED"),
               timeout=8, interval=0.05, what="EXPIRED")
    assert not_before(expires)
    assert nginx.get("/invoices/", {"X-API-Key": key})[0] == 401


def test_a_rotated_key_works_through_its_grace_period_and_not_after(
    ready: Verifier, nginx: gateway.Nginx, cluster: Cluster, namespace: str
) -> None:
    spec: dict[str, Any] = {"scopes": ["Invoices.Read"], "rotation": {"gracePeriod": "4s"}}
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
    assert not_before(retires)
    assert nginx.get("/invoices/", {"X-API-Key": new})[0] == 200


def test_use_shows_in_status_as_last_used_at_per_revision(
    ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("used", namespace, scopes=["Invoices.Read"]))
    cluster.wait_phase(namespace, "used", "Active")
    key = cluster.plaintext(namespace, "used")
    assert "lastUsedAt" not in cluster.status(namespace, "used")
    before = now_stamp()
    # the first request that finds the key is its first use (an unknown key is no use)
    eventually(lambda: ready.get("/verify", {"X-API-Key": key})[2] == answer("OK"),
               timeout=10, what="the verifier answering OK")
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
    assert (status, body) == (401, answer(code))
    assert answer_headers["www-authenticate"] == CHALLENGE


def test_header_precedence_and_ambiguity_straight_to_the_verifier(
    ready: Verifier, keys: dict[str, Plaintext]
) -> None:
    reader, writer = keys["reader"], keys["writer"]
    unknown = Plaintext(tokens.generate("kw")).bearer()

    def raw(*headers: tuple[str, str]) -> tuple[int, bytes]:
        status, _, body = ready.get("/verify", headers)  # pairs: a name may come twice
        return status, body

    assert raw(("X-API-Key", reader), ("Authorization", unknown)) == (200, answer("OK"))
    assert raw(("Authorization", Plaintext(f"bearer {writer}"))) == (200, answer("OK"))
    assert raw(("Authorization", reader.bearer()), ("Authorization", writer.bearer())) \
        == (401, answer("MALFORMED_KEY"))


def test_an_untrusted_peer_cannot_claim_an_allowed_address(
    ready: Verifier, keys: dict[str, Plaintext]
) -> None:
    # the test process is 127.0.0.1, not the trusted 127.0.0.2
    status, _, body = ready.get("/verify", {"X-API-Key": keys["faraway"],
                                            "X-Forwarded-For": "203.0.113.7",
                                            "X-Real-IP": "203.0.113.7"})
    assert (status, body) == (403, answer("IP_NOT_ALLOWED"))


def test_metrics_count_decisions_and_keys(ready: Verifier, keys: dict[str, Plaintext]) -> None:
    missing = 'keywright_verifier_decisions_total{code="MISSING_KEY"'
    before = metric(ready.get("/metrics")[2].decode(), missing)  # None: none counted yet
    assert ready.get("/verify")[:3:2] == (401, answer("MISSING_KEY"))
    after = ready.get("/metrics")[2].decode()
    assert metric(after, missing) == (before or 0.0) + 1
    indexed = metric(after, "keywright_verifier_keys_indexed ")
    assert indexed is not None
    assert indexed >= len(keys)
    assert "keywright_verifier_decision_duration_seconds_bucket" in after
    assert "keywright_verifier_seconds_since_sync 0.0" in after


def apikey_decisions(verifier: Verifier, namespace: str, name: str) -> dict[str, float]:
    """keywright_verifier_apikey_decisions_total of one ApiKey in /metrics: status -> count."""
    text = verifier.get("/metrics")[2].decode()
    return {s.labels["status"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "keywright_verifier_apikey_decisions" for s in family.samples
            if s.name.endswith("_total") and (s.labels["namespace"], s.labels["name"])
            == (namespace, name)}


def test_metrics_count_answers_per_apikey_and_drop_a_deleted_ones(
    ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "counted", scopes=["Invoices.Read"])  # one 200
    assert ready.get("/verify?scope=Invoices.Read", {"X-API-Key": key})[0] == 200
    assert ready.get("/verify?scope=Invoices.Write", {"X-API-Key": key})[0] == 403
    # answered as an unknown key: it names no ApiKey, so it is not counted as this one's
    assert ready.get("/verify?namespace=elsewhere", {"X-API-Key": key})[2] == \
        answer("INVALID_KEY")
    assert apikey_decisions(ready, namespace, "counted") == {
        "200": 2.0, "401": 0.0, "403": 1.0, "429": 0.0}
    k8s_delete(cluster, "apikey", namespace, "counted")
    eventually(lambda: apikey_decisions(ready, namespace, "counted") == {}, timeout=10,
               what="the deleted ApiKey's series gone from /metrics")


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
            (503, answer("NOT_READY"))
    finally:
        lonely.stop()


def test_it_keeps_serving_its_last_snapshot_while_the_api_server_is_away(
    ready: Verifier, control_plane: controlplane.ControlPlane, keys: dict[str, Plaintext]
) -> None:
    def stale() -> float:
        found = metric(ready.get("/metrics")[2].decode(),
                       "keywright_verifier_seconds_since_sync ")
        assert found is not None, "no keywright_verifier_seconds_since_sync in /metrics"
        return found
    control_plane.stop_apiserver()
    try:
        eventually(lambda: stale() > 1.0, timeout=15, what="staleness shown")
        assert ready.get("/verify", {"X-API-Key": keys["reader"]})[:3:2] == (200, answer("OK"))
        assert ready.get("/readyz")[0] == 200  # no --max-staleness: keep serving
    finally:
        control_plane.start_apiserver()
    eventually(lambda: stale() == 0.0, timeout=30, what="in sync again")


@pytest.mark.parametrize("requirement", [
    pytest.param("invoices.read", id="a requirement that is not a scope"),
    pytest.param("Invocies.Read", id="a scope in an area no ApiKey grants"),
])
def test_a_gateway_asking_for_what_no_key_can_have_gets_a_500_and_a_warning(
    ready: Verifier, keys: dict[str, Plaintext], requirement: str
) -> None:
    before = ready.log.read_text().count(requirement)
    status, _, body = ready.get(f"/verify?scope={requirement}", {"X-API-Key": keys["reader"]})
    assert (status, body) == (500, answer("INVALID_REQUIREMENT"))
    # the caller's own missing scope is still a 403: Invoices is an area keys have
    assert ready.get("/verify?scope=Invoices.Write",
                     {"X-API-Key": keys["reader"]})[2] == answer("INSUFFICIENT_SCOPE")
    eventually(lambda: ready.log.read_text().count(requirement) > before, timeout=5,
               what="the Warning line naming the requirement")
    assert "INVALID_REQUIREMENT; check the gateway's scope configuration" in ready.log.read_text()
