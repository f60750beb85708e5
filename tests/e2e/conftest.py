"""A real local control plane, started once per test session and always stopped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from keywright import devcluster, kubebuild


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
        left = {name: pid for name, pid in started.items() if devcluster.alive(pid)}
        assert not left, f"control-plane processes still running after stop: {left}"


@pytest.fixture(scope="session")
def api(control_plane: devcluster.ControlPlane) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
