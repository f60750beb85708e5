"""deploy/monitoring, without a cluster: the PrometheusRule is the rules file under
`spec`; Debian's promtool accepts the rules and passes every alert's unit tests (each
alert firing in one case and not in another); every PromQL expression of the rules and
of the dashboard reads only metrics Keywright exports; the kit builds with `kubectl
kustomize` and deploy/ does not install it."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keywright.controller import metrics as operator_metrics
from keywright.verifier import decision, index, metrics
from tests.support.keys import apikey
from tests.support.prometheus import binary, metric_names

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "deploy" / "monitoring"
RULES = KIT / "keywright.rules.yaml"
DASHBOARD = KIT / "dashboards" / "keywright.json"

PROMETHEUS_OWN = frozenset({"up"})  # what Prometheus itself records for each target
ALERTS = {"ApiKeyExpiresSoon", "ApiKeyExpired", "ApiKeyUnused", "ApiKeyNeverUsed",
          "ApiKeyNotReady", "ApiKeyQuotaNearlyExhausted", "ApiKeyHighRefusalRate",
          "KeywrightVerifierDown", "KeywrightOperatorDown"}
# the sample names a family of each type gives, whether or not it has samples yet
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count"), "info": ("_info",), "unknown": ("",)}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


# -- the PrometheusRule ------------------------------------------------------------------

def test_the_prometheus_rule_is_the_rules_file_under_spec() -> None:
    made = runpy.run_path(str(KIT / "generate.py"))["prometheus_rule"](RULES.read_text())
    assert (KIT / "prometheusrule.yaml").read_text() == made, \
        "prometheusrule.yaml is stale: run python3 deploy/monitoring/generate.py"
    rule = yaml.safe_load(made)
    assert (rule["apiVersion"], rule["kind"], rule["metadata"]) == (
        "monitoring.coreos.com/v1", "PrometheusRule", {"name": "keywright"})
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_generate_writes_the_rule_and_check_fails_until_it_is_run_again(
        tmp_path: Path) -> None:
    for name in ("generate.py", "keywright.rules.yaml"):
        shutil.copy(KIT / name, tmp_path / name)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(tmp_path / "generate.py"), *args],
                              capture_output=True, text=True, check=False)
    assert run("--check").returncode == 1  # nothing made yet
    assert run().returncode == 0
    assert (tmp_path / "prometheusrule.yaml").read_text() == \
        (KIT / "prometheusrule.yaml").read_text()
    assert run("--check").returncode == 0
    edited = tmp_path / "keywright.rules.yaml"
    edited.write_text(edited.read_text().replace("14 * 86400", "21 * 86400"))
    stale = run("--check")
    assert stale.returncode == 1
    assert "prometheusrule.yaml is not made from keywright.rules.yaml" in stale.stderr
    assert run().returncode == 0
    assert "21 * 86400" in (tmp_path / "prometheusrule.yaml").read_text()


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param("groups: []\nfor: 5m\n", "line 2: top-level 'for:'",
                 id="a second top-level key would land in spec"),
    pytest.param("groups: []\n---\ngroups: []\n", "line 2: a second YAML document",
                 id="a second document"),
    pytest.param("groups:\n\t- name: x\n", "line 2: a tab", id="a tab"),
    pytest.param("# no rules\n", "no `groups:`", id="no groups at all"),
])
def test_the_generator_refuses_a_file_it_cannot_carry_unchanged(text: str,
                                                                problem: str) -> None:
    generator = runpy.run_path(str(KIT / "generate.py"))
    with pytest.raises(generator["RulesError"], match=problem):
        generator["prometheus_rule"](text)


# -- the alerts --------------------------------------------------------------------------

def test_promtool_accepts_the_rules_and_every_alerts_unit_tests_pass() -> None:
    promtool = binary("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout
    files = sorted((KIT / "tests").glob("*.test.yaml"))
    tested = subprocess.run([promtool, "test", "rules", *map(str, files)],
                            capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(files), tested.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = {}
    for path in (KIT / "tests").glob("*.test.yaml"):
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../keywright.rules.yaml"], path.name
        for test in spec["tests"]:
            for case in test["alert_rule_test"]:
                cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    assert {rule["alert"] for rule in rules()} == ALERTS
    assert {name: sorted(seen) for name, seen in cases.items()} == {
        name: [False, True] for name in ALERTS}


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: f"{rule['alert']}-"
                         f"{rule['labels']['severity']}")
def test_each_alert_says_which_key_or_component_and_where_to_look(rule: dict[str, Any],
                                                                  ) -> None:
    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook"}
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert notes["runbook"].endswith("docs/operations.md, Monitoring")
    if rule["alert"].startswith("ApiKey"):
        assert "ApiKey {{ $labels.namespace }}/{{ $labels.name }}" in notes["summary"]
        assert notes["runbook"].startswith(
            "kubectl apikey describe {{ $labels.name }} -n {{ $labels.namespace }}")
    else:
        assert notes["runbook"].startswith("kubectl -n keywright-system get pods")


# -- the metrics the rules and the dashboard read ------------------------------------------

def verifier_metric_names() -> set[str]:
    """Every sample name the verifier's /metrics has, from the module rendering it."""
    found = metrics.Metrics(lambda: 1.0, lambda: 0.0)
    found.watch_backend(lambda: True, lambda: 0)
    found.observe(decision.OK, 0.0003, index.records(apikey())[0])
    return sample_names(found.render().decode())


def sample_names(rendered: str) -> set[str]:
    """Every sample name a /metrics text has, and those its families give when empty."""
    names = set()
    for family in text_string_to_metric_families(rendered):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def operator_metric_names() -> set[str]:
    """Every sample name the operator's /metrics has (`keywright operator
    --metrics-port`), from the module rendering it, for a key that has every field."""
    board = operator_metrics.Board()
    board.put("pay", "billing", {
        "metadata": {"creationTimestamp": "2026-11-01T12:00:00Z"},
        "spec": {"quota": {"limit": 10}},
        "status": {"expiresAt": "2026-12-01T12:00:00Z", "lastUsedAt": "2026-11-02T12:00:00Z",
                   "lastUsedByRevision": {"1": "2026-11-02T12:00:00Z"},
                   "usage": {"remaining": 9, "refilledAt": "2026-11-01T12:00:00Z"},
                   "phase": "Active", "conditions": [{"type": "Ready", "status": "True"}]}})
    return sample_names(generate_latest(operator_metrics.registry(board)).decode())


def test_the_names_checked_against_are_the_operators_real_ones() -> None:
    names = operator_metric_names()
    assert {"keywright_apikey_expiration_timestamp_seconds", "keywright_apikey_info",
            "keywright_apikey_credits_remaining", "keywright_apikey_last_used_timestamp_seconds",
            "process_cpu_seconds_total"} <= names


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for each panel's queries and each variable's metric."""
    board = json.loads(DASHBOARD.read_text())
    panels = [p for top in board["panels"] for p in (top, *top.get("panels", []))]
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"])
             for p in panels for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]  # label_values(<metric>, <label>)
            assert query.startswith("label_values("), query
            assert query.endswith(")"), query
            found.append((f"variable {variable['name']}",
                          query.removeprefix("label_values(").rpartition(",")[0]))
    return found


def test_the_dashboard_has_the_panels_the_kit_promises() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert (board["uid"], board["title"]) == ("keywright", "Keywright")
    titles = {p["title"] for p in board["panels"] if p["type"] != "row"}
    assert titles == {"Decisions by code", "Decision latency", "ApiKeys by phase",
                      "ApiKeys expiring in the next 14 days", "Time since last use",
                      "Refusals (401, 403) per ApiKey", "Limits backend up"}
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
               for p in board["panels"] if p["type"] != "row")


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_expression_reads_only_metrics_keywright_exports(source: str) -> None:
    exported = verifier_metric_names() | operator_metric_names() | PROMETHEUS_OWN
    expressions = ([(rule["alert"], rule["expr"]) for rule in rules()]
                   if source == "rules" else dashboard_expressions())
    read = {where: metric_names(expr) for where, expr in expressions}
    assert all(read.values()), f"an expression that reads no metric: {read}"
    assert {where: names - exported for where, names in read.items()
            if names - exported} == {}


def test_the_names_checked_against_are_the_verifiers_real_ones() -> None:
    names = verifier_metric_names()
    assert {"keywright_verifier_decisions_total", "keywright_verifier_apikey_decisions_total",
            "keywright_verifier_decision_duration_seconds_bucket", "keywright_limits_backend_up",
            "process_cpu_seconds_total"} <= names
    assert "keywright_verifier_decisions" not in names  # a counter is read as its _total


@pytest.mark.parametrize(("expr", "names"), [
    pytest.param('sum by (code) (rate(a_total{code=~"4.."}[5m]))', {"a_total"},
                 id="a grouping, a function, a matcher and a range are not names"),
    pytest.param('x - time() < 14 * 86400 and on (namespace, name) y{active="true"}',
                 {"x", "y"}, id="keywords, numbers and matching labels are not names"),
    pytest.param("histogram_quantile(0.99, sum(rate(h_bucket[$__rate_interval])) by (le))",
                 {"h_bucket"}, id="a trailing grouping and a Grafana variable are not"),
    pytest.param("a offset 5m > 1e3 or b:recorded", {"a", "b:recorded"},
                 id="an offset, a number with an exponent; a recorded name is one"),
    pytest.param('absent(up{job="k"} == 1) or label_replace(v, "dst", "$1", "src", "(.*)")',
                 {"up", "v"}, id="strings are not names"),
])
def test_metric_names_are_what_an_expression_selects(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# -- the kit as kubectl builds it ----------------------------------------------------------

def kustomize(folder: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                         text=True, check=True).stdout
    return list(yaml.safe_load_all(out))


def test_kubectl_kustomize_builds_the_kit_into_keywright_system() -> None:
    built = {(o["kind"], o["metadata"]["name"]): o for o in kustomize(KIT)}
    assert sorted(built) == [("ConfigMap", "keywright-dashboard"),
                             ("PodMonitor", "keywright-operator"),
                             ("PodMonitor", "keywright-verifier"),
                             ("PrometheusRule", "keywright")]
    assert {o["metadata"]["namespace"] for o in built.values()} == {"keywright-system"}
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "keywright"
               for o in built.values())
    board = built[("ConfigMap", "keywright-dashboard")]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label
    assert json.loads(board["data"]["keywright.json"]) == json.loads(DASHBOARD.read_text())
    assert built[("PrometheusRule", "keywright")]["spec"] == yaml.safe_load(RULES.read_text())
    for job in ("keywright-operator", "keywright-verifier"):
        monitor = built[("PodMonitor", job)]["spec"]
        # the job the rules expect, and an ApiKey's `namespace` label kept
        assert monitor["jobLabel"] == "app.kubernetes.io/name"
        assert monitor["selector"]["matchLabels"] == {"app.kubernetes.io/name": job}
        assert [e["honorLabels"] for e in monitor["podMetricsEndpoints"]] == [True]


@pytest.mark.parametrize("component", ["keywright-verifier", "keywright-operator"])
def test_each_pod_monitor_scrapes_a_port_its_pods_declare(component: str) -> None:
    deployed = {o["metadata"]["name"]: o for o in kustomize(REPO / "deploy" / "base")
                if o["kind"] == "Deployment"}
    template = deployed[component]["spec"]["template"]
    monitor = next(o for o in kustomize(KIT) if o["kind"] == "PodMonitor"
                   and o["metadata"]["name"] == component)["spec"]
    assert monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
    assert {e["port"] for e in monitor["podMetricsEndpoints"]} <= ports


def test_deploy_itself_does_not_install_the_kit() -> None:
    """It needs prometheus-operator's CRDs, which a cluster may not have."""
    assert not [o["kind"] for o in kustomize(REPO / "deploy")
                if o["apiVersion"].startswith("monitoring.coreos.com/")]
