"""A key over time, on the real control plane: expiry warnings at their instants, keys
nobody uses, and the operator's per-key metrics with exact values.

The module's operator runs with thresholds in seconds (--expiry-warnings 20s,8s,
--never-used-after 6s) and its /metrics on loopback; afterwards the session operator
runs again as every other test expects it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from keywright.core import times
from keywright.kits import processes
from tests.e2e.test_plugin import apikey_cli
from tests.support import k8s
from tests.support.k8s import Cluster, Operator, Plaintext, Verifier, answer, http_get
from tests.support.manifests import apikey
from tests.support.prometheus import Prometheus
from tests.support.waiting import eventually

AGING_FLAGS = ("--expiry-warnings", "20s,8s", "--never-used-after", "6s")
RULES = k8s.REPO / "deploy" / "monitoring" / "keywright.rules.yaml"


@pytest.fixture(scope="module")
def aging_operator(operator: Operator) -> Iterator[tuple[Operator, int]]:
    """The session operator with short thresholds and its metrics on loopback."""
    port = processes.free_port()
    operator.stop()
    operator.start(extra=(*AGING_FLAGS, "--metrics-port", str(port),
                          "--metrics-host", "127.0.0.1"))
    try:
        yield operator, port
    finally:
        operator.stop()
        operator.start()


def condition(status: dict[str, Any], kind: str) -> dict[str, str] | None:
    found = [c for c in status.get("conditions") or [] if c.get("type") == kind]
    return dict(found[0]) if found else None


def when_event(cluster: Cluster, namespace: str, name: str, reason: str,
               count: int = 1) -> list[datetime]:
    """When the operator posted events of this reason (second resolution), oldest first,
    once there are `count` of them."""
    def posted() -> list[datetime] | None:
        found = cluster.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},reason={reason}")
        stamps: list[datetime] = sorted(
            stamp for e in found.items if (stamp := e.first_timestamp or e.event_time))
        return stamps if len(stamps) >= count else None
    return eventually(posted, timeout=40, what=f"{count} {reason} event(s) for {name}")


def use(verifier: Verifier, key: Plaintext) -> bytes:
    return verifier.get("/verify", {"X-API-Key": key})[2]


def test_expiring_soon_is_said_and_warned_at_each_threshold_then_gone_at_expiry(
    aging_operator: tuple[Operator, int], cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("soon", namespace, expiration="30s"))
    created = cluster.wait_phase(namespace, "soon", "Active")["createdAt"]
    expires = times.parse(cluster.status(namespace, "soon")["expiresAt"])
    assert (expires - times.parse(created)).total_seconds() == 30
    assert condition(cluster.status(namespace, "soon"), "ExpiringSoon") is None
    first, second = when_event(cluster, namespace, "soon", "ExpiringSoon", count=2)
    # each at its instant (events carry whole seconds): 20 s, then 8 s before expiry
    for posted, before in ((first, 20), (second, 8)):
        lag = (posted - expires).total_seconds() + before
        assert -1 <= lag <= 2, f"the {before}s warning came {lag:+.0f}s off its instant"
    status = cluster.status(namespace, "soon")
    found = condition(status, "ExpiringSoon")
    assert found is not None
    assert found["status"] == "True"
    assert -1 <= (times.parse(found["lastTransitionTime"]) - expires).total_seconds() + 20 <= 2
    assert found["message"] == f"key {status['keyPreview']} expires at " \
        f"{status['expiresAt']}, within 8s"
    assert status["expiryWarning"] == "8s"
    cluster.wait_phase(namespace, "soon", "Expired", timeout=40)
    eventually(lambda: condition(cluster.status(namespace, "soon"), "ExpiringSoon") is None,
               timeout=10, what="ExpiringSoon gone once expired")
    messages = [m for _, r, m in cluster.events(namespace, "soon") if r == "ExpiringSoon"]
    assert len(messages) == 2  # one per threshold, none again


def test_a_key_never_used_is_said_to_be_so_and_used_at_last_says_that(
    aging_operator: tuple[Operator, int], ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("idle", namespace))
    status = cluster.wait_phase(namespace, "idle", "Active")
    created = times.parse(status["createdAt"])
    (posted,) = when_event(cluster, namespace, "idle", "NeverUsed")
    assert -1 <= (posted - created).total_seconds() - 6 <= 2
    found = condition(cluster.status(namespace, "idle"), "Used")
    assert found is not None
    assert (found["status"], found["reason"]) == ("False", "NeverUsed")
    assert cluster.status(namespace, "idle")["phase"] == "Active"  # a warning only
    key = cluster.plaintext(namespace, status["secretName"])
    eventually(lambda: use(ready, key) == answer("OK"), timeout=10, what="the key indexed")
    eventually(lambda: (condition(cluster.status(namespace, "idle"), "Used") or {}).get(
        "status") == "True", timeout=20, what="Used=True after the first use")
    assert ("Normal", "Used") in [(t, r) for t, r, _ in cluster.events(namespace, "idle")]


def test_a_key_unused_past_its_window_is_deactivated_and_a_reactivation_restores_it(
    aging_operator: tuple[Operator, int], ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("stale", namespace, expiration="Never", deactivateAfterUnused="12s"))
    status = cluster.wait_phase(namespace, "stale", "Active")
    key = cluster.plaintext(namespace, status["secretName"])
    eventually(lambda: use(ready, key) == answer("OK"), timeout=10, what="the key indexed")
    used = eventually(lambda: cluster.status(namespace, "stale").get("lastUsedAt"),
                      timeout=10, what="lastUsedAt written by the verifier")
    stopped = cluster.wait_phase(namespace, "stale", "Inactive", timeout=30)
    since = times.parse(stopped["deactivated"]["since"])
    assert -1 <= (since - times.parse(used)).total_seconds() - 12 <= 2
    assert stopped["deactivated"]["reason"] == "Unused"
    ready_condition = condition(stopped, "Ready")
    assert ready_condition is not None
    assert ready_condition["reason"] == "Unused"
    assert ready_condition["message"] == (
        f"deactivated as unused: last used at {used}, 12s ago or more "
        "(spec.deactivateAfterUnused 12s)")
    assert ("Warning", "Deactivated") in [(t, r) for t, r, _ in
                                          cluster.events(namespace, "stale")]
    eventually(lambda: use(ready, key) == answer("INACTIVE"), timeout=5,
               what="the verifier refusing the unused key")
    assert cluster.apikey(namespace, "stale")["spec"]["active"] is True  # spec untouched
    k8s.kubectl(cluster.kubeconfig, "annotate", "-n", namespace, "apikey", "stale",
                "keywright.dev/reactivate=back")
    back = cluster.wait_phase(namespace, "stale", "Active", timeout=10)
    assert back["lastReactivateRequest"] == "back"
    assert "deactivated" not in back
    eventually(lambda: use(ready, key) == answer("OK"), timeout=5,
               what="the verifier accepting the reactivated key")


def unused(cluster: Cluster, namespace: str, window: str) -> list[str]:
    """`kubectl apikey list --unused WINDOW`: the names it lists."""
    listed = apikey_cli(cluster, "list", "-n", namespace, "--unused", window, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]]


def test_a_key_with_a_window_is_deactivated_counting_from_creation_if_never_used(
    aging_operator: tuple[Operator, int], cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("unborn", namespace, expiration="Never", deactivateAfterUnused="5s"))
    created = times.parse(cluster.wait_phase(namespace, "unborn", "Active")["createdAt"])
    stopped = cluster.wait_phase(namespace, "unborn", "Inactive", timeout=20)
    assert -1 <= (times.parse(stopped["deactivated"]["since"]) - created).total_seconds() \
        - 5 <= 2
    assert "last created at" in stopped["deactivated"]["message"]
    assert unused(cluster, namespace, "4s") == ["unborn"]
    on = apikey_cli(cluster, "activate", "unborn", "-n", namespace)
    assert on.returncode == 0, on.stderr
    back = cluster.wait_phase(namespace, "unborn", "Active", timeout=10)
    assert unused(cluster, namespace, "4s") == []  # counted from the reactivation too
    again = cluster.wait_phase(namespace, "unborn", "Inactive", timeout=20)
    assert -1 <= (times.parse(again["deactivated"]["since"])
                  - times.parse(back["reactivatedAt"])).total_seconds() - 5 <= 2
    assert "last reactivated at" in again["deactivated"]["message"]


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    found = {}
    for line in body.decode().splitlines():
        match = re.fullmatch(r"(keywright_apikey_\w+)\{(.*)\} (\S+)", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            found[match.group(1), labels] = float(match.group(3))
    return found


def test_metrics_give_each_key_its_instants_readiness_phase_and_credits_exactly(
    aging_operator: tuple[Operator, int], ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    _, port = aging_operator
    cluster.apply(apikey("metered", namespace, expiration="1d", quota={"limit": 10}))
    status = cluster.wait_phase(namespace, "metered", "Active")
    key = cluster.plaintext(namespace, status["secretName"])
    eventually(lambda: use(ready, key) == answer("OK"), timeout=10, what="the key indexed")
    status = eventually(lambda: (s := cluster.status(namespace, "metered")).get("usage")
                        and s.get("lastUsedAt") and s, timeout=10,
                        what="lastUsedAt and usage written")
    meta = cluster.apikey(namespace, "metered")["metadata"]
    me = frozenset({("namespace", namespace), ("name", "metered")})

    def seconds(text: str) -> float:
        return times.parse(text).timestamp()

    def shown() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        found = scrape(port)
        return found if found.get(("keywright_apikey_last_used_timestamp_seconds", me)) \
            == seconds(status["lastUsedAt"]) and \
            ("keywright_apikey_credits_remaining", me) in found else None
    found = eventually(shown, timeout=10, what="the key's metrics")
    revision = frozenset({*me, ("revision", "1")})
    assert found[("keywright_apikey_expiration_timestamp_seconds", me)] == \
        seconds(status["expiresAt"])
    assert found[("keywright_apikey_created_timestamp_seconds", me)] == \
        seconds(meta["creationTimestamp"])
    assert found[("keywright_apikey_revision_last_used_timestamp_seconds", revision)] == \
        seconds(status["lastUsedByRevision"]["1"])
    for value, expected in (("True", 1.0), ("False", 0.0), ("Unknown", 0.0)):
        assert found[("keywright_apikey_ready_status",
                      frozenset({*me, ("condition", value)}))] == expected
    assert found[("keywright_apikey_info",
                  frozenset({*me, ("active", "true"), ("phase", "Active")}))] == 1.0
    assert found[("keywright_apikey_credits_limit", me)] == 10.0
    assert found[("keywright_apikey_credits_remaining", me)] == \
        float(status["usage"]["remaining"])
    assert found[("keywright_apikey_expiring_soon", me)] == 0.0
    assert not any(dict(labels).get("name") == "metered" and "key" in dict(labels)
                   for _, labels in found)  # labels: namespace, name and fixed words
    k8s.kubectl(cluster.kubeconfig, "patch", "-n", namespace, "apikey", "metered",
                "--type=merge", "-p", '{"spec":{"active":false}}')
    eventually(lambda: scrape(port).get(
        ("keywright_apikey_info", frozenset({*me, ("active", "false"), ("phase", "Inactive")})))
        == 1.0, timeout=10, what="info following the deactivation")
    assert scrape(port)[("keywright_apikey_ready_status",
                         frozenset({*me, ("condition", "False")}))] == 1.0
    k8s.kubectl(cluster.kubeconfig, "delete", "-n", namespace, "apikey", "metered")
    eventually(lambda: not any(dict(labels).get("name") == "metered"
                               and dict(labels).get("namespace") == namespace
                               for _, labels in scrape(port)),
               timeout=10, what="the deleted key's series gone")


def test_a_real_prometheus_fires_api_key_expires_soon_from_the_operators_metrics(
    aging_operator: tuple[Operator, int], cluster: Cluster, namespace: str,
    tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Debian's Prometheus scrapes this operator with deploy/monitoring's rules file as
    shipped: a key made to expire in a day fires ApiKeyExpiresSoon, read from the alerts
    API; a key with 30 days left does not."""
    _, port = aging_operator
    cluster.apply(apikey("short-lived", namespace, expiration="1d"))
    cluster.apply(apikey("long-lived", namespace, expiration="30d"))
    for name in ("short-lived", "long-lived"):
        cluster.wait_phase(namespace, name, "Active")
    with Prometheus(tmp_path_factory.mktemp("prometheus"),
                    {"keywright-operator": [f"127.0.0.1:{port}"]}, [RULES]) as prometheus:
        fired = eventually(lambda: [a for a in prometheus.firing("ApiKeyExpiresSoon")
                                    if a.get("namespace") == namespace] or None,
                           timeout=30, interval=0.5, what="ApiKeyExpiresSoon firing")
        assert [(a["name"], a["severity"]) for a in fired] == [("short-lived", "warning")]
        summary = next(a["annotations"]["summary"] for a in prometheus.alerts()
                       if a["labels"].get("alertname") == "ApiKeyExpiresSoon"
                       and a["labels"].get("namespace") == namespace)
        assert summary.startswith(f"ApiKey {namespace}/short-lived expires in 23h")
