"""The verifier's HTTP answers (the ASGI app called directly, no server), usage patches,
metrics, the audit encoding and the index's re-list. No cluster, no network."""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import json
import logging
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from keywright.core import hashing, tokens
from keywright.verifier import app, audit, decision, index, usage
from tests.support.keys import KEY, NOW, OTHER, PEPPERS, apikey

Reply = tuple[int, dict[str, str], bytes]


ADMIN_KEY = tokens.generate("kw")


def verifier(*apikeys: dict[str, Any], ready: bool = True, stale: float = 0.0,
             settings: app.VerifierSettings | None = None) -> app.Verifier:
    """A verifier whose index holds `apikeys`, else the usual key (with a context) and
    an admin's key: the Admin area is one some ApiKey grants."""
    keys = index.Index()
    keys.replace_all(apikeys or [apikey(context={"team": "payments"}),
                                 apikey("admins", key=ADMIN_KEY, scopes=["Admin.Read"])])
    return app.Verifier(keys, lambda: PEPPERS if ready else None, lambda: ready,
                        lambda: stale, settings or app.VerifierSettings(audit=False))


def call(application: app.Verifier, path: str = "/verify", query: bytes = b"",
         headers: list[tuple[bytes, bytes]] | None = None, peer: str = "203.0.113.9",
         ) -> Reply:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query,
             "headers": headers if headers is not None else [(b"x-api-key", KEY.encode())],
             "client": (peer, 40000)}
    asyncio.run(application(scope, receive, send))
    start, body = sent
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            body["body"])


def test_a_valid_key_gets_200_with_the_identity_headers() -> None:
    status, headers, body = call(verifier(), query=b"scope=Reviews.Read")
    assert (status, body) == (200, b'{"code":"OK"}')
    assert headers["x-keywright-namespace"] == "pay"
    assert headers["x-keywright-name"] == "billing"
    assert headers["x-keywright-scopes"] == "Repos.Read,Reviews.Write"
    assert headers["x-keywright-context-team"] == "payments"
    assert headers["content-length"] == str(len(body))
    assert KEY not in json.dumps(headers)


def test_a_401_carries_the_bearer_challenge() -> None:
    status, headers, body = call(verifier(), headers=[])
    assert (status, body) == (401, b'{"code":"MISSING_KEY"}')
    assert headers["www-authenticate"] == 'Bearer realm="keywright"'


def test_a_403_has_no_challenge() -> None:
    status, headers, body = call(verifier(), query=b"scope=Admin.Read")
    assert (status, body) == (403, b'{"code":"INSUFFICIENT_SCOPE"}')
    assert "www-authenticate" not in headers


def test_a_429_says_when_to_retry() -> None:
    application = verifier(apikey(rateLimit={"requests": 1, "period": "1m"}))
    assert call(application)[0] == 200
    status, headers, body = call(application)
    assert (status, body) == (429, b'{"code":"RATE_LIMITED"}')
    assert 55 <= int(headers["retry-after"]) <= 60


@pytest.mark.parametrize(("query", "headers", "code"), [
    pytest.param(b"scope=Reviews.Read,Repos.Read", [], "OK", id="comma-separated scopes"),
    pytest.param(b"scope=Reviews.Read&scope=Admin.Read", [], "INSUFFICIENT_SCOPE",
                 id="repeated scope parameters are all required"),
    pytest.param(b"", [(b"x-keywright-scope", b"Repos.Write")], "INSUFFICIENT_SCOPE",
                 id="the scope header is a requirement too"),
    pytest.param(b"scope=Reviews.Read", [(b"x-keywright-scope", b"Admin.Read")],
                 "INSUFFICIENT_SCOPE", id="query and header requirements add up"),
    pytest.param(b"namespace=pay", [], "OK", id="the key's own namespace"),
    pytest.param(b"namespace=other", [], "INVALID_KEY", id="another namespace"),
    pytest.param(b"namespace=pay", [(b"x-keywright-namespace", b"other")], "INVALID_KEY",
                 id="two namespaces asked for: no key is in both"),
    pytest.param(b"", [(b"x-keywright-namespace", b"pay")], "OK",
                 id="the namespace header alone"),
])
def test_requirements_come_from_the_query_and_the_headers(
    query: bytes, headers: list[tuple[bytes, bytes]], code: str
) -> None:
    sent = [(b"x-api-key", KEY.encode()), *headers]
    assert json.loads(call(verifier(), query=query, headers=sent)[2]) == {"code": code}


def test_paths_under_verify_are_verified_for_envoy() -> None:
    assert call(verifier(), path="/verify/api/v1/reviews")[0] == 200
    assert call(verifier(), path="/verifyx")[0] == 404


def test_before_the_first_list_verify_and_readyz_answer_503() -> None:
    application = verifier(ready=False)
    assert call(application)[::2] == (503, b'{"code":"NOT_READY"}')
    assert call(application, "/readyz")[0] == 503
    assert call(application, "/healthz")[0] == 200


def test_readyz_reports_staleness_and_fails_only_past_the_configured_limit() -> None:
    stale = verifier(stale=120.0)
    status, _, body = call(stale, "/readyz")
    assert status == 200  # keysIndexed: the two keys `verifier()` holds
    assert json.loads(body) == {"ready": True, "secondsSinceSync": 120.0, "keysIndexed": 2}
    strict = verifier(stale=120.0, settings=app.VerifierSettings(max_staleness=60, audit=False))
    assert call(strict, "/readyz")[0] == 503


def test_metrics_count_each_decision_and_its_latency() -> None:
    application = verifier()
    call(application)
    call(application, headers=[])
    call(application, headers=[])
    text = call(application, "/metrics")[2].decode()
    assert 'keywright_verifier_decisions_total{code="OK",status="200"} 1.0' in text
    assert 'keywright_verifier_decisions_total{code="MISSING_KEY",status="401"} 2.0' in text
    assert 'keywright_verifier_decision_duration_seconds_count 3.0' in text
    assert 'keywright_verifier_decision_duration_seconds_bucket{le="+Inf"} 3.0' in text
    assert "keywright_verifier_keys_indexed 2.0" in text
    assert KEY not in text


def per_key(application: app.Verifier) -> dict[tuple[str, str, str], float]:
    """keywright_verifier_apikey_decisions_total in /metrics: (namespace, name, status)
    -> count."""
    text = call(application, "/metrics")[2].decode()
    return {(s.labels["namespace"], s.labels["name"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "keywright_verifier_apikey_decisions"
            for s in family.samples if s.name.endswith("_total")}


def zeros(namespace: str, name: str, **counts: float) -> dict[tuple[str, str, str], float]:
    """An ApiKey's four series: the statuses given (as s200=...), 0 for the others."""
    return {(namespace, name, status): counts.get(f"s{status}", 0.0)
            for status in ("200", "401", "403", "429")}


def test_answers_are_counted_per_apikey_by_status_only_when_the_key_matched_one() -> None:
    retired = tokens.generate("kw")
    application = verifier(
        apikey(previous=[{"revision": 1, "hash": hashing.digest(retired, PEPPERS, "v1"),
                          "lastCharacters": retired[-4:], "retiresAt": "2020-01-01T00:00:00Z"}]),
        apikey("admins", key=ADMIN_KEY, scopes=["Admin.Read"],
               rateLimit={"requests": 1, "period": "1m"}),
        apikey("off", key=OTHER, active=False))
    assert per_key(application) == {}  # no series before a key is presented
    sent = {name: [(b"x-api-key", key.encode())]
            for name, key in (("billing", KEY), ("admins", ADMIN_KEY), ("off", OTHER),
                              ("retired", retired), ("unknown", tokens.generate("kw")),
                              ("garbage", "kw_nope"))}
    asked = [("billing", b""), ("billing", b""), ("billing", b"scope=Admin.Read"),
             ("admins", b""), ("admins", b""), ("off", b""), ("retired", b""),
             # none of these names an ApiKey: a gateway's typo (500), an unknown key, a
             # malformed one, another namespace's key, no key at all
             ("billing", b"scope=invoices.read"), ("unknown", b""), ("garbage", b""),
             ("billing", b"namespace=elsewhere")]
    codes = [json.loads(call(application, query=query, headers=sent[who])[2])["code"]
             for who, query in asked]
    call(application, headers=[])
    assert codes == ["OK", "OK", "INSUFFICIENT_SCOPE", "OK", "RATE_LIMITED", "INACTIVE",
                     "INVALID_KEY", "INVALID_REQUIREMENT", "INVALID_KEY", "MALFORMED_KEY",
                     "INVALID_KEY"]
    # a previous key past its grace still names its ApiKey: a 401 of billing's
    assert per_key(application) == {**zeros("pay", "billing", s200=2, s401=1, s403=1),
                                    **zeros("pay", "admins", s200=1, s429=1),
                                    **zeros("pay", "off", s401=1)}


def test_a_deleted_apikeys_series_go_even_if_a_decision_counts_after() -> None:
    application = verifier()
    call(application)
    call(application, headers=[(b"x-api-key", ADMIN_KEY.encode())])
    assert per_key(application) == {**zeros("pay", "billing", s200=1),
                                    **zeros("pay", "admins", s200=1)}
    found = index.records(apikey())[0]
    application.keys.remove("pay", "billing")  # as the watch does on DELETED
    application.forget("pay", "billing")
    assert per_key(application) == zeros("pay", "admins", s200=1)
    # a request decided with the record just before the delete, counted just after
    application.metrics.observe(decision.OK, 0.0001, found)
    assert per_key(application) == zeros("pay", "admins", s200=1)


def test_each_decision_writes_one_audit_line_without_the_key(
    caplog: pytest.LogCaptureFixture
) -> None:
    application = verifier(settings=app.VerifierSettings(audit=True))
    with caplog.at_level(logging.INFO, logger="keywright.audit"):
        call(application, headers=[(b"x-api-key", KEY.encode()),
                                   (b"x-original-uri", b"/v1/reviews?page=2")])
        call(application, headers=[(b"x-api-key", OTHER.encode())], peer="2001:db8::7")
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert [(a["code"], a["name"], a["uri"], a["client"]) for a in lines] == [
        ("OK", "billing", "/v1/reviews?page=2", "203.0.113.9"),
        ("INVALID_KEY", None, None, "2001:db8::7")]
    assert KEY not in caplog.text
    assert OTHER not in caplog.text


@given(st.lists(st.text(), max_size=4), st.text(), st.none() | st.text(), st.text())
def test_the_audit_line_is_json_whatever_the_client_sends(
    scopes: list[str], method: str, uri: str | None, client: str
) -> None:
    answer = decision.Answer(decision.INVALID_KEY, None, client)
    assert json.loads(audit.line(answer, scopes, method, uri, NOW)) == {
        "time": "2027-01-15T08:00:00.000+00:00", "code": "INVALID_KEY", "status": 401,
        "namespace": None, "name": None, "lastCharacters": None, "revision": None,
        "client": client, "scopes": [s[:128] for s in sorted(scopes)], "method": method,
        "uri": uri}


def test_the_batched_stream_writes_every_line_once() -> None:
    out = io.StringIO()
    handler = audit.BatchedStream(out, interval=60)
    logger = logging.getLogger("test.batched")
    logger.addHandler(handler)
    logger.propagate = False
    for n in range(5):
        logger.warning("line %d", n)
    assert out.getvalue() == ""  # nothing yet: batched
    handler.close()
    logger.removeHandler(handler)
    assert out.getvalue() == "".join(f"line {n}\n" for n in range(5))


# -- usage ------------------------------------------------------------------------------

def record(name: str = "billing", revision: int = 2) -> index.KeyRecord:
    found = index.records(apikey(name))[0]
    return index.KeyRecord(**{**{f: getattr(found, f) for f in found.__slots__},
                              "revision": revision})


def test_usage_is_patched_at_once_then_at_most_once_a_minute_per_key() -> None:
    tracker = usage.Usage()
    tracker.used(record(revision=1), NOW)
    tracker.used(record(revision=2), NOW + 1)
    assert tracker.due(NOW + 1) == [("pay", "billing", {
        "lastUsedAt": "2027-01-15T08:00:01Z",
        "lastUsedByRevision": {"1": "2027-01-15T08:00:00Z", "2": "2027-01-15T08:00:01Z"}})]
    tracker.used(record(revision=2), NOW + 30)
    assert tracker.due(NOW + 30) == []  # patched 29 s ago
    assert tracker.due(NOW + 61) == [("pay", "billing", {
        "lastUsedAt": "2027-01-15T08:00:30Z",
        "lastUsedByRevision": {"2": "2027-01-15T08:00:30Z"}})]
    assert tracker.due(NOW + 200) == []  # nothing new


def test_usage_keys_are_independent_and_a_failed_patch_is_retried() -> None:
    tracker = usage.Usage()
    tracker.used(record("a"), NOW)
    tracker.used(record("b"), NOW)
    patches = tracker.due(NOW)
    assert [p[1] for p in patches] == ["a", "b"]
    tracker.failed(patches[0], NOW)
    assert [p[1] for p in tracker.due(NOW + 61)] == ["a"]


def test_usage_of_a_deleted_key_is_forgotten() -> None:
    tracker = usage.Usage()
    tracker.used(record("gone"), NOW)
    tracker.forget("pay", "gone")
    assert tracker.due(NOW) == []


# -- index ------------------------------------------------------------------------------

def test_a_namespace_relist_replaces_only_that_namespace() -> None:
    keys = index.Index()
    keys.replace_all([apikey("a", "one", key=KEY), apikey("b", "two", key=OTHER)])
    third = tokens.generate("kw")
    keys.replace_all([apikey("c", "one", key=third)], namespace="one")
    found = {(r.namespace, r.name) for t in keys.tables.values() for r in t.values()}
    assert found == {("one", "c"), ("two", "b")}
    assert len(keys) == 2
    assert keys.hash_count() == 2


def test_a_key_in_its_grace_counts_as_a_hash() -> None:
    keys = index.Index()
    keys.replace_all([apikey(previous=[{"revision": 1, "hash": "hmac-sha256:v1:AAAA",
                                        "lastCharacters": "abcd",
                                        "retiresAt": "2027-01-15T09:00:00Z"}])])
    assert (len(keys), keys.hash_count()) == (1, 2)


def test_an_echo_of_usage_changes_nothing_but_a_spec_change_does() -> None:
    keys = index.Index()
    original = apikey()
    keys.upsert(original)
    before = next(iter(keys.tables["v1"].values()))
    used = {**original, "status": {**original["status"], "lastUsedAt": "2027-01-15T08:00:00Z"}}
    keys.upsert(used)
    assert next(iter(keys.tables["v1"].values())) is before  # not rebuilt
    keys.upsert({**used, "spec": {**used["spec"], "active": False}})
    assert next(iter(keys.tables["v1"].values())).usable is False


def test_huge_requirements_are_answered_but_never_cached() -> None:
    application = verifier()
    before = app._cached_requirements.cache_info().currsize
    for n in range(3):
        huge = b"Reviews.Read," + b"x" * (app.CACHED_REQUIREMENTS + n)
        status, _, body = call(application, headers=[(b"x-api-key", KEY.encode()),
                                                     (b"x-keywright-scope", huge)])
        assert (status, body) == (500, b'{"code":"INVALID_REQUIREMENT"}')  # x...x: no scope
    assert app._cached_requirements.cache_info().currsize == before


def test_an_overlong_forwarded_address_is_not_an_address() -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    assert decision.client_address("10.0.0.1", {"x-forwarded-for": [b"1" * 65]},
                                   trusted) is None


def test_an_apikey_whose_status_cannot_be_read_is_skipped_not_fatal(
    caplog: pytest.LogCaptureFixture
) -> None:
    broken = apikey("broken", key=OTHER, previous=[{"revision": 1}])  # no hash, no retiresAt
    keys = index.Index()
    keys.replace_all([broken, apikey("fine")])
    assert keys.names() == {("pay", "fine")}
    assert "pay/broken" in caplog.text
    assert OTHER not in caplog.text


def test_fractional_seconds_in_status_timestamps_are_read() -> None:
    fractional = apikey(expires="2027-06-01T00:00:00.250Z")
    midnight = datetime.datetime(2027, 6, 1, tzinfo=datetime.UTC).timestamp()
    assert index.records(fractional)[0].expires_at == midnight + 0.25


def test_a_hash_kept_across_an_update_stays_findable() -> None:
    keys = index.Index()
    keys.upsert(apikey())
    rotated = apikey(key=OTHER, previous=[{
        "revision": 1, "hash": apikey()["status"]["hash"], "lastCharacters": KEY[-4:],
        "retiresAt": "2027-01-15T09:00:00Z"}])
    keys.upsert(rotated)
    found = {r.revision: r.retires_at is not None for t in keys.tables.values()
             for r in t.values()}
    assert found == {2: False, 1: True}


def test_a_requirement_no_key_can_meet_is_a_500_and_one_warning_a_minute(
    caplog: pytest.LogCaptureFixture
) -> None:
    application = verifier()
    with caplog.at_level(logging.WARNING, logger="keywright.verifier.app"):
        answers = [call(application, query=b"scope=invoices.read") for _ in range(3)]
        typo = call(application, query=b"scope=Invocies.Read")
    assert {(status, body) for status, _, body in answers} == \
        {(500, b'{"code":"INVALID_REQUIREMENT"}')}
    assert "www-authenticate" not in answers[0][1]
    assert typo[::2] == (500, b'{"code":"INVALID_REQUIREMENT"}')
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per distinct requirement, not one per request
    assert "['invoices.read'] is not <Area>.<Read|Write|Update|Delete>" in warnings[0]
    assert "no ApiKey grants" in warnings[1]
    metrics = application.metrics.render().decode()
    assert 'keywright_verifier_decisions_total{code="INVALID_REQUIREMENT",status="500"} 4.0' \
        in metrics


# -- quotas (in process) -----------------------------------------------------------------

def test_an_exhausted_quota_answers_usage_limit_reached_and_status_usage_follows() -> None:
    application = verifier(apikey(quota={"limit": 2, "refill": {"every": "1h"}}))
    assert [call(application)[0] for _ in range(2)] == [200, 200]
    status, headers, body = call(application)
    assert (status, body) == (429, b'{"code":"USAGE_LIMIT_REACHED"}')
    assert 3590 <= int(headers["retry-after"]) <= 3600  # the next refill
    (patch,) = application.usage.due(time.time())
    assert patch[2]["usage"]["remaining"] == 0


def test_a_quota_without_refill_gives_no_retry_after() -> None:
    application = verifier(apikey(quota={"limit": 1}))
    assert call(application)[0] == 200
    status, headers, body = call(application)
    assert (status, body) == (429, b'{"code":"USAGE_LIMIT_REACHED"}')
    assert "retry-after" not in headers


def test_a_quota_restarts_from_status_usage_and_resets_with_the_annotation() -> None:
    seeded = apikey(quota={"limit": 5})
    seeded["status"]["usage"] = {"remaining": 1, "refilledAt": "2027-01-15T08:00:00Z"}
    keys = index.Index()
    keys.upsert(seeded)
    application = app.Verifier(keys, lambda: PEPPERS, lambda: True, lambda: 0.0,
                               app.VerifierSettings(audit=False))
    assert [call(application)[0] for _ in range(2)] == [200, 429]  # 1 left, per status
    reset = {**seeded, "metadata": {**seeded["metadata"],
                                    "annotations": {"keywright.dev/reset-quota": "now"}}}
    keys.upsert(reset)  # the annotation is read: the record is rebuilt
    assert [call(application)[0] for _ in range(6)] == [200] * 5 + [429]


@pytest.mark.parametrize(
    ("counted_since", "annotation", "credits"),
    [
        pytest.param(None, None, 1, id="no reset ever: the status's credits"),
        pytest.param("first", "first", 1, id="counted since the current reset: the status's"),
        pytest.param(None, "first", 5, id="a reset after the status was written: a full quota"),
        pytest.param("first", "second", 5, id="a newer reset than the status knew: a full quota"),
    ],
)
def test_a_quota_restarts_from_status_usage_only_if_counted_since_the_current_reset(
        counted_since: str | None, annotation: str | None, credits: int) -> None:
    seeded = apikey(quota={"limit": 5})
    seeded["status"]["usage"] = {"remaining": 1, "refilledAt": "2027-01-15T08:00:00Z",
                                 **({"resetQuota": counted_since} if counted_since else {})}
    if annotation:
        seeded["metadata"]["annotations"] = {"keywright.dev/reset-quota": annotation}
    application = verifier(seeded)
    assert [call(application)[0] for _ in range(credits + 1)] == [200] * credits + [429]
    (patch,) = application.usage.due(time.time())
    assert patch[2]["usage"]["resetQuota"] == annotation  # what they now count from
