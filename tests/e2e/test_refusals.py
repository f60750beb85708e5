"""Bad input refused at apply time, as installed (the ApiKey webhook on), read from the
user's side: kubectl's stderr names the field and says what is wrong in words, never a
regex, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.k8s import Cluster, Operator, kubectl
from tests.support.manifests import apikey

REFUSED = [
    pytest.param({"expiration": "5x"}, "spec.expiration",
                 "must be Never, or a duration above zero", id="expiration 5x"),
    pytest.param({"expiration": "-1d"}, "spec.expiration",
                 "must be Never, or a duration above zero", id="expiration -1d"),
    pytest.param({"ipAllowlist": ["300.1.1.1/8"]}, "spec.ipAllowlist[0]",
                 "must be an IPv4 or IPv6 address or CIDR", id="an octet over 255"),
    pytest.param({"ipAllowlist": ["10.0.0.0/33"]}, "spec.ipAllowlist[0]",
                 "must be an IPv4 or IPv6 address or CIDR", id="an IPv4 prefix of 33"),
    pytest.param({"ipAllowlist": ["10.0.0.1/8"]}, "spec.ipAllowlist[0]",
                 "has host bits set", id="a CIDR with host bits"),
    pytest.param({"scopes": ["reviews read"]}, "spec.scopes[0]",
                 "must be a scope, <Area>.<Action>", id="a scope with a space"),
    pytest.param({"prefix": "Bad-Prefix"}, "spec.prefix", "must be a key prefix",
                 id="a prefix with capitals"),
    pytest.param({"prefix": "a" * 17}, "spec.prefix", "should be at most 16 chars long",
                 id="a prefix longer than 16"),
    pytest.param({"rotation": {"gracePeriod": "1w"}}, "spec.rotation.gracePeriod",
                 "must be a duration", id="a grace period in weeks"),
    pytest.param({"secret": {"name": "Not_A_Name"}}, "spec.secret.name",
                 "must be a DNS subdomain name", id="a Secret name with capitals"),
    pytest.param({"colour": "blue"}, "colour", "unknown field", id="an unknown field"),
]


@pytest.mark.parametrize(("spec", "field", "words"), REFUSED)
def test_bad_input_is_refused_at_apply_time_in_words_naming_the_field(
    spec: dict[str, Any], field: str, words: str, webhooks: Operator, cluster: Cluster,
    namespace: str,
) -> None:
    result = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                     stdin=json.dumps(apikey("bad", namespace, **spec)))
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert words in result.stderr, result.stderr
    assert "should match" not in result.stderr  # no regex
    assert "^" not in result.stderr
    listed = kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikeys,secrets",
                     "-o", "name").stdout
    assert "apikey" not in listed
    assert "secret/bad" not in listed


@pytest.mark.parametrize(("filter_", "words"), [
    pytest.param({"team": "${context.team}-eu"},
                 "spec.permissions[0].filter['team']: a reference must be the whole value",
                 id="a reference inside other text"),
    pytest.param({"team id": "x"}, "spec.permissions[0].filter['team id']: a filter field",
                 id="a filter field with a space"),
])
def test_a_role_the_schema_cannot_judge_is_refused_at_apply_time_naming_the_field(
    filter_: dict[str, str], words: str, webhooks: Operator, cluster: Cluster,
    namespace: str
) -> None:
    bad = {"apiVersion": "keywright.dev/v1alpha1", "kind": "ApiKeyRole",
           "metadata": {"name": "half-right", "namespace": namespace},
           "spec": {"permissions": [{"area": "Invoices", "actions": ["Read"],
                                     "filter": filter_}]}}
    refused = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                      stdin=json.dumps(bad))
    assert refused.returncode != 0
    assert words in refused.stderr


@pytest.mark.parametrize(("change", "field"), [
    pytest.param({"name": "elsewhere"}, "spec.secret.name", id="another Secret name"),
    pytest.param({"key": "token"}, "spec.secret.key", id="another data key"),
])
def test_where_the_key_was_delivered_cannot_change_once_issued(
    change: dict[str, str], field: str, webhooks: Operator, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("delivered", namespace))
    issued = cluster.wait_phase(namespace, "delivered", "Active", timeout=10)
    result = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                     stdin=json.dumps(apikey("delivered", namespace, secret=change)))
    assert result.returncode != 0
    assert f"{field}: is immutable once the key is issued" in result.stderr, result.stderr
    assert "create a new ApiKey" in result.stderr
    stored = cluster.apikey(namespace, "delivered")
    assert stored["spec"].get("secret", {}).get("name") is None  # nothing changed
    assert cluster.status(namespace, "delivered")["secretName"] == issued["secretName"]
    # what does not move the key is still admitted
    cluster.apply(apikey("delivered", namespace, secret={"labels": {"team": "a"}}))


def test_kubectl_explain_says_what_is_fixed_and_shows_no_pending_phase(
    cluster: Cluster, crd: None
) -> None:
    secret = kubectl(cluster.kubeconfig, "explain", "apikey.spec.secret").stdout
    assert "Fixed once the key is issued" in secret
    key = kubectl(cluster.kubeconfig, "explain", "apikey.spec.secret.key").stdout
    assert "Default: api-key" in key
    phase = kubectl(cluster.kubeconfig, "explain", "apikey.status.phase").stdout
    assert "Active, Inactive, Expired or Failed" in phase
    assert "Pending" not in phase
