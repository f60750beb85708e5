"""The webhook configurations the operator writes itself: what the API server is told
(which Pods are sent, how long it waits, what it does when nobody answers), and how
they are written over whatever an earlier start or version left."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from keywright import kube
from keywright.controller import webhooks

BY_URL = {"url": "https://127.0.0.1:9443", "caBundle": "Q0E="}
BY_SERVICE = {"caBundle": "Q0E=", "service": {
    "namespace": "keywright-system", "name": "keywright-webhook", "port": 443, "path": ""}}


def hook(client_config: Mapping[str, Any], path: str, nth: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = webhooks.configurations(client_config)[path]["webhooks"][nth]
    return found


def test_only_pods_labelled_to_opt_in_are_sent_to_the_pod_webhook() -> None:
    pods = hook(BY_URL, webhooks.MUTATING)
    assert pods["objectSelector"] == {
        "matchExpressions": [{"key": "keywright.dev/inject", "operator": "Exists"}]}
    assert pods["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                              "operations": ["CREATE"], "scope": "Namespaced"}]


def test_the_pod_webhook_fails_open_and_the_apikey_webhook_closed_both_within_5s() -> None:
    pods, apikeys = hook(BY_URL, webhooks.MUTATING), hook(BY_URL, webhooks.VALIDATING)
    assert (pods["failurePolicy"], pods["timeoutSeconds"]) == ("Ignore", 5)
    assert (apikeys["failurePolicy"], apikeys["timeoutSeconds"]) == ("Fail", 5)
    assert apikeys["objectSelector"] == {}  # every ApiKey is checked
    assert apikeys["rules"][0]["resources"] == ["apikeys"]
    assert apikeys["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    roles = hook(BY_URL, webhooks.VALIDATING, 1)  # ApiKeyRoles: the same terms
    assert (roles["failurePolicy"], roles["timeoutSeconds"]) == ("Fail", 5)
    assert roles["rules"][0]["resources"] == ["apikeyroles"]
    assert roles["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    # the ApiKey read gets a deadline of its own, so a slow one is a warning, not a timeout
    assert webhooks.LOOKUP_DEADLINE < webhooks.POD_TIMEOUT


def test_both_configurations_are_named_keywright_dev_and_labelled_as_ours() -> None:
    made = webhooks.configurations(BY_URL)
    assert [(c["kind"], c["metadata"]["name"]) for c in made.values()] == [
        ("ValidatingWebhookConfiguration", "keywright.dev"),
        ("MutatingWebhookConfiguration", "keywright.dev")]
    assert all(c["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "keywright"}
               for c in made.values())
    assert [h["name"] for c in made.values() for h in c["webhooks"]] == [
        "validate-apikey.keywright.dev", "validate-apikeyrole.keywright.dev",
        "validate-apikeypolicy.keywright.dev", "inject-pod.keywright.dev"]


@pytest.mark.parametrize(("client_config", "where"), [
    pytest.param(BY_URL, {"url": "https://127.0.0.1:9443/inject-pod"}, id="by URL"),
    pytest.param(BY_SERVICE, {"service": {"namespace": "keywright-system",
                                          "name": "keywright-webhook", "port": 443,
                                          "path": "/inject-pod"}}, id="by Service"),
])
def test_each_webhook_calls_its_own_handler_path_with_the_servers_ca(
    client_config: Mapping[str, Any], where: dict[str, Any]
) -> None:
    assert hook(client_config, webhooks.MUTATING)["clientConfig"] == {
        "caBundle": "Q0E=", **where}
    assert client_config["caBundle"] == "Q0E="  # the server's config is left as it was
    assert "inject-pod" not in str(client_config)


class FakeApi:
    """Answers create with `create` (an exception to raise, or None), patches as asked."""

    def __init__(self, *create: Exception | None) -> None:
        self.create = list(create)
        self.calls: list[tuple[str, str, Any]] = []

    def create_object(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", path, body))
        failure = self.create.pop(0) if self.create else None
        if failure is not None:
            raise failure
        return dict(body)

    def merge_patch_object(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", path, patch))
        return dict(patch)


def publish(api: FakeApi) -> list[float]:
    slept: list[float] = []
    webhooks.publish(api, BY_URL, sleep=slept.append)  # type: ignore[arg-type]
    return slept


def test_absent_configurations_are_created_whole() -> None:
    api = FakeApi()
    assert publish(api) == []
    assert [(verb, path) for verb, path, _ in api.calls] == [
        ("create", webhooks.VALIDATING), ("create", webhooks.MUTATING)]


def test_existing_configurations_get_their_webhooks_replaced_whatever_was_there() -> None:
    # an earlier start's, or the one Kopf managed before (timeoutSeconds 30, no selector):
    # a merge patch replaces the whole list
    api = FakeApi(kube.Conflict(409, "exists"), kube.Conflict(409, "exists"))
    publish(api)
    patches = [(path, body) for verb, path, body in api.calls if verb == "patch"]
    assert [path for path, _ in patches] == [
        f"{webhooks.VALIDATING}/keywright.dev", f"{webhooks.MUTATING}/keywright.dev"]
    [(_, mutating)] = [p for p in patches if p[0].startswith(webhooks.MUTATING)]
    assert mutating["webhooks"] == webhooks.configurations(BY_URL)[webhooks.MUTATING]["webhooks"]
    assert set(mutating) == {"metadata", "webhooks"}


def test_an_api_server_that_is_away_is_tried_again_with_growing_waits() -> None:
    api = FakeApi(kube.KubeError(503, "starting"), ConnectionRefusedError(), None, None)
    assert publish(api) == [0.5, 1.0]
    assert [verb for verb, _, _ in api.calls] == ["create"] * 4


@pytest.mark.parametrize("status", [403, 422])
def test_a_refusal_is_raised_at_once(status: int) -> None:
    api = FakeApi(kube.KubeError(status, "no"))
    with pytest.raises(kube.KubeError):
        publish(api)
    assert len(api.calls) == 1


def test_an_api_server_away_for_good_is_raised_in_the_end() -> None:
    api = FakeApi(*[kube.KubeError(503, "away")] * 10)
    with pytest.raises(kube.KubeError):
        publish(api)
    assert len(api.calls) == len(webhooks.PUBLISH_BACKOFF) + 1
