"""A real Prometheus for tests, and what a PromQL expression reads.

`Prometheus` is Debian's `prometheus` (package `prometheus`, which `keywright cluster
prepare` installs) on a free loopback port: a configuration made from the scrape
targets and rule files given, 1 s scrape and evaluation intervals, storage in a
directory of the test's; its HTTP API's instant queries, alerts and rules.
`metric_names` is the metric names an expression selects, for tests that check
dashboards and rules against the metrics that exist.

Must not: listen anywhere but 127.0.0.1, or outlive the test that started it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from keywright.kits import processes
from tests.support.k8s import http_get
from tests.support.waiting import eventually

PROMETHEUS_PACKAGE = "prometheus"  # Debian's; its binaries are prometheus and promtool


def binary(name: str) -> str:
    """The path of Debian's `prometheus` or `promtool`; a clear failure if missing."""
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found: install Debian's {PROMETHEUS_PACKAGE} "
                             "package (`keywright cluster prepare` does)")
    return found


class Prometheus:
    """`targets`: job name -> host:port addresses scraped for /metrics, honouring the
    labels they export (as deploy/monitoring's PodMonitors do)."""

    def __init__(self, directory: Path, targets: Mapping[str, Sequence[str]],
                 rule_files: Sequence[Path] = ()) -> None:
        self.dir = directory
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": [str(path.resolve()) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "honor_labels": True,
                 "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in targets.items()],
        }
        self.config = directory / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = directory / "prometheus.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.popen = processes.spawn(
            [binary("prometheus"), f"--config.file={self.config}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"], self.log)
        eventually(self._ready, timeout=30, what=f"Prometheus ready (log: {self.log})")

    def stop(self) -> None:
        processes.terminate(self.popen)

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            raise AssertionError(f"Prometheus exited {self.popen.returncode}: "
                                 f"{self.log.read_text()[-2000:]}")
        return http_get(f"{self.url}/-/ready")[0] == 200

    def api(self, path: str, **params: str) -> Any:
        """`data` of an /api/v1 answer; AssertionError with Prometheus's own error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, _, answer = http_get(url)
        if status == 0:
            raise AssertionError(f"Prometheus did not answer {path} (log: {self.log})")
        body = json.loads(answer)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: "
                                 f"{body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: each sample's `metric` (labels) and `value`."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr!r} is a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str, by: str) -> dict[str, float]:
        """An instant query's samples as label `by`'s value -> sample value."""
        return {s["metric"].get(by, ""): float(s["value"][1]) for s in self.query(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert pending or firing: `labels`, `annotations`, `state`, `value`."""
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return found

    def firing(self, name: str) -> list[dict[str, str]]:
        """The labels of each firing alert of that name."""
        return [a["labels"] for a in self.alerts()
                if a["labels"].get("alertname") == name and a["state"] == "firing"]

    def rules(self) -> list[dict[str, Any]]:
        """Every rule loaded, with its `health` and `lastError`."""
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]


# -- what an expression reads ---------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACKETS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")  # label matchers, ranges and subqueries
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*(?![\w:]*\s*\()")
_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on",
                    "ignoring", "group_left", "group_right", "inf", "nan", "atan2"})


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects: what is left once strings, label matchers,
    ranges, grouping clauses, function calls, keywords and numbers are taken out."""
    text = _GROUPING.sub(" ", _BRACKETS.sub(" ", _STRINGS.sub('""', expr)))
    return {name for name in _NAME.findall(text) if name.lower() not in _WORDS}
