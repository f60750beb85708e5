"""A real local control plane, started once per test session and always stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from keywright.dev import binaries, controlplane
from keywright.kits import processes
from tests.support import k8s
from tests.support.waiting import eventually


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark e2e tests; and, whatever order pytest-randomly chose, scan for leaks last, so
    that the scan covers everything the session's other tests wrote (the scan itself
    stands alone, and passes when run alone)."""
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.path.name == "test_zz_hygiene.py")  # stable


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlane]:
    # the audit log (writes only, metadata only) is how tests count API writes
    plane = controlplane.ControlPlane(binaries.ensure_binaries(print), say=print, audit=True)
    plane.start()
    started = plane.pids
    try:
        yield plane
    finally:
        plane.stop()
        left = {name: pid for name, pid in started.items() if processes.alive(pid)}
        assert not left, f"control-plane processes still running after stop: {left}"


@pytest.fixture(scope="session")
def api(control_plane: controlplane.ControlPlane) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    """A fresh namespace. Kept until the session ends, so the last test can scan every
    key the session issued for leaks."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="session")
def crd(control_plane: controlplane.ControlPlane) -> None:
    """Keywright installed the way a user would: `kubectl apply -k` of deploy/ (its 1.20
    variant; --validate=false because 1.20 drops the CRDs' CEL rules). That brings the
    CRDs, the namespace, the ServiceAccounts and their RBAC; the Deployments' Pods stay
    Pending (no kubelet): the tests run the processes themselves, under those accounts."""
    k8s.kubectl(control_plane.kubeconfig, "apply", "--validate=false", "-k",
                    str(k8s.REPO / "deploy" / "k8s-1.20"))
    k8s.kubectl(control_plane.kubeconfig, "wait", "--for=condition=established",
                "crd/apikeys.keywright.dev", "crd/apikeyroles.keywright.dev",
                "--timeout=30s")


@pytest.fixture(scope="session")
def accounts(control_plane: controlplane.ControlPlane, crd: None, api: client.ApiClient,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Kubeconfigs that authenticate as the operator's and the verifier's ServiceAccounts
    (tokens minted by the controller-manager): every e2e test runs Keywright with
    exactly the RBAC deploy/ grants."""
    directory = tmp_path_factory.mktemp("accounts")
    return {name: k8s.token_kubeconfig(
        control_plane.kubeconfig,
        k8s.service_account_token(api, k8s.OPERATOR_NAMESPACE, f"keywright-{name}"),
        directory / name) for name in ("operator", "verifier")}


@pytest.fixture(scope="session")
def operator(accounts: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[k8s.Operator]:
    """One operator for the session, at DEBUG, as its ServiceAccount; tests that crash
    it start it again."""
    running = k8s.Operator(accounts["operator"], tmp_path_factory.mktemp("operator"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def running_operator(operator: k8s.Operator) -> k8s.Operator:
    """The session operator, restarted first if an earlier test left it stopped."""
    operator.ensure_running()
    return operator


@pytest.fixture(scope="session")
def cluster(api: client.ApiClient, control_plane: controlplane.ControlPlane) -> k8s.Cluster:
    return k8s.Cluster(api, control_plane.kubeconfig)


@pytest.fixture(scope="session")
def verifier(accounts: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[k8s.Verifier]:
    """One verifier for the session, at DEBUG, as its ServiceAccount, trusting 127.0.0.2
    (the test gateway's address) as a proxy; its logs are kept for the hygiene scan."""
    running = k8s.Verifier(accounts["verifier"], tmp_path_factory.mktemp("verifier"),
                               "--trusted-proxy", "127.0.0.2/32")
    running.start(wait_ready=False)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def webhooks(operator: k8s.Operator, control_plane: controlplane.ControlPlane,
             crd: None) -> Iterator[k8s.Operator]:
    """The session's operator restarted with its admission webhooks on, as installed (the
    ApiKey webhook fails closed). Afterwards it is stopped and the webhook configurations
    deleted, so the next module's operator (started without webhooks) stands alone."""
    operator.stop()
    operator.start(extra=("--webhook-port", str(processes.free_port()),
                          "--webhook-host", "127.0.0.1",
                          "--redis-password-secret", "keywright-redis"))
    try:
        eventually(lambda: _webhooks_configured(control_plane.kubeconfig), timeout=30,
                   what="webhook configurations")
        yield operator
    finally:
        operator.stop()
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            k8s.kubectl(control_plane.kubeconfig, "delete", kind, "keywright.dev",
                        "--ignore-not-found")


def _webhooks_configured(kubeconfig: Path) -> bool:
    found = k8s.kubectl(kubeconfig, "get", "validatingwebhookconfiguration,"
                        "mutatingwebhookconfiguration", "-o", "name", check=False).stdout
    # the contract: both configurations are named keywright.dev
    return sorted(found.split()) == [
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/keywright.dev",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/keywright.dev"]


@pytest.fixture
def ready(running_operator: k8s.Operator, verifier: k8s.Verifier) -> k8s.Verifier:
    """The session verifier, with its first list loaded (restarted if a test left it
    down), beside a running operator."""
    verifier.ensure_ready()
    return verifier
