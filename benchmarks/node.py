"""The image and the real node, timed; print figures.

    .venv/bin/python benchmarks/node.py        (as root)

Prints: the image build (`keywright image`, base cached) and the image's size (per layer,
uncompressed, and the archive); nothing to Node Ready; the image import into containerd;
`kubectl apply -k` of the install overlay to the operator and both verifiers Ready; a
Pod's create to Ready; `kubectl rollout restart` of a one-replica Deployment to its new
Pod Ready; and stopping the node. Limits, each printed with its ratio: image <= 400 MB
uncompressed (what the first hand-made image weighed: 408 MB), Node Ready <= 60 s, Pod
create to Ready <= 5 s. Not part of the test suite: it prints, it does not pass or fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keywright.dev import image, install, node

REPO = Path(__file__).resolve().parents[1]
SYSTEM = "keywright-system"
LIMITS = {"image MB": 400.0, "node Ready s": 60.0, "pod create to Ready s": 5.0}


def main() -> int:
    figures: dict[str, float] = {}
    out = Path(tempfile.mkdtemp(prefix="kw-bench-"))
    began = time.monotonic()
    built = image.build(REPO, out, print)
    figures["image build s"] = time.monotonic() - began
    figures["image MB"] = built.size / 1e6
    figures["image over base MB"] = (built.size - built.layers[0]) / 1e6
    figures["archive MB"] = built.archive.stat().st_size / 1e6
    the_node = node.Node(print)
    began = time.monotonic()
    the_node.start()
    figures["node Ready s"] = time.monotonic() - began
    try:
        figures["image import s"] = the_node.import_image(built.archive)
        kubectl = ["kubectl", f"--kubeconfig={the_node.kubeconfig}"]
        overlay = install.overlay(the_node.workdir, REPO / "deploy" / "k8s-1.20",
                                  built.reference).parent
        began = time.monotonic()
        subprocess.run([*kubectl, "apply", "--validate=false", "-k", str(overlay)],
                       check=True, capture_output=True)
        for deployment in ("keywright-operator", "keywright-verifier"):
            subprocess.run([*kubectl, "-n", SYSTEM, "rollout", "status",
                            f"deployment/{deployment}", "--timeout=300s"], check=True,
                           capture_output=True)
        figures["apply to Ready s"] = time.monotonic() - began
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "timed"},
               "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                   "name": "c", "image": built.reference, "imagePullPolicy": "Never",
                   "command": ["python3", "-c", "import time; time.sleep(3600)"]}]}}
        began = time.monotonic()
        subprocess.run([*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True,
                       check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "pod/timed", "--for=condition=Ready",
                        "--timeout=120s"], check=True, capture_output=True)
        figures["pod create to Ready s"] = time.monotonic() - began
        began = time.monotonic()
        subprocess.run([*kubectl, "-n", SYSTEM, "rollout", "restart",
                        "deployment/keywright-operator"], check=True, capture_output=True)
        subprocess.run([*kubectl, "-n", SYSTEM, "rollout", "status",
                        "deployment/keywright-operator", "--timeout=120s"], check=True,
                       capture_output=True)
        figures["rollout restart to Ready s"] = time.monotonic() - began
    finally:
        began = time.monotonic()
        the_node.stop()
        figures["node stop s"] = time.monotonic() - began
        shutil.rmtree(out, ignore_errors=True)
    for name, value in figures.items():
        limit = LIMITS.get(name)
        ratio = f"  ({value / limit:.2f} of the limit {limit:g})" if limit else ""
        print(f"{name:28} {value:8.1f}{ratio}")
    print(f"layers (MB, uncompressed, base first): {[round(s / 1e6) for s in built.layers]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
