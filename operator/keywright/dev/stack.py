"""`keywright dev`: the embedded default, everything on one local control plane; and
`keywright dev --node`: the same product as real Pods on a real node.

Owns: starting the control plane, installing the CRD, running the operator (with its
admission webhooks) and the verifier as child processes (the verifier's limits shared
on a redis-server of its own when Debian's redis-server is installed), applying the
samples, telling
the user how to reach it all (down to a `curl` line that verifies the sample key), and
stopping exactly what it started on Ctrl-C. With `--node`: building the image, starting
the node with it imported, `kubectl apply -k` of the install overlay, and forwarding the
verifier Service to this machine's loopback.
Must not: leave a process behind; it uses processes.spawn, whose children die with it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from keywright import kube
from keywright.core import names
from keywright.dev import binaries, controlplane, image, install, node, redis
from keywright.kits import processes

OPERATOR_NAMESPACE = names.DEFAULT_NAMESPACE
VERIFIER_PORT = 8080  # if it is free; else any free port
SAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "samples"  # in a source checkout

Say = Callable[[str], None]


def run(workdir: Path | None, say: Say) -> int:
    plane = controlplane.ControlPlane(binaries.ensure_binaries(say), workdir=workdir, say=say)
    operator = verifier = None
    limits: redis.RedisServer | None = None
    try:
        say("starting etcd, kube-apiserver and kube-controller-manager ...")
        plane.start()
        api = kube.Kube.connect(str(plane.kubeconfig))
        install.bootstrap(api)
        logs = plane.workdir / "logs"
        common = ["--kubeconfig", str(plane.kubeconfig), "--namespace", OPERATOR_NAMESPACE]
        operator = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "operator", *common,
             "--webhook-port", str(processes.free_port()), "--webhook-host", "127.0.0.1"],
            logs / "operator.log")
        port = _port()
        shared: list[str] = []
        if shutil.which("redis-server"):
            limits = redis.RedisServer(workdir=plane.workdir / "redis")
            limits.start()
            shared = ["--redis-url", limits.address,
                      "--redis-password-file", str(limits.password_file)]
            say(f"redis-server on {limits.address} (pid {limits.pid}): rate limits and "
                "quotas are shared, as with several verifier replicas")
        else:
            say("no redis-server installed: the verifier keeps its limits in process")
        verifier = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "verifier", *common,
             "--host", "127.0.0.1", "--port", str(port), *shared], logs / "verifier.log")
        applied = _apply_samples(api)
        say(f"local control plane ready at {plane.server} (data in {plane.workdir})")
        say(f"operator running (pid {operator.pid}); its log: {logs / 'operator.log'}")
        url = f"http://127.0.0.1:{port}"
        if not _wait(lambda: _ready(url) and all(
                _phase(api, ns, name) == "Active" for ns, name, _ in applied), 60):
            say("warning: the verifier or a sample key is not ready after 60 s; see the logs")
        say(f"verifier on {url} (pid {verifier.pid}); its log, audit lines included: "
            f"{logs / 'verifier.log'}")
        _tell(say, plane.kubeconfig, url, applied)
        say("")
        say("Press Ctrl-C to stop and clean up.")
        while True:
            plane.check_running()
            for label, child in (("operator", operator), ("verifier", verifier)):
                if child.poll() is not None:
                    say(f"the {label} exited with code {child.returncode}; "
                        f"see {logs / (label + '.log')}")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping ...")
        return 0
    finally:
        processes.terminate(verifier)
        processes.terminate(operator)
        if limits is not None:
            limits.stop()
        plane.stop()
        say("stopped; nothing left running")


def run_node(say: Say) -> int:
    """The image built from this checkout, running as Pods on a real node."""
    root = SAMPLES.parents[1]
    built = image.build(root, root / "dist", say)
    cluster = node.Node(say, images=(built.archive, node.redis_archive(say)))
    try:
        say("starting the control plane and the node ...")
        cluster.start()
        overlay = install.overlay(cluster.workdir, root / "deploy" / "k8s-1.20",
                                  built.reference, redis_image=node.REDIS_IMAGE).parent
        kubectl = ["kubectl", f"--kubeconfig={cluster.kubeconfig}"]
        subprocess.run([*kubectl, "apply", "--validate=false", "-k", str(overlay)],
                       check=True, capture_output=True)
        say("installed deploy/k8s-1.20 with the image; waiting for the Pods ...")
        for deployment in ("keywright-operator", "keywright-redis", "keywright-verifier"):
            subprocess.run([*kubectl, "-n", OPERATOR_NAMESPACE, "rollout", "status",
                            f"deployment/{deployment}", "--timeout=180s"], check=True)
        api = kube.Kube.connect(str(cluster.kubeconfig))
        applied = _apply_samples(api)
        service = api.get_object(
            f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/services/keywright-verifier") or {}
        port = cluster.forward(str(service["spec"]["clusterIP"]), 8080, _port(),
                               name="verifier-forward")
        url = f"http://127.0.0.1:{port}"
        if not _wait(lambda: _ready(url) and all(
                _phase(api, ns, name) == "Active" for ns, name, _ in applied), 60):
            say("warning: the verifier or a sample key is not ready after 60 s")
        say(f"the verifier Service is forwarded to {url}")
        _tell(say, cluster.kubeconfig, url, applied)
        say(f"  kubectl -n {OPERATOR_NAMESPACE} get pods -o wide")
        say("")
        say("Press Ctrl-C to stop and clean up.")
        while True:
            cluster.check_running()
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping ...")
        return 0
    finally:
        cluster.stop()
        say("stopped; nothing left running")


def _tell(say: Say, kubeconfig: Path, url: str,
          applied: list[tuple[str, str, list[str]]]) -> None:
    say("")
    say(f"  export KUBECONFIG={kubeconfig}")
    say("  kubectl get apikeys -A")
    for namespace, name, scopes in applied:
        key = (f"$(kubectl -n {namespace} get secret {name} "
               "-o jsonpath='{.data.api-key}' | base64 -d)")
        query = f"?scope={scopes[0]}" if scopes else ""
        say(f"  kubectl -n {namespace} describe apikey {name}")
        say(f"  curl -i -H \"X-API-Key: {key}\" '{url}/verify{query}'")


def _port() -> int:
    """8080 unless something listens there. Probed as a server binds (SO_REUSEADDR), so
    the TIME_WAIT connections a killed earlier run left on it do not count as busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", VERIFIER_PORT))
        except OSError:
            return processes.free_port()
    return VERIFIER_PORT


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310
            return bool(json.load(response).get("ready"))
    except OSError:
        return False


def _phase(api: kube.Kube, namespace: str, name: str) -> str | None:
    found = api.get_apikey(namespace, name) or {}
    phase = (found.get("status") or {}).get("phase")
    return str(phase) if phase else None


def _apply_samples(api: kube.Kube) -> list[tuple[str, str, list[str]]]:
    applied = []
    for path in sorted(SAMPLES.glob("*.yaml")) if SAMPLES.is_dir() else []:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "ApiKey":
                continue
            meta = document["metadata"]
            namespace = meta.get("namespace", "default")
            with contextlib.suppress(kube.Conflict):
                install.create_apikey(api, namespace, document)
            applied.append((namespace, meta["name"],
                            list((document.get("spec") or {}).get("scopes") or [])))
    return applied
