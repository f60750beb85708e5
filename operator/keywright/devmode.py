"""`keywright dev`: the embedded default, everything on one local control plane.

Owns: starting the control plane, installing the CRD, running the operator as a child
process, applying the samples, telling the user how to reach it all, and stopping exactly
what it started on Ctrl-C.
Must not: leave a process behind; it uses processes.spawn, whose children die with it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from keywright import crd, devcluster, kube, kubebuild, processes

OPERATOR_NAMESPACE = "keywright-system"
SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"

Say = Callable[[str], None]


def run(workdir: Path | None, say: Say) -> int:
    plane = devcluster.ControlPlane(kubebuild.ensure_binaries(say), workdir=workdir, say=say)
    operator = None
    try:
        say("starting etcd, kube-apiserver and kube-controller-manager ...")
        plane.start()
        api = kube.Kube.connect(str(plane.kubeconfig))
        api.apply_crd(crd.definition())
        api.ensure_namespace(OPERATOR_NAMESPACE)
        log = plane.workdir / "logs" / "operator.log"
        operator = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
             str(plane.kubeconfig), "--namespace", OPERATOR_NAMESPACE], log)
        applied = _apply_samples(api)
        say(f"local control plane ready at {plane.server} (data in {plane.workdir})")
        say(f"operator running (pid {operator.pid}); its log: {log}")
        say("")
        say(f"  export KUBECONFIG={plane.kubeconfig}")
        say("  kubectl get apikeys -A")
        for namespace, name in applied:
            say(f"  kubectl -n {namespace} describe apikey {name}")
            say(f"  kubectl -n {namespace} get secret {name} -o jsonpath='{{.data.api-key}}' "
                "| base64 -d")
        say("")
        say("Press Ctrl-C to stop and clean up.")
        while True:
            plane.check_running()
            if operator.poll() is not None:
                say(f"the operator exited with code {operator.returncode}; see {log}")
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping ...")
        return 0
    finally:
        processes.terminate(operator)
        plane.stop()
        say("stopped; nothing left running")


def _apply_samples(api: kube.Kube) -> list[tuple[str, str]]:
    applied = []
    for path in sorted(SAMPLES.glob("*.yaml")) if SAMPLES.is_dir() else []:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "ApiKey":
                continue
            meta = document["metadata"]
            namespace = meta.get("namespace", "default")
            with contextlib.suppress(kube.Conflict):
                api.create_apikey(namespace, document)
            applied.append((namespace, meta["name"]))
    return applied
