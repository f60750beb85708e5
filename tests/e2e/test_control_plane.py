"""The local control plane is a whole one: apiserver, RBAC and controller-manager."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client import ApiException

from keywright.dev import controlplane
from keywright.kits import processes
from tests.support.waiting import eventually


def test_garbage_collector_removes_a_secret_whose_owner_is_deleted(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="owner"), data={"a": "b"}))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="owned", owner_references=[client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="owner", uid=str(owner.metadata.uid),
            controller=True)]),
        string_data={"k": "v"}))
    core.create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name="bystander"), string_data={"k": "v"}))

    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        names = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        return "owned" not in names
    assert eventually(owned_gone)
    assert core.read_namespaced_secret("bystander", namespace).metadata.name == "bystander"


def test_a_token_user_is_refused_what_rbac_does_not_grant(
    control_plane: controlplane.ControlPlane, api: client.ApiClient, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="configmap-reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"],
                                   verbs=["get", "list"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="reader"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="configmap-reader"),
        subjects=[client.RbacV1Subject(kind="User", name="reader",
                                       api_group="rbac.authorization.k8s.io")]))
    kubeconfig = control_plane.add_token_user("reader")

    with config.new_client_from_config(config_file=str(kubeconfig)) as limited:
        core = client.CoreV1Api(limited)
        allowed = core.list_namespaced_config_map(namespace).items
        assert "kube-root-ca.crt" in [c.metadata.name for c in allowed]
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_secret(namespace)
        assert denied.value.status == 403
        message = json.loads(str(denied.value.body))["message"]
        assert 'User "reader" cannot list resource "secrets"' in message
        with pytest.raises(ApiException) as elsewhere:
            core.list_namespaced_config_map("default")
        assert elsewhere.value.status == 403


def test_prepare_reuses_the_cached_binaries(control_plane: controlplane.ControlPlane) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keywright.cli", "cluster", "prepare"],
        capture_output=True, text=True, timeout=60, check=True)
    assert "using cached kube-apiserver and kube-controller-manager" in result.stdout
    assert "building" not in result.stdout


def test_keywright_dev_runs_operator_and_verifier_and_its_curl_line_works_and_ctrl_c_cleans_up(
    control_plane: controlplane.ControlPlane,
) -> None:
    dev = _start_dev()
    try:
        _check_dev(dev)
    finally:
        processes.terminate(dev)  # a failed check must not leave a control plane behind


def _start_dev() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "keywright.cli", "dev"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=processes.die_with_parent)


def _until_ready(dev: subprocess.Popen[str]) -> tuple[Path, str, list[str]]:
    """Read `keywright dev`'s output up to its curl line: (kubeconfig, curl, output)."""
    assert dev.stdout is not None
    output = []
    kubeconfig, curl = None, None
    deadline = time.monotonic() + 180
    while curl is None and time.monotonic() < deadline:
        line = dev.stdout.readline()
        if not line:
            break
        output.append(line)
        match = re.search(r"export KUBECONFIG=(\S+)", line)
        if match:
            kubeconfig = Path(match.group(1))
        if line.strip().startswith("curl "):
            curl = line.strip()
    assert kubeconfig is not None, "".join(output)
    assert curl is not None, "".join(output)
    return kubeconfig, curl, output


def test_a_sigkilled_keywright_dev_leaves_nothing_the_next_run_trips_over(
    control_plane: controlplane.ControlPlane,
) -> None:
    first = _start_dev()
    try:
        kubeconfig, curl, _ = _until_ready(first)
    finally:
        first.kill()  # SIGKILL: no cleanup of its own runs
        first.wait()
    workdir = kubeconfig.parent
    # its children die with it (the kernel's parent-death signal); its data stays
    eventually(lambda: _processes_mentioning(str(workdir)) == [], timeout=10,
               what="the killed run's children gone")
    assert workdir.exists()
    second = _start_dev()
    try:
        _, second_curl, output = _until_ready(second)
        said = "".join(output)
        assert f"removed {workdir}" in said
        assert "left by an earlier run that was killed" in said
        assert not workdir.exists()
        port = re.search(r"http://127\.0\.0\.1:(\d+)", curl)
        assert port is not None
        assert f"http://127.0.0.1:{port.group(1)}/verify" in second_curl  # the port again
        second.send_signal(signal.SIGINT)
        rest, _ = second.communicate(timeout=60)
        assert "stopped; nothing left running" in rest
    finally:
        processes.terminate(second)


def _check_dev(dev: subprocess.Popen[str]) -> None:
    kubeconfig, curl, output = _until_ready(dev)
    workdir = kubeconfig.parent
    ours = _processes_mentioning(str(workdir))
    # etcd, kube-apiserver, kube-controller-manager, operator, verifier and its worker
    assert len(ours) == 6, ours
    # and redis-server for the verifier's shared limits (its title names no path)
    said = re.search(r"redis-server on \S+ \(pid (\d+)\)", "".join(output))
    assert said is not None, "".join(output)
    ours.append(int(said.group(1)))
    assert processes.alive(ours[-1])

    # the printed line, run as printed, in a shell with the printed KUBECONFIG
    answer = subprocess.run(["bash", "-c", curl + " -sS"], capture_output=True, text=True,
                            env={**os.environ, "KUBECONFIG": str(kubeconfig)}, timeout=30)
    assert answer.stdout.startswith("HTTP/1.1 200"), answer.stdout + answer.stderr
    assert "x-keywright-name: sample-billing-sync" in answer.stdout
    assert "x-ratelimit-limit: 600" in answer.stdout  # counted on the dev Redis
    assert answer.stdout.rstrip().endswith('{"code":"OK"}')

    def sample_phase() -> str:
        got = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "-n", "default",
                              "get", "apikey", "sample-billing-sync", "-o",
                              "jsonpath={.status.phase}"],
                             capture_output=True, text=True, timeout=30)
        return got.stdout
    assert eventually(lambda: sample_phase() == "Active", timeout=30), sample_phase()

    dev.send_signal(signal.SIGINT)
    rest, _ = dev.communicate(timeout=60)
    assert dev.returncode == 0, "".join(output) + rest
    assert "stopped; nothing left running" in rest
    assert [pid for pid in ours if processes.alive(pid)] == []
    assert _processes_mentioning(str(workdir)) == []
    assert not workdir.exists()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and processes.alive(int(entry.name)):
            found.append(int(entry.name))
    return found
