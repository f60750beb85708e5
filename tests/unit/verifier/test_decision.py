"""The verifier's decision as a table (every code, every precedence rule), and properties
of header parsing and the trusted-proxy rule (Hypothesis)."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from keywright.core import hashing, tokens
from keywright.verifier import audit, decision, index, ratelimit
from tests.support import contract
from tests.support.keys import KEY, NOW, OLD, OTHER, PEPPERS, PROXY, apikey


def grace(retires: str) -> dict[str, Any]:
    return {"revision": 1, "hash": hashing.digest(OLD, PEPPERS), "lastCharacters": OLD[-4:],
            "retiresAt": retires}


def ask(headers: dict[str, list[bytes]] | None = None, *, key: str | None = KEY,
        peer: str = "203.0.113.9", scopes: tuple[str, ...] = (),
        namespace: str | None = None) -> decision.Ask:
    sent = dict(headers or {})
    if key is not None:
        sent.setdefault("x-api-key", [key.encode()])
    return decision.Ask(sent, peer, frozenset(scopes), namespace)


BEHIND_PROXY = decision.Policy(trusted_proxies=PROXY)


def decide(request: decision.Ask, *apikeys: dict[str, Any]) -> str:
    keys = index.Index()
    keys.replace_all(apikeys or [apikey()])
    return decision.decide(request, keys, PEPPERS, NOW, BEHIND_PROXY).code


ONE_BYTE_OFF = KEY[:-1] + ("A" if KEY[-1] != "A" else "B")

CASES = [
    pytest.param(ask(), (), "OK", id="a valid key is OK"),
    pytest.param(ask(key=None), (), "MISSING_KEY", id="no header is a missing key"),
    pytest.param(ask({"x-api-key": [b""]}, key=None), (), "MISSING_KEY",
                 id="an empty header is a missing key"),
    pytest.param(ask({"authorization": [b"Bearer "]}, key=None), (), "MISSING_KEY",
                 id="Bearer with nothing after it is a missing key"),
    pytest.param(ask({"authorization": [b"bearer " + KEY.encode()]}, key=None), (), "OK",
                 id="the Bearer scheme is case-insensitive"),
    pytest.param(ask({"authorization": [b"Basic dXNlcjpwdw=="]}, key=None), (),
                 "MISSING_KEY", id="another auth scheme carries no key"),
    pytest.param(ask({"authorization": [b"Bearer " + OTHER.encode()]}), (), "OK",
                 id="X-API-Key wins over Authorization"),
    pytest.param(ask({"x-api-key": [KEY.encode(), KEY.encode()]}, key=None), (),
                 "MALFORMED_KEY", id="a key header sent twice is malformed"),
    pytest.param(ask({"authorization": [b"Bearer " + KEY.encode()] * 2}, key=None), (),
                 "MALFORMED_KEY", id="two Authorization headers are malformed"),
    pytest.param(ask({"x-api-key": [b"k" * 65536]}, key=None), (), "MALFORMED_KEY",
                 id="a 64 KB header is malformed"),
    pytest.param(ask({"x-api-key": [b"kw_\xff\xfe"]}, key=None), (), "MALFORMED_KEY",
                 id="bytes that are not UTF-8 are malformed"),
    pytest.param(ask(key=ONE_BYTE_OFF), (), "MALFORMED_KEY",
                 id="a wrong checksum is malformed before any hash"),
    pytest.param(ask(key=OTHER), (), "INVALID_KEY", id="a well-formed unknown key is invalid"),
    pytest.param(ask(namespace="other"), (), "INVALID_KEY",
                 id="a key from another namespace is answered as unknown"),
    pytest.param(ask(namespace="pay"), (), "OK", id="the right namespace is OK"),
    pytest.param(ask(), ({"active": False},), "INACTIVE", id="a deactivated key is inactive"),
    pytest.param(ask(), ({"phase": "Failed"},), "INACTIVE",
                 id="a Failed key is refused as inactive"),
    pytest.param(ask(), ({"phase": "Inactive", "deactivated": {
        "reason": "PolicyViolation", "message": "m", "since": "2027-01-01T00:00:00Z"}},),
        "INACTIVE", id="a key the operator deactivated for a policy is inactive, though "
                       "spec.active is true"),
    pytest.param(ask(), ({"expires": "2027-01-15T08:00:00Z"},), "EXPIRED",
                 id="expiry is checked by the clock, whatever the phase says"),
    pytest.param(ask(), ({"expires": None},), "OK", id="Never does not expire"),
    pytest.param(ask(), ({"ipAllowlist": ["198.51.100.0/24"]},), "IP_NOT_ALLOWED",
                 id="an address outside the allowlist is refused"),
    pytest.param(ask(peer="198.51.100.7"), ({"ipAllowlist": ["198.51.100.0/24"]},), "OK",
                 id="an address inside it is OK"),
    pytest.param(ask(peer="::ffff:198.51.100.7"), ({"ipAllowlist": ["198.51.100.0/24"]},),
                 "OK", id="an IPv4-mapped IPv6 peer is its IPv4 address"),
    pytest.param(ask(peer="2001:db8::5"), ({"ipAllowlist": ["2001:db8::/32"]},), "OK",
                 id="IPv6 allowlists work"),
    pytest.param(ask({"x-forwarded-for": [b"198.51.100.7"]}, peer="203.0.113.9"),
                 ({"ipAllowlist": ["198.51.100.0/24"]},), "IP_NOT_ALLOWED",
                 id="X-Forwarded-For from an untrusted peer is ignored"),
    pytest.param(ask({"x-forwarded-for": [b"198.51.100.7, 10.1.1.1"]}, peer="10.0.0.2"),
                 ({"ipAllowlist": ["198.51.100.0/24"]},), "OK",
                 id="behind trusted proxies the right-most untrusted hop counts"),
    pytest.param(ask({"x-forwarded-for": [b"198.51.100.7, 203.0.113.1"]}, peer="10.0.0.2"),
                 ({"ipAllowlist": ["198.51.100.0/24"]},), "IP_NOT_ALLOWED",
                 id="a spoofed left-most entry does not count"),
    pytest.param(ask(scopes=("Reviews.Read",)), (), "OK", id="Write satisfies Read"),
    pytest.param(ask(scopes=("Repos.Write",)), (), "INSUFFICIENT_SCOPE",
                 id="Read does not satisfy Write"),
    pytest.param(ask(scopes=("Reviews.Read", "Repos.Write")), (), "INSUFFICIENT_SCOPE",
                 id="all required scopes are needed"),
    pytest.param(ask(scopes=("Reviews.Update",)), (), "INSUFFICIENT_SCOPE",
                 id="Write does not satisfy Update"),
    pytest.param(ask(scopes=("Reviews.Delete",)), (), "INSUFFICIENT_SCOPE",
                 id="Write does not satisfy Delete"),
    pytest.param(ask(scopes=("Reviews.Update", "Reviews.Delete")),
                 ({"scopes": ["Reviews.Update", "Reviews.Delete"]},), "OK",
                 id="Update and Delete satisfy themselves"),
    pytest.param(ask(scopes=("Reviews.Read",)),
                 ({"scopes": ["Reviews.Update", "Reviews.Delete"]},), "INSUFFICIENT_SCOPE",
                 id="Update and Delete do not satisfy Read"),
    pytest.param(ask(scopes=("Reviews.Write",)), ({"scopes": ["Reviews.Update"]},),
                 "INSUFFICIENT_SCOPE", id="Update does not satisfy Write"),
    pytest.param(ask(key=OLD), ({"previous": [grace("2027-01-15T09:00:00Z")]},), "OK",
                 id="a key in its grace period verifies"),
    pytest.param(ask(key=OLD), ({"previous": [grace("2027-01-15T08:00:00Z")]},),
                 "INVALID_KEY", id="after retiresAt it is an unknown key"),
    pytest.param(ask(), ({"active": False, "ipAllowlist": ["198.51.100.0/24"]},),
                 "INACTIVE", id="inactive is checked before the address"),
    pytest.param(ask(scopes=("Billing.Read",)), ({"ipAllowlist": ["198.51.100.0/24"]},),
                 "IP_NOT_ALLOWED", id="the address is checked before scopes"),
    pytest.param(ask(), ({"version": "v2"},), "OK", id="a hash under an older pepper verifies"),
]


GATEWAY_TYPOS = [
    pytest.param(ask(scopes=("invoices.read",)), "INVALID_REQUIREMENT",
                 id="a requirement that is not a scope is the gateway's mistake"),
    pytest.param(ask(scopes=("Reviews.Read", "Reviews")), "INVALID_REQUIREMENT",
                 id="so is a requirement with no level"),
    pytest.param(ask(key=None, scopes=("invoices.read",)), "MISSING_KEY",
                 id="a request without a key is told its own problem first"),
    pytest.param(ask(scopes=("Invocies.Read",)), "INVALID_REQUIREMENT",
                 id="a scope in an area no ApiKey grants is the gateway's mistake"),
    pytest.param(ask(scopes=("Billing.Write",)), "INSUFFICIENT_SCOPE",
                 id="a scope in an area another ApiKey grants is this key's lack"),
    pytest.param(ask(scopes=("Reviews.Read",)), "OK", id="a scope the key has is OK"),
]


@pytest.mark.parametrize(("request_", "code"), GATEWAY_TYPOS)
def test_a_requirement_no_key_can_meet_is_told_apart_from_a_missing_scope(
    request_: decision.Ask, code: str
) -> None:
    billing = apikey("billing-reader", key=OLD, scopes=["Billing.Read"])
    assert decide(request_, apikey(), billing) == code
    assert decision.STATUS[code] == {"INVALID_REQUIREMENT": 500, "INSUFFICIENT_SCOPE": 403,
                                     "MISSING_KEY": 401, "OK": 200}[code]


@pytest.mark.parametrize(("request_", "changes", "code"), CASES)
def test_decision(request_: decision.Ask, changes: tuple[dict[str, Any], ...],
                  code: str) -> None:
    assert decide(request_, apikey(**(changes[0] if changes else {}))) == code


def test_rate_limit_is_per_key_with_retry_after() -> None:
    rate = ratelimit.Limits().rate_check
    keys = index.Index()
    keys.replace_all([apikey(rateLimit={"requests": 2, "period": "10s"})])
    answers = [decision.decide(ask(), keys, PEPPERS, NOW + i * 0.1, rate=rate)
               for i in range(3)]
    assert [a.code for a in answers] == ["OK", "OK", "RATE_LIMITED"]
    assert answers[2].status == 429
    assert answers[2].retry_after == 10  # the first leaves the window 9.8 s later
    # a sliding window, not a bucket: no request back before the first one leaves
    assert decision.decide(ask(), keys, PEPPERS, NOW + 9.9, rate=rate).code == "RATE_LIMITED"
    assert decision.decide(ask(), keys, PEPPERS, NOW + 10.05, rate=rate).code == "OK"


def test_the_audit_line_has_the_fields_and_never_the_key() -> None:
    keys = index.Index()
    keys.replace_all([apikey()])
    answer = decision.decide(ask(scopes=("Reviews.Read",)), keys, PEPPERS, NOW)
    text = audit.line(answer, ["Reviews.Read"], "GET", "/v1/reviews", NOW)
    assert KEY not in text
    assert text == (
        '{"time":"2027-01-15T08:00:00.000+00:00","code":"OK","status":200,'
        '"namespace":"pay","name":"billing","lastCharacters":"' + KEY[-4:] + '",'
        '"revision":2,"client":"203.0.113.9","scopes":["Reviews.Read"],"method":"GET",'
        '"uri":"/v1/reviews"}')


header_values = st.lists(st.binary(max_size=80), max_size=3)


@given(st.dictionaries(st.sampled_from(["x-api-key", "authorization", "x-other"]),
                       header_values))
def test_header_parsing_never_crashes_and_returns_a_key_or_a_reason(
    headers: dict[str, list[bytes]]
) -> None:
    key, problem = decision.extract_key(headers)
    assert (key is None) != (problem is None)
    assert problem in (None, "MISSING_KEY", "MALFORMED_KEY")  # the contract's codes
    if key is not None:
        assert 0 < len(key) <= contract.LONGEST_KEY
        assert key.isascii()


@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
               min_size=49, max_size=49))
def test_only_a_checksummed_key_is_well_formed(body: str) -> None:
    candidate = "kw_" + body
    good = candidate[:-6] + contract.check(candidate[:-6])
    assert tokens.well_formed(good)
    assert tokens.well_formed(candidate) == (candidate == good)


ipv4 = st.ip_addresses(v=4).map(str)


@given(st.lists(ipv4, min_size=1, max_size=5), ipv4)
def test_an_untrusted_peer_is_the_client_whatever_it_forwards(
    forwarded: list[str], peer: str
) -> None:
    assume(ipaddress.ip_address(peer) not in PROXY[0])
    headers = {"x-forwarded-for": [", ".join(forwarded).encode()]}
    assert str(decision.client_address(peer, headers, PROXY)) == peer


@given(st.lists(ipv4, min_size=1, max_size=5))
def test_behind_a_trusted_proxy_the_client_is_the_last_untrusted_hop(
    forwarded: list[str]
) -> None:
    headers = {"x-forwarded-for": [", ".join(forwarded).encode()]}
    got = decision.client_address("10.0.0.1", headers, PROXY)
    untrusted = [a for a in forwarded if ipaddress.ip_address(a) not in PROXY[0]]
    assert str(got) == (untrusted[-1] if untrusted else forwarded[0])


def test_an_upsert_replaces_only_that_apikeys_hashes_and_remove_drops_them() -> None:
    keys = index.Index()
    keys.replace_all([apikey(), apikey("other", key=OTHER)])
    keys.upsert(apikey(key=OLD))  # billing rotated to a new key, no grace
    assert decision.decide(ask(), keys, PEPPERS, NOW).code == "INVALID_KEY"
    assert decision.decide(ask(key=OLD), keys, PEPPERS, NOW).code == "OK"
    assert decision.decide(ask(key=OTHER), keys, PEPPERS, NOW).code == "OK"
    keys.remove("pay", "billing")
    keys.remove("pay", "other")
    assert decision.decide(ask(key=OTHER), keys, PEPPERS, NOW).code == "INVALID_KEY"
    assert (len(keys), keys.tables) == (0, {})


EXTRA = decision.Policy(key_headers=("x-api-key", "x-acrity-key"))


@pytest.mark.parametrize(("headers", "code"), [
    pytest.param({"x-acrity-key": [KEY.encode()]}, "OK", id="a configured extra header"),
    pytest.param({"x-api-key": [KEY.encode()], "x-acrity-key": [OTHER.encode()]}, "OK",
                 id="X-API-Key wins over an extra header"),
    pytest.param({"x-acrity-key": [KEY.encode()],
                  "authorization": [b"Bearer " + OTHER.encode()]}, "OK",
                 id="an extra header wins over Authorization"),
    pytest.param({"x-acrity-key": [OTHER.encode()]}, "INVALID_KEY",
                 id="an extra header's key is checked like any other"),
])
def test_extra_key_headers_come_after_x_api_key_and_before_authorization(
    headers: dict[str, list[bytes]], code: str
) -> None:
    keys = index.Index()
    keys.replace_all([apikey()])
    request = decision.Ask(headers, "203.0.113.9")
    assert decision.decide(request, keys, PEPPERS, NOW, EXTRA).code == code


def test_the_in_process_example_in_the_gateway_docs_runs_as_written(
    capsys: pytest.CaptureFixture[str]
) -> None:
    text = (Path(__file__).parents[3] / "docs" / "gateways.md").read_text()
    section = text[text.index("## In-process, without HTTP"):]
    start = section.index("```python\n") + len("```python\n")
    example = section[start:section.index("\n```", start)]
    assert "decision.decide(" in example
    pepper_secret = {"metadata": {"name": "keywright-pepper"}, "data": {
        name: base64.b64encode(value).decode() for name, value in PEPPERS.to_data().items()}}
    exec(example, {"pepper_secret": pepper_secret,  # noqa: S102 - the docs' own example
                   "apikeys": [apikey("billing-sync", scopes=["Invoices.Read"])],
                   "raw_key": KEY.encode()})
    assert capsys.readouterr().out == "OK 200 billing-sync\n"
