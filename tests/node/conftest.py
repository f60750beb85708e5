"""Keywright as a platform engineer runs it: its image built with `keywright image` (what
`make image` runs), imported into a real node (kubelet, containerd, kube-proxy in a
network namespace of this run), and installed with `kubectl apply -k` of an overlay of
deploy/k8s-1.20 that only names the image, as README's install section says.

A separate session (`make test` runs it after the other suites): one node, one install,
shared by every test here, each test in namespaces of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from keywright.dev import image, install, node
from keywright.kits import mounts, processes
from tests.support import k8s
from tests.support.waiting import eventually

IMAGE = f"{image.REPOSITORY}:{image.version(k8s.REPO)}"
SYSTEM = k8s.OPERATOR_NAMESPACE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/node/" in str(item.path):
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def timings() -> Iterator[dict[str, float]]:
    """What the run measured, printed at the end (docs/benchmarks.md quotes them)."""
    measured: dict[str, float] = {}
    yield measured
    print("\nnode suite timings: " + json.dumps({k: round(v, 1) for k, v in measured.items()}))


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]) -> Path:
    """The image, built from this checkout exactly as `make image` builds it."""
    out = tmp_path_factory.mktemp("dist")
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "keywright.cli", "image", "--source", str(k8s.REPO),
                    "--output", str(out)], check=True, timeout=1200)
    timings["image build"] = time.monotonic() - began
    built = out / f"keywright-{image.version(k8s.REPO)}.tar"
    assert built.is_file()
    return built


@pytest.fixture(scope="session")
def cluster_node(archive: Path, timings: dict[str, float]) -> Iterator[node.Node]:
    began = time.monotonic()
    the_node = node.Node(print, images=(archive, node.redis_archive(print)), audit=True)
    node.remove_leftovers(print)  # a killed earlier run's, so that the host is as found
    host, mounted = node.HostState.observe(), mounts.points()
    the_node.start()
    timings["node start to Ready"] = time.monotonic() - began
    pids, workdir, netns = the_node.pids, the_node.workdir, the_node.netns
    try:
        yield the_node
    finally:
        the_node.stop()
        # it leaves the host as it found it
        assert not {name: pid for name, pid in pids.items() if processes.alive(pid)}
        assert not workdir.exists()
        assert not (Path("/run/netns") / netns).exists()
        assert node.HostState.observe() == host  # sysctls, host paths, /run/netns
        assert mounts.points() == mounted
        assert not list(Path("/sys/fs/cgroup").glob("*/kubepods"))
        assert not any(str(workdir).encode() in cmdline.read_bytes()
                       for cmdline in Path("/proc").glob("[0-9]*/cmdline")
                       if cmdline.exists())


@pytest.fixture(scope="session")
def api(cluster_node: node.Node) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(cluster_node.kubeconfig)) as api_client:
        yield api_client


@pytest.fixture(scope="session")
def installed(cluster_node: node.Node, api: client.ApiClient,
              tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]) -> None:
    """README's install: an overlay naming the image, `kubectl apply -k`, and wait until
    the operator, Redis and both verifiers are Ready. (The node has no cluster DNS and
    cannot pull: the overlay also names the local Redis image and gives the verifiers
    Redis's Service address.)"""
    overlay = tmp_path_factory.mktemp("overlay")
    install.overlay(overlay, k8s.REPO / "deploy" / "k8s-1.20", IMAGE,
                    redis_image=node.REDIS_IMAGE)
    began = time.monotonic()
    k8s.kubectl(cluster_node.kubeconfig, "apply", "--validate=false", "-k", str(overlay))
    ready_pods(api, SYSTEM, "app.kubernetes.io/name=keywright-operator", 1)
    ready_pods(api, SYSTEM, "app.kubernetes.io/name=keywright-redis", 1)
    ready_pods(api, SYSTEM, "app.kubernetes.io/name=keywright-verifier", 2)
    timings["apply to Ready"] = time.monotonic() - began


@pytest.fixture
def namespace(api: client.ApiClient, installed: None) -> str:
    name = f"n-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="session")
def cluster(api: client.ApiClient, cluster_node: node.Node) -> k8s.Cluster:
    return k8s.Cluster(api, cluster_node.kubeconfig)


def pods(api: client.ApiClient, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=selector).items)


def ready_pods(api: client.ApiClient, namespace: str, selector: str,
               count: int) -> list[client.V1Pod]:
    """Exactly `count` Running, Ready Pods that are not terminating."""
    def found() -> list[client.V1Pod] | None:
        live = [p for p in pods(api, namespace, selector)
                if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
                and all(c.ready for c in p.status.container_statuses or [])]
        return live if len(live) == count else None
    return eventually(found, timeout=120, interval=0.5,
                      what=f"{count} ready Pods {selector} in {namespace}")


def container_id(pod: client.V1Pod) -> str:
    """The containerd ID of the Pod's first container."""
    return str(pod.status.container_statuses[0].container_id).split("://", 1)[1]


def ctr(the_node: node.Node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctr", "-a", str(the_node.containerd_socket), "-n", "k8s.io",
                           *args], capture_output=True, text=True, check=True, timeout=60)


def logs(api: client.ApiClient, namespace: str, pod: str) -> str:
    return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, namespace))


def last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            loaded: dict[str, Any] = json.loads(line)
            return loaded
    return None
