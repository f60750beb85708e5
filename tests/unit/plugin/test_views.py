"""What `kubectl apikey` shows and builds, as tables: times in words, the list's rows and
filters, and the ApiKey `create` makes of its flags. Pure; a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keywright.plugin import views

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def at(**delta: float) -> str:
    return (NOW + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("seconds", "words"), [
    (0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h"),
    (86400, "1d"), (364 * 86400, "364d"), (729 * 86400, "729d"), (730 * 86400, "2y"),
])
def test_ages_as_kubectl_prints_them(seconds: int, words: str) -> None:
    assert views.ago(NOW - timedelta(seconds=seconds), NOW) == words


@pytest.mark.parametrize(("status", "expires", "used"), [
    pytest.param({"expiresAt": at(days=12, hours=1), "createdAt": at(days=-1)}, "in 12d",
                 "never", id="a key expiring in twelve days, never used"),
    pytest.param({"expiresAt": at(hours=-3), "createdAt": at(days=-30),
                  "lastUsedAt": at(hours=-5)}, "expired 3h ago", "5h ago",
                 id="an expired key, last used before it expired"),
    pytest.param({"createdAt": at(days=-1)}, "never", "never", id="Never expires"),
    pytest.param({}, "-", "never", id="not yet decided"),
])
def test_expiry_and_last_use_in_words(status: dict[str, Any], expires: str, used: str) -> None:
    assert views.expires_words(status, NOW) == expires
    assert views.last_used_words(status, NOW) == used


def key(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "k", "namespace": "pay", "creationTimestamp": at(days=-40)},
            "spec": {"scopes": ["Invoices.Read"], "roles": ["team"]}, "status": status}


def test_a_row_of_the_list() -> None:
    row = views.list_row(key(phase="Active", keyPreview="kw_...x9Qa", expiresAt=at(days=12),
                             createdAt=at(days=-40)), NOW, all_namespaces=True)
    assert row == ["pay", "k", "true", "Active", "kw_...x9Qa", "Invoices.Read,role:team",
                   "in 12d", "never", "40d"]


@pytest.mark.parametrize(("status", "expiring", "unused"), [
    pytest.param({"expiresAt": at(days=10)}, True, True,
                 id="expires in 10d, never used in its 40d"),
    pytest.param({"expiresAt": at(days=20), "lastUsedAt": at(days=-2)}, False, False,
                 id="expires in 20d, used 2d ago"),
    pytest.param({"expiresAt": at(days=-1), "lastUsedAt": at(days=-31)}, False, True,
                 id="already expired is not expiring; unused for 31d"),
    pytest.param({}, False, True, id="Never expires; unused counts from creation"),
    pytest.param({"lastUsedAt": at(days=-35), "reactivatedAt": at(days=-3)}, False, False,
                 id="reactivated 3d ago restarts the unused count, as the operator's"),
])
def test_the_lists_filters(status: dict[str, Any], expiring: bool, unused: bool) -> None:
    assert views.expiring_within(key(**status), timedelta(days=14), NOW) is expiring
    assert views.unused_for(key(**status), timedelta(days=30), NOW) is unused


def test_a_table_is_aligned_as_kubectls() -> None:
    assert views.table(("NAME", "PHASE"), [["a", "Active"], ["longer", "-"]]) == (
        "NAME     PHASE\na        Active\nlonger   -")


@pytest.mark.parametrize(("flags", "spec"), [
    pytest.param({}, {"expiration": "90d"}, id="nothing but an expiration"),
    pytest.param({"rate": "600/1m", "quota": "500"},
                 {"expiration": "90d", "rateLimit": {"requests": 600, "period": "1m"},
                  "quota": {"limit": 500}}, id="a rate and a quota without refill"),
    pytest.param({"seal_to": ["age1x"], "no_secret": True},
                 {"expiration": "90d", "secret": {"create": False},
                  "delivery": {"age": {"recipients": ["age1x"]}}},
                 id="sealed to a partner, with no Secret"),
    pytest.param({"restart": ["sts/db", "ds/agent"]},
                 {"expiration": "90d", "rotation": {"restartTargets": [
                     {"kind": "StatefulSet", "name": "db"},
                     {"kind": "DaemonSet", "name": "agent"}]}},
                 id="restart targets by kubectl's short names"),
])
def test_create_flags_become_a_spec(flags: dict[str, Any], spec: dict[str, Any]) -> None:
    made = views.manifest("k", "pay", expiration="90d", **flags)
    assert made["spec"] == spec


@pytest.mark.parametrize(("flags", "words"), [
    pytest.param({"rate": "600"}, "--rate: '600' must be <requests>/<period>"),
    pytest.param({"quota": "0"}, "--quota: '0' must be <credits>"),
    pytest.param({"quota": "5/1w"}, "--quota: '1w'"),
    pytest.param({"restart": ["pod/x"]}, "--restart: 'pod/x' must be deployment/NAME"),
])
def test_a_bad_flag_is_named(flags: dict[str, Any], words: str) -> None:
    with pytest.raises(views.FlagError, match=words):
        views.manifest("k", "pay", expiration="90d", **flags)


def test_a_recipients_file_as_age_reads_one() -> None:
    assert views.recipients_file("# partner\nage1a\n\n  age1b  \n") == ["age1a", "age1b"]


@pytest.mark.parametrize(("used", "current", "words"), [
    pytest.param(None, True, "never used", id="a revision never used"),
    pytest.param(at(seconds=-70), False, "in use", id="used within two minutes is in use"),
    pytest.param(at(hours=-3), False, "last used 3h ago (traffic stopped)",
                 id="a previous revision gone quiet: its traffic stopped"),
    pytest.param(at(hours=-3), True, "last used 3h ago",
                 id="the current one gone quiet is just quiet"),
])
def test_a_revisions_use_in_words(used: str | None, current: bool, words: str) -> None:
    assert views.use_words(used, NOW, current) == words


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": spec}


def test_the_pods_that_take_a_secret() -> None:
    pods = [
        pod("by-env", containers=[{"env": [{"valueFrom": {"secretKeyRef": {"name": "k"}}}]}]),
        pod("by-env-from", initContainers=[{"envFrom": [{"secretRef": {"name": "k"}}]}]),
        pod("by-volume", volumes=[{"secret": {"secretName": "k"}}]),
        pod("other", containers=[{"env": [{"valueFrom": {"secretKeyRef": {"name": "x"}}}]}]),
    ]
    assert views.consumers(pods, "k") == ["by-env", "by-env-from", "by-volume"]


SPEC = {"spec": {"scopes": ["Invoices.Read"], "roles": ["team"],
                 "ipAllowlist": ["203.0.113.0/24"]},
        "status": {"expiresAt": "2026-12-01T00:00:00Z"}}
WHOSE = {"namespace": "pay", "name": "billing", "revision": 2, "lastCharacters": "x9Qa",
         "retiresAt": None}


@pytest.mark.parametrize(("found", "apikey", "scopes", "client", "said"), [
    pytest.param({"code": "OK", "status": 200, "apikey": WHOSE}, SPEC, ["Invoices.Read"],
                 "203.0.113.9", (200, "OK", "key billing (revision 2) grants Invoices.Read"),
                 id="allowed, from an allowed address"),
    pytest.param({"code": "OK", "status": 200, "apikey": WHOSE}, SPEC, [], "198.51.100.7",
                 (403, "IP_NOT_ALLOWED", "198.51.100.7 is not in 203.0.113.0/24"),
                 id="the address judged here, against the allowlist"),
    pytest.param({"code": "OK", "status": 200, "apikey": WHOSE}, SPEC, [], None,
                 (200, "OK", "key billing (revision 2) is valid (from 203.0.113.0/24 only; "
                  "pass --from to judge an address)"), id="no address given: said so"),
    pytest.param({"code": "INSUFFICIENT_SCOPE", "status": 403, "apikey": WHOSE}, SPEC,
                 ["Invoices.Write"], None,
                 (403, "INSUFFICIENT_SCOPE", "key billing lacks Invoices.Write (it holds "
                  "Invoices.Read and roles team)"), id="a scope it lacks, and what it holds"),
    pytest.param({"code": "EXPIRED", "status": 401, "apikey": WHOSE}, SPEC, [], None,
                 (401, "EXPIRED", "key billing expired at 2026-12-01T00:00:00Z"),
                 id="expired, and when"),
    pytest.param({"code": "INACTIVE", "status": 401, "apikey": WHOSE},
                 {"spec": {}, "status": {"deactivated": {"message": "deactivated: "
                                                         "ApiKeyPolicy p: x"}}}, [], None,
                 (401, "INACTIVE", "key billing is not active: deactivated: ApiKeyPolicy p: x"),
                 id="deactivated by a policy, in the policy's words"),
    pytest.param({"code": "INVALID_KEY", "status": 401}, None, [], None,
                 (401, "INVALID_KEY", "no ApiKey holds this key (revoked, rotated past its "
                  "grace, deleted, or another namespace's)"), id="no one's key"),
])
def test_a_check_in_words(found: dict[str, Any], apikey: dict[str, Any] | None,
                          scopes: list[str], client: str | None,
                          said: tuple[int, str, str]) -> None:
    assert views.explain(found, apikey, scopes, client) == said
