"""A real local control plane, started once per test session and always stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from keywright import devcluster, kubebuild, processes
from tests.e2e import helpers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[devcluster.ControlPlane]:
    plane = devcluster.ControlPlane(kubebuild.ensure_binaries(print), say=print)
    plane.start()
    started = plane.pids
    try:
        yield plane
    finally:
        plane.stop()
        left = {name: pid for name, pid in started.items() if processes.alive(pid)}
        assert not left, f"control-plane processes still running after stop: {left}"


@pytest.fixture(scope="session")
def api(control_plane: devcluster.ControlPlane) -> Iterator[client.ApiClient]:
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
def crd(control_plane: devcluster.ControlPlane) -> None:
    """The committed CRD, installed the way a user would (1.20 drops the CEL rule)."""
    helpers.kubectl(control_plane.kubeconfig, "apply", "--validate=false", "-k",
                    str(helpers.REPO / "crds"))
    helpers.kubectl(control_plane.kubeconfig, "wait", "--for=condition=established",
                    "crd/apikeys.keywright.dev", "--timeout=30s")
    helpers.kubectl(control_plane.kubeconfig, "create", "namespace",
                    helpers.OPERATOR_NAMESPACE)


@pytest.fixture(scope="session")
def operator(control_plane: devcluster.ControlPlane, crd: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[helpers.Operator]:
    """One operator for the session, at DEBUG; tests that crash it start it again."""
    running = helpers.Operator(control_plane.kubeconfig, tmp_path_factory.mktemp("operator"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def running_operator(operator: helpers.Operator) -> helpers.Operator:
    """The session operator, restarted first if an earlier test left it stopped."""
    if operator.popen is None or operator.popen.poll() is not None:
        operator.start()
    return operator


@pytest.fixture(scope="session")
def cluster(api: client.ApiClient, control_plane: devcluster.ControlPlane) -> helpers.Cluster:
    return helpers.Cluster(api, control_plane.kubeconfig)


@pytest.fixture(scope="session")
def verifier(control_plane: devcluster.ControlPlane, crd: None,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[helpers.Verifier]:
    """One verifier for the session, at DEBUG, trusting 127.0.0.2 (the test gateway's
    address) as a proxy; its logs are kept for the hygiene scan."""
    running = helpers.Verifier(control_plane.kubeconfig, tmp_path_factory.mktemp("verifier"),
                               "--trusted-proxy", "127.0.0.2/32")
    running.start(wait_ready=False)
    yield running
    running.stop()
