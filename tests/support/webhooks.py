"""What e2e tests of the admission webhooks share: the operator restarted with them (and
cleaned up after), their configurations read back from the API server, and Pods made
and read back."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client

from keywright.kits import processes
from tests.support.k8s import Cluster, Operator, kubectl
from tests.support.waiting import eventually

WEBHOOKS = "keywright.dev"  # both admission webhook configurations' name
INJECT = "keywright.dev/inject"  # the annotation naming the ApiKey, and the opt-in label
OPT_IN = {INJECT: "true"}  # the label that lets a Pod reach the Pod webhook (any value)
KINDS = ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block (Operator.start passes its
    environment on to the operator)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def configuration(kubeconfig: Path, kind: str) -> dict[str, Any] | None:
    """The `keywright.dev` webhook configuration of `kind` as the API server holds it."""
    found = kubectl(kubeconfig, "get", kind, WEBHOOKS, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    held: dict[str, Any] = json.loads(found.stdout)
    return held


def webhooks_serve(kubeconfig: Path, port: int) -> bool:
    """Both webhook configurations exist and send their requests to `port`."""
    for kind in KINDS:
        held = configuration(kubeconfig, kind)
        if held is None:
            return False
        hooks = held.get("webhooks") or []
        urls = [w["clientConfig"].get("url", "") for w in hooks]
        if not urls or not all(f":{port}/" in url for url in urls):
            return False
    return True


def delete_configurations(kubeconfig: Path) -> None:
    for kind in KINDS:
        kubectl(kubeconfig, "delete", kind, WEBHOOKS, "--ignore-not-found")


@contextlib.contextmanager
def operator_run(operator: Operator, kubeconfig: Path, *, webhooks: bool = False,
                 env: Mapping[str, str] | None = None) -> Iterator[Path]:
    """The session operator restarted with `env` (and its admission webhooks, when
    asked); yields the log of that run. Afterwards it runs again as every other test
    expects it: no fault armed, no webhooks, and no webhook configuration left behind
    (the ApiKey one fails closed, so a stale one would refuse every later ApiKey)."""
    operator.stop()
    port = processes.free_port()
    with environment(env or {}):
        operator.start(extra=("--webhook-port", str(port), "--webhook-host", "127.0.0.1")
                       if webhooks else ())
    try:
        if webhooks:
            eventually(lambda: webhooks_serve(kubeconfig, port), timeout=30,
                       what="webhook configurations pointing at this operator")
        yield operator.log
    finally:
        operator.stop()
        if webhooks:
            delete_configurations(kubeconfig)
        operator.start()


def pod(name: str, namespace: str, annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "annotations": annotations or {}, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "registry.invalid/app:1"}]}}


def pods_allowed(cluster: Cluster, namespace: str) -> None:
    """Wait for the namespace's default ServiceAccount, without which a Pod is refused."""
    eventually(lambda: cluster.core.list_namespaced_service_account(
        namespace, field_selector="metadata.name=default").items, timeout=30,
        what="the namespace's default ServiceAccount (Pods need it)")


def create_pod(cluster: Cluster, manifest: dict[str, Any]) -> tuple[client.V1Pod, str]:
    """Create a Pod with kubectl (which prints admission warnings to stderr); the Pod as
    stored, and kubectl's stderr."""
    namespace = manifest["metadata"]["namespace"]
    pods_allowed(cluster, namespace)
    created = kubectl(cluster.kubeconfig, "create", "-f", "-", stdin=json.dumps(manifest))
    stored = cluster.core.read_namespaced_pod(manifest["metadata"]["name"], namespace)
    return stored, created.stderr


def timed_create(cluster: Cluster, manifest: dict[str, Any]) -> tuple[client.V1Pod, float]:
    """Create a Pod with one API call; the Pod as the API server returned it, and how
    many seconds the call took (admission included)."""
    namespace = manifest["metadata"]["namespace"]
    pods_allowed(cluster, namespace)
    body: Any = manifest  # the client sends a dict as it is
    started = time.monotonic()
    created = cluster.core.create_namespaced_pod(namespace, body)
    return created, time.monotonic() - started


def env_of(stored: client.V1Pod) -> list[tuple[str, str, str]]:
    """(variable, Secret, data key) of every secretKeyRef variable in every container."""
    return [(str(e.name), str(e.value_from.secret_key_ref.name),
             str(e.value_from.secret_key_ref.key))
            for c in stored.spec.containers for e in (c.env or [])
            if e.value_from is not None and e.value_from.secret_key_ref is not None]
