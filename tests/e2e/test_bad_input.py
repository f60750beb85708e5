"""Bad specs that reach an operator running without its webhooks end Failed/InvalidSpec,
naming the field, with no Secret written. (With the webhooks, as installed, they are
refused at apply time: test_refusals.py.)"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.k8s import Cluster, Operator
from tests.support.manifests import apikey

FAILED_BY_THE_OPERATOR = [
    pytest.param({"ipAllowlist": ["10.0.0.1/8"]}, "spec.ipAllowlist[0]",
                 "has host bits set", id="a CIDR with host bits set"),
    pytest.param({"ipAllowlist": ["2001:db8:::1"]}, "spec.ipAllowlist[0]",
                 "2001:db8:::1", id="an IPv6 address with a triple colon"),
    pytest.param({"expiration": "99999999d"}, "spec.expiration", "longest allowed",
                 id="an expiration past the longest allowed"),
    pytest.param({"expiration": "5x"}, "spec.expiration", "must be Never, or a duration",
                 id="an expiration that is no duration, said in words"),
]


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
