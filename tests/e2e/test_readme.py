"""README's walkthroughs, run as written against the session's cluster: the block after
each `walkthrough` marker, in bash, with the printed KUBECONFIG and the verifier's URL
(the roles and policies one with the admission webhooks on, as `make dev` runs them),
and the output README shows held to what they printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.k8s import REPO, Cluster, Operator, Verifier


def walkthrough(marker: str = "walkthrough", fence: str = "```sh\n") -> str:
    text = (REPO / "README.md").read_text()
    after = text[text.index(f"<!-- {marker}:"):]
    start = after.index(fence) + len(fence)
    return after[start:after.index("\n```", start)]


def run(script: str, cluster: Cluster, verifier: Verifier, cwd: Path | None = None,
        stop_on_error: bool = True) -> subprocess.CompletedProcess[str]:
    """The script in bash, as README's reader runs it with `make dev` up: KUBECONFIG
    printed, the verifier's URL, and .venv/bin (kubectl-apikey) on PATH."""
    flags = ["-e"] if stop_on_error else []
    return subprocess.run(["bash", *flags, "-o", "pipefail", "-c", script],
                          capture_output=True, text=True, timeout=180, cwd=cwd,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
                               "VERIFIER": verifier.url,
                               "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                       f"{os.environ['PATH']}"})


def test_the_readme_walkthrough_runs_as_written(ready: Verifier, cluster: Cluster) -> None:
    verifier = ready
    script = walkthrough()
    assert script.startswith("kubectl create namespace billing")
    done = run(script, cluster, verifier)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "apikey.keywright.dev/billing-sync created" in out
    listed = next(line for line in out.splitlines() if line.startswith("billing-sync "))
    assert listed.split()[:2] == ["billing-sync", "Active"]
    assert '{"code":"OK"}' in out  # the key verified
    assert out.index('{"code":"OK"}') < out.index('{"code":"INVALID_KEY"}')  # then rotated
    assert 'apikey.keywright.dev "billing-sync" deleted' in out


def test_the_roles_and_policies_walkthrough_runs_as_written_and_shows_what_it_printed(
    webhooks: Operator, ready: Verifier, cluster: Cluster
) -> None:
    script = walkthrough("walkthrough-roles")
    assert script.startswith("kubectl create namespace shop")
    done = run(script, cluster, ready)
    assert done.returncode == 0, done.stdout + done.stderr
    sent = [line.rstrip() for line in done.stdout.splitlines()
            if line.lower().startswith("x-keywright-")]
    shown = [line.rstrip() for line in walkthrough("walkthrough-roles-headers", "```\n")
             .splitlines()]
    assert sent == shown  # the headers README shows are the ones the verifier sent
    refusal = next(line for line in done.stderr.splitlines() if "denied the request" in line)
    assert refusal in (REPO / "README.md").read_text()  # README quotes it word for word
    assert "(refused, as it should be)" in done.stdout
    listed = done.stdout[done.stdout.index("NAME"):]
    assert "apikeyrole.keywright.dev/team-invoices" in listed
    assert "apikeypolicy.keywright.dev/prod-guardrails" in listed


def test_the_sealed_walkthrough_runs_as_written_with_debians_age(
    ready: Verifier, cluster: Cluster, tmp_path: Path
) -> None:
    script = walkthrough("walkthrough-sealed")
    assert script.startswith("kubectl create namespace partners")
    done = run(script, cluster, ready, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No resources found in partners namespace." in done.stderr  # no Secret
    assert '{"code":"OK"}' in done.stdout  # what age opened, the verifier took
    assert list(tmp_path.iterdir()) == []  # the identity and the ciphertext removed


def test_the_plugin_walkthrough_runs_as_written(webhooks: Operator, ready: Verifier,
                                                cluster: Cluster) -> None:
    script = walkthrough("walkthrough-plugin")
    assert script.startswith("kubectl create namespace web")
    done = run(script, cluster, ready, stop_on_error=False)  # doctor exits 1 here
    out = done.stdout
    assert "apikey.keywright.dev/checkout-web-prod created" in out, out + done.stderr
    assert "revision 2: key kw_..." in out
    assert "Keys:" in out  # describe
    key = [line for line in out.splitlines() if line.startswith("kw_")]
    assert len(key) == 1  # --show printed one key, once
    assert "CHECK" in out  # doctor's table (its Deployments are not run here: exit 1)
