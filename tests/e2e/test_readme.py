"""README's walkthrough, run as written against the session's cluster: the block after
its `walkthrough` marker, in bash, with the printed KUBECONFIG and the verifier's URL."""

from __future__ import annotations

import os
import subprocess

from tests.support.k8s import REPO, Cluster, Verifier


def walkthrough() -> str:
    text = (REPO / "README.md").read_text()
    after = text[text.index("<!-- walkthrough:"):]
    start = after.index("```sh\n") + len("```sh\n")
    return after[start:after.index("\n```", start)]


def test_the_readme_walkthrough_runs_as_written(ready: Verifier, cluster: Cluster) -> None:
    verifier = ready
    script = walkthrough()
    assert script.startswith("kubectl create namespace billing")
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
                               "VERIFIER": verifier.url})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "apikey.keywright.dev/billing-sync created" in out
    listed = next(line for line in out.splitlines() if line.startswith("billing-sync "))
    assert listed.split()[:2] == ["billing-sync", "Active"]
    assert '{"code":"OK"}' in out  # the key verified
    assert out.index('{"code":"OK"}') < out.index('{"code":"INVALID_KEY"}')  # then rotated
    assert 'apikey.keywright.dev "billing-sync" deleted' in out
