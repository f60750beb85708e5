"""deploy/monitoring against real programs: Debian's Prometheus scraping the session's
verifier, with the shipped rules file loaded as it is. A key's answers are counted per
ApiKey as Prometheus reads them; every rule evaluates without an error; every dashboard
query runs; an operator target that nothing answers fires KeywrightOperatorDown while
the verifier's alert stays quiet. (The operator's own /metrics is scraped here as a
closed port: its ApiKey gauges come with the operator's metrics endpoint.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from keywright.kits import processes
from tests.support import k8s
from tests.support.k8s import Cluster, Operator, Verifier, issue
from tests.support.prometheus import Prometheus
from tests.support.waiting import eventually

KIT = k8s.REPO / "deploy" / "monitoring"
RULES = KIT / "keywright.rules.yaml"


@pytest.fixture(scope="module")
def closed_port() -> int:
    """Where the operator's /metrics would be: nothing listens there."""
    return processes.free_port()


@pytest.fixture(scope="module")
def prometheus(operator: Operator, verifier: Verifier, closed_port: int,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Started once for the module, so the minute KeywrightOperatorDown waits runs
    while the other tests do. The verifier is ready (its pepper made by the operator,
    which runs as usual: only its /metrics is missing here)."""
    operator.ensure_running()
    verifier.ensure_ready()
    with Prometheus(tmp_path_factory.mktemp("prometheus"),
                    {"keywright-verifier": [f"127.0.0.1:{verifier.port}"],
                     "keywright-operator": [f"127.0.0.1:{closed_port}"]},
                    [RULES]) as running:
        yield running


def test_prometheus_reads_a_keys_answers_per_apikey(
    prometheus: Prometheus, ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    key = issue(cluster, ready, namespace, "watched", scopes=["Invoices.Read"])  # one 200
    for scope, status in [("Invoices.Read", 200)] * 2 + [("Invoices.Write", 403)] * 3:
        assert ready.get(f"/verify?scope={scope}", {"X-API-Key": key})[0] == status
    key_of = f'namespace="{namespace}",name="watched"'
    series = f"keywright_verifier_apikey_decisions_total{{{key_of}}}"
    eventually(lambda: prometheus.values(series, by="status") == {
        "200": 3.0, "401": 0.0, "403": 3.0, "429": 0.0}, timeout=15, interval=0.5,
        what="Prometheus reading the key's answers by status")
    # the share ApiKeyHighRefusalRate watches, as Prometheus works it out
    refused = f'keywright_verifier_apikey_decisions_total{{{key_of},status=~"401|403"}}'
    share = prometheus.query(f"sum by (namespace, name) ({refused})"
                             f" / sum by (namespace, name) ({series})")
    assert [(s["metric"], float(s["value"][1])) for s in share] == [
        ({"namespace": namespace, "name": "watched"}, 0.5)]


def test_every_shipped_rule_evaluates_without_an_error(prometheus: Prometheus) -> None:
    shipped = [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
               for rule in group["rules"]]

    def evaluated() -> list[tuple[str, str, str]] | None:
        found = [(r["name"], r["health"], r.get("lastError", "")) for r in prometheus.rules()]
        return found if all(health != "unknown" for _, health, _ in found) else None
    found = eventually(evaluated, timeout=15, interval=0.5, what="every rule evaluated")
    assert sorted(found) == sorted((name, "ok", "") for name in shipped)


def test_every_dashboard_query_runs_and_the_verifiers_panels_have_data(
    prometheus: Prometheus, ready: Verifier
) -> None:
    assert ready.get("/verify")[0] == 401  # a decision, so there is a rate to show
    board = json.loads((KIT / "dashboards" / "keywright.json").read_text())
    queries = {f"{panel['title']} {target['refId']}": target["expr"]
               .replace("$__rate_interval", "1m").replace("$namespace", ".*")
               for panel in board["panels"] for target in panel.get("targets", [])}

    def answered() -> dict[str, int] | None:
        found = {where: len(prometheus.query(expr)) for where, expr in queries.items()}
        return found if found["Decisions by code A"] and found["Decision latency B"] else None
    found = eventually(answered, timeout=15, interval=0.5, what="the verifier's panels")
    assert found["Decision latency A"] == 1  # one p50 across the replicas


def test_an_operator_that_does_not_answer_fires_keywright_operator_down(
    prometheus: Prometheus, closed_port: int
) -> None:
    firing = eventually(lambda: prometheus.firing("KeywrightOperatorDown"), timeout=90,
                        interval=1, what="KeywrightOperatorDown firing (for: 1m)")
    assert firing == [{"alertname": "KeywrightOperatorDown", "job": "keywright-operator",
                       "instance": f"127.0.0.1:{closed_port}", "severity": "critical"}]
    assert prometheus.values('up{job="keywright-verifier"}', by="job") == {
        "keywright-verifier": 1.0}
    assert [a for a in prometheus.alerts()
            if a["labels"]["alertname"] == "KeywrightVerifierDown"] == []
