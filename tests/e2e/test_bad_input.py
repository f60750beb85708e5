"""Bad specs: refused at apply time where a schema can say it, else Failed/InvalidSpec.

Either way the error names the field, and nothing else changes: no ApiKey stored (at
apply time) and no Secret written.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support.k8s import Cluster, Operator, kubectl
from tests.support.manifests import apikey

REFUSED_AT_APPLY = [
    pytest.param({"expiration": "5x"}, "spec.expiration", id="expiration 5x"),
    pytest.param({"expiration": "-1d"}, "spec.expiration", id="expiration -1d"),
    pytest.param({"ipAllowlist": ["300.1.1.1/8"]}, "spec.ipAllowlist", id="octet over 255"),
    pytest.param({"ipAllowlist": ["10.0.0.0/33"]}, "spec.ipAllowlist", id="IPv4 prefix 33"),
    pytest.param({"scopes": ["reviews read"]}, "spec.scopes", id="scope with a space"),
    pytest.param({"prefix": "Bad-Prefix"}, "spec.prefix", id="prefix with capitals"),
    pytest.param({"prefix": "a" * 17}, "spec.prefix", id="prefix longer than 16"),
    pytest.param({"colour": "blue"}, "colour", id="an unknown field"),
    pytest.param({"rotation": {"gracePeriod": "1w"}}, "spec.rotation.gracePeriod",
                 id="grace period in weeks"),
]

FAILED_BY_THE_OPERATOR = [
    pytest.param({"ipAllowlist": ["10.0.0.1/8"]}, "spec.ipAllowlist[0]",
                 "has host bits set", id="a CIDR with host bits set"),
    pytest.param({"ipAllowlist": ["2001:db8:::1"]}, "spec.ipAllowlist[0]",
                 "2001:db8:::1", id="an IPv6 address with a triple colon"),
    pytest.param({"expiration": "99999999d"}, "spec.expiration", "longest allowed",
                 id="an expiration past the longest allowed"),
]


@pytest.mark.parametrize(("spec", "field"), REFUSED_AT_APPLY)
def test_refused_at_apply_time_naming_the_field(
    spec: dict[str, Any], field: str, running_operator: Operator, cluster: Cluster,
    namespace: str,
) -> None:
    result = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                     stdin=json.dumps(apikey("bad", namespace, **spec)))
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    listed = kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikeys,secrets",
                     "-o", "name").stdout
    assert "apikey" not in listed
    assert "secret/bad" not in listed


@pytest.mark.parametrize(("spec", "field", "detail"), FAILED_BY_THE_OPERATOR)
def test_what_only_code_can_check_ends_invalid_spec_without_a_secret(
    spec: dict[str, Any], field: str, detail: str, running_operator: Operator,
    cluster: Cluster, namespace: str,
) -> None:
    cluster.apply(apikey("bad", namespace, **spec))
    failed = cluster.wait_phase(namespace, "bad", "Failed", timeout=10)
    ready = next(c for c in failed["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith(f"{field}: ")
    assert detail in ready["message"]
    assert [(t, r) for t, r, _ in cluster.events(namespace, "bad")] == \
        [("Warning", "InvalidSpec")]
    time.sleep(0.5)  # not a wait: a window in which a wrongly issued Secret would show
    assert cluster.secret(namespace, "bad") is None
    assert "hash" not in cluster.status(namespace, "bad")


def test_fixing_an_invalid_spec_issues_the_key(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("fixme", namespace, ipAllowlist=["10.0.0.1/8"]))
    cluster.wait_phase(namespace, "fixme", "Failed", timeout=10)
    cluster.apply(apikey("fixme", namespace, ipAllowlist=["10.0.0.0/8"]))
    active = cluster.wait_phase(namespace, "fixme", "Active", timeout=10)
    assert active["revision"] == 1
    assert cluster.secret(namespace, "fixme") is not None
