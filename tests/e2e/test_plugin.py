"""`kubectl apikey` against the real control plane, run as kubectl runs it (a plugin found
on PATH): what each command prints, in every output format, and its exit codes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keywright.core import tokens
from tests.support.k8s import Cluster, Operator, Plaintext, Verifier, answer, issue
from tests.support.manifests import apikey
from tests.support.waiting import eventually

BIN = Path(sys.executable).parent  # kubectl-apikey is installed beside this Python


def apikey_cli(cluster: Cluster, *args: str, stdin: str | None = None,
               via_kubectl: bool = False) -> subprocess.CompletedProcess[str]:
    """`kubectl-apikey ARGS` (or `kubectl apikey ARGS`), with the cluster's kubeconfig in
    $KUBECONFIG, as a person's shell would have it."""
    command = ["kubectl", "apikey", *args] if via_kubectl else [str(BIN / "kubectl-apikey"),
                                                                  *args]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
                               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})


def test_kubectl_finds_the_plugin_and_hands_it_its_flags(
    crd: None, cluster: Cluster, namespace: str
) -> None:
    ran = apikey_cli(cluster, "list", "-n", namespace, via_kubectl=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.strip() == f"No ApiKeys found in {namespace} namespace."


def test_create_wait_list_in_every_format(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    made = apikey_cli(cluster, "create", "billing-sync", "-n", namespace, "--scope",
                      "Invoices.Read", "--expiration", "30d", "--allow", "10.0.0.0/8",
                      "--rate", "600/1m", "--wait")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0] == "apikey.keywright.dev/billing-sync created"
    assert lines[1].startswith("issued key kw_...")
    assert lines[1].endswith("in Secret billing-sync, expires in 29d") or \
        lines[1].endswith("in Secret billing-sync, expires in 30d")
    held = cluster.apikey(namespace, "billing-sync")["spec"]
    assert held["rateLimit"] == {"requests": 600, "period": "1m"}
    assert held["ipAllowlist"] == ["10.0.0.0/8"]

    table = apikey_cli(cluster, "list", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "ACTIVE", "PHASE", "KEY", "SCOPES/ROLES", "EXPIRES",
                              "LAST", "USED", "AGE"]
    cells = row.split()
    assert cells[:5] == ["billing-sync", "true", "Active", cells[3], "Invoices.Read"]
    assert cells[3].startswith("kw_...")
    assert cells[5:7] == ["in", cells[6]]  # "in 29d"
    assert cells[7] == "never"
    as_json = json.loads(apikey_cli(cluster, "list", "-n", namespace, "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in as_json["items"]] == ["billing-sync"]
    as_yaml = yaml.safe_load(apikey_cli(cluster, "list", "-n", namespace, "-o",
                                        "yaml").stdout)
    assert as_yaml == as_json

    everywhere = apikey_cli(cluster, "list", "-A").stdout.splitlines()
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(line.split()[:2] == [namespace, "billing-sync"] for line in everywhere[1:])
    soon = apikey_cli(cluster, "list", "-n", namespace, "--expiring", "14d")
    assert soon.stdout == ""  # expires in 30d: not within 14d
    assert apikey_cli(cluster, "list", "-n", namespace, "--expiring", "31d").stdout
    assert apikey_cli(cluster, "list", "-n", namespace, "--unused", "1d").stdout == ""


def test_a_manifest_for_gitops_creates_nothing(cluster: Cluster, namespace: str) -> None:
    shown = apikey_cli(cluster, "create", "for-git", "-n", namespace, "--scope",
                       "Reviews.Write", "--role", "reader", "--quota", "10000/30d",
                       "--restart", "deployment/api", "--dry-run", "client", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == {
        "apiVersion": "keywright.dev/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "for-git", "namespace": namespace},
        "spec": {"expiration": "90d", "scopes": ["Reviews.Write"], "roles": ["reader"],
                 "quota": {"limit": 10000, "refill": {"every": "30d"}},
                 "rotation": {"restartTargets": [{"kind": "Deployment", "name": "api"}]}}}
    assert apikey_cli(cluster, "list", "-n", namespace).stdout == ""


@pytest.mark.parametrize(("args", "code", "words"), [
    pytest.param(["create", "x", "--rate", "lots"], 2, "--rate: 'lots' must be",
                 id="a bad flag value is a usage error naming the flag"),
    pytest.param(["create", "x", "--expiration", "5y"], 2, "Invalid value for '--expiration'",
                 id="an expiration outside the presets"),
    pytest.param(["create", "x", "--scope", "Reviews" * 20 + ".Read"], 1,
                 "spec.scopes in body should be at most 128 chars long",
                 id="what only the server judges comes back in its words"),
    pytest.param(["rotate", "missing"], 1, 'apikeys.keywright.dev "missing" not found',
                 id="a missing ApiKey is an error"),
    pytest.param(["delete", "missing"], 1, "needs --yes when there is no terminal",
                 id="delete asks first, and refuses without a terminal to ask"),
    pytest.param(["list", "--context", "nowhere"], 1, "context 'nowhere' not found",
                 id="a context the kubeconfig lacks"),
])
def test_exit_codes_and_errors_say_what_is_wrong(
    args: list[str], code: int, words: str, crd: None, cluster: Cluster, namespace: str
) -> None:
    ran = apikey_cli(cluster, *args, "-n", namespace)
    assert ran.returncode == code, ran.stderr
    assert words in ran.stderr


def test_rotate_deactivate_activate_and_delete(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    assert apikey_cli(cluster, "create", "svc", "-n", namespace, "--wait").returncode == 0
    first = cluster.plaintext(namespace, "svc")
    rotated = apikey_cli(cluster, "rotate", "svc", "-n", namespace, "--grace", "1h", "--wait")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.splitlines()[0] == "apikey.keywright.dev/svc rotation requested"
    last = rotated.stdout.splitlines()[1]
    assert last.startswith("revision 2: key kw_...")
    assert "the previous key is valid until" in last
    assert cluster.plaintext(namespace, "svc") != first
    assert first not in rotated.stdout + rotated.stderr  # never a plaintext

    off = apikey_cli(cluster, "deactivate", "svc", "-n", namespace)
    assert off.stdout.strip() == "apikey.keywright.dev/svc deactivated"
    cluster.wait_phase(namespace, "svc", "Inactive")
    on = apikey_cli(cluster, "activate", "svc", "-n", namespace)
    assert on.stdout.strip() == "apikey.keywright.dev/svc activated"
    cluster.wait_phase(namespace, "svc", "Active")

    gone = apikey_cli(cluster, "delete", "svc", "-n", namespace, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.strip() == 'apikey.keywright.dev "svc" deleted'


def test_a_wait_that_runs_out_exits_124(cluster: Cluster, namespace: str,
                                        operator: Operator) -> None:
    operator.stop()  # nothing will issue the key
    ran = apikey_cli(cluster, "create", "stuck", "-n", namespace, "--wait", "--timeout", "2s")
    assert ran.returncode == 124, ran.stderr
    assert "ApiKey stuck was not issued within 2s" in ran.stderr


def test_an_exec_credential_plugin_and_an_inline_ca_log_in_as_kubectls_would(
    crd: None, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A kubeconfig of the kind cloud providers write: the CA inline, the token from an
    exec plugin (here a script that prints the admin's token)."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    token = admin["users"][0]["user"]["token"]
    plugin = tmp_path / "credential"
    plugin.write_text("#!/bin/sh\ncat <<'END'\n" + json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
        "status": {"token": token}}) + "\nEND\n")
    plugin.chmod(0o700)
    ca = Path(server["certificate-authority"]).read_bytes()
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "cloud",
        "clusters": [{"name": "c", "cluster": {
            "server": server["server"],
            "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}}],
        "contexts": [{"name": "cloud", "context": {"cluster": "c", "user": "u",
                                                   "namespace": namespace}}]}))
    ran = apikey_cli(cluster, "list", "--kubeconfig", str(config))
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.strip() == f"No ApiKeys found in {namespace} namespace."


def test_create_and_rotate_show_a_working_key_once_and_keep_it_nowhere(
    running_operator: Operator, ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    made = apikey_cli(cluster, "create", "shown", "-n", namespace, "--scope", "Invoices.Read",
                      "--show")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0] == "apikey.keywright.dev/shown created"
    first = Plaintext(lines[1])
    assert len(lines) == 2  # the key, once
    assert "shown once and kept nowhere" in made.stderr
    assert first not in made.stderr
    eventually(lambda: ready.get("/verify", {"X-API-Key": first})[2] == answer("OK"),
               timeout=10, what="the shown key working")
    held = cluster.apikey(namespace, "shown")
    assert held["spec"]["secret"]["create"] is False  # no Secret: no plaintext at rest
    assert cluster.secret(namespace, "shown") is None
    assert "keywright.dev/seal-to" not in (held["metadata"].get("annotations") or {})

    rotated = apikey_cli(cluster, "rotate", "shown", "-n", namespace, "--grace", "1h", "--show")
    assert rotated.returncode == 0, rotated.stderr
    second = Plaintext(rotated.stdout.splitlines()[1])
    assert second != first
    assert rotated.stdout.count(second) == 1
    eventually(lambda: ready.get("/verify", {"X-API-Key": second})[2] == answer("OK"),
               timeout=10, what="the new key working")
    assert ready.get("/verify", {"X-API-Key": first})[2] == answer("OK")  # in its grace
    status = cluster.status(namespace, "shown")
    assert status["revision"] == 2
    assert "keywright.dev/seal-to" not in (
        cluster.apikey(namespace, "shown")["metadata"].get("annotations") or {})


def test_describe_tells_the_keys_their_use_conditions_events_and_consumers(
    running_operator: Operator, ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    assert apikey_cli(cluster, "create", "desc", "-n", namespace, "--scope", "Invoices.Read",
                      "--restart", "deployment/api", "--wait").returncode == 0
    key = cluster.plaintext(namespace, "desc")
    cluster.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "consumer", "namespace": namespace},
                   "spec": {"containers": [{"name": "app", "image": "example.invalid/app",
                                            "env": [{"name": "API_KEY", "valueFrom": {
                                                "secretKeyRef": {"name": "desc",
                                                                 "key": "api-key"}}}]}]}})
    eventually(lambda: ready.get("/verify", {"X-API-Key": key})[2] == answer("OK"),
               timeout=10, what="the key verifying")
    eventually(lambda: "1" in (cluster.status(namespace, "desc").get("lastUsedByRevision")
                               or {}), timeout=90, what="revision 1's use recorded")
    assert apikey_cli(cluster, "rotate", "desc", "-n", namespace, "--grace", "1h",
                      "--wait").returncode == 0

    text = apikey_cli(cluster, "describe", "desc", "-n", namespace)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "Phase:       Active (active: true)" in out
    assert "Grants:      Invoices.Read" in out
    assert "Secret:      desc" in out
    assert "Used by:     consumer" in out
    first, second = [line for line in out.splitlines() if line.startswith("  revision ")]
    assert first.startswith("  revision 1: kw_...")
    assert ", valid until " in first
    assert first.endswith(": in use")  # used a moment ago
    assert second.endswith("(current): never used")
    assert "  Deployment/api: not rolled yet" in out or \
        "  Deployment/api: rolled for the current revision" in out
    events = out[out.index("Events:"):]
    for reason in ("Issued", "Rotated", "RestartTargetMissing"):
        assert reason in events
    as_json = json.loads(apikey_cli(cluster, "status", "desc", "-n", namespace, "-o",
                                    "json").stdout)
    assert [r["revision"] for r in as_json["revisions"]] == [1, 2]
    assert as_json["consumers"] == ["consumer"]
    assert key not in out  # never a plaintext


def test_kubectl_completes_commands_flags_and_apikey_names_through_the_plugin(
    running_operator: Operator, cluster: Cluster, namespace: str
) -> None:
    for name in ("billing-sync", "billing-batch", "search"):
        cluster.apply(apikey(name, namespace))
    cluster.wait_phase(namespace, "billing-batch", "Active")

    def complete(*words: str) -> list[str]:
        ran = subprocess.run(["kubectl", "__complete", "apikey", *words], capture_output=True,
                             text=True, timeout=30,
                             env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
                                  "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
        assert ran.returncode == 0, ran.stderr
        return ran.stdout.splitlines()
    commands = complete("")
    assert commands[-1] == ":4"  # no file names
    assert {line.split("\t")[0] for line in commands[:-1]} >= {
        "list", "create", "describe", "rotate", "activate", "deactivate", "delete"}
    names = complete("describe", "-n", namespace, "bill")
    assert [line.split("\t")[0] for line in names[:-1]] == ["billing-batch", "billing-sync"]
    assert names[0].split("\t")[1].startswith("Active kw_...")  # phase and key as help
    assert complete("list", "-n", namespace[:-2])[:-1] == [namespace]
    assert complete("list", "-o", "j")[:-1] == ["json"]
    assert complete("list", "--kubeconfig", "")[-1] == ":0"  # the shell completes files


@pytest.fixture
def checked_keys(running_operator: Operator, ready: Verifier, cluster: Cluster,
                 namespace: str) -> dict[str, Plaintext]:
    """Keys in every state a check can find, each indexed by the session verifier."""
    found = {
        "fenced": issue(cluster, ready, namespace, "fenced", expect="IP_NOT_ALLOWED",
                        scopes=["Invoices.Read"], ipAllowlist=["203.0.113.0/24"]),
        "off": issue(cluster, ready, namespace, "off", scopes=["Invoices.Read"]),
    }
    cluster.apply(apikey("brief", namespace, expiration="3s"))
    eventually(lambda: cluster.status(namespace, "brief").get("secretName"), timeout=30,
               what="the brief key issued")  # Active for three seconds at most
    found["brief"] = cluster.plaintext(namespace, "brief")
    cluster.apply(apikey("off", namespace, scopes=["Invoices.Read"], active=False))
    eventually(lambda: checked_code(ready, found["off"]) == "INACTIVE", timeout=10,
               what="the verifier seeing it deactivated")
    eventually(lambda: checked_code(ready, found["brief"]) == "EXPIRED", timeout=10,
               what="the brief key expired")
    return found


def checked_code(verifier: Verifier, key: str) -> str:
    return str(json.loads(verifier.get("/check", {"X-API-Key": key})[2])["code"])


@pytest.mark.parametrize(("who", "args", "line"), [
    pytest.param("fenced", ["--scope", "Invoices.Read", "--from", "203.0.113.7"],
                 "200 OK: key fenced (revision 1) grants Invoices.Read", id="OK"),
    pytest.param("fenced", ["--scope", "Invoices.Read", "--from", "198.51.100.7"],
                 "403 IP_NOT_ALLOWED: 198.51.100.7 is not in 203.0.113.0/24",
                 id="IP_NOT_ALLOWED"),
    pytest.param("fenced", ["--scope", "Invoices.Write"],
                 "403 INSUFFICIENT_SCOPE: key fenced lacks Invoices.Write (it holds "
                 "Invoices.Read)", id="INSUFFICIENT_SCOPE"),
    pytest.param("off", [], "401 INACTIVE: key off is not active: spec.active is false",
                 id="INACTIVE"),
    pytest.param("brief", [], "401 EXPIRED: key brief expired at ", id="EXPIRED"),
    pytest.param("unknown", [], "401 INVALID_KEY: no ApiKey holds this key", id="INVALID_KEY"),
    pytest.param("garbled", [], "401 MALFORMED_KEY: what was given is not shaped like a key",
                 id="MALFORMED_KEY"),
])
def test_check_says_each_decision_and_its_reason_in_words(
    who: str, args: list[str], line: str, checked_keys: dict[str, Plaintext], ready: Verifier,
    cluster: Cluster, namespace: str
) -> None:
    key = {"unknown": tokens.generate("kw"), "garbled": checked_keys["fenced"][:-2],
           **checked_keys}[who]
    ran = apikey_cli(cluster, "check", "-n", namespace, "--verifier", ready.url, *args,
                     stdin=key)
    assert ran.stdout.startswith(line), ran.stdout + ran.stderr
    assert ran.returncode == (0 if line.startswith("200") else 3)
    assert key not in ran.stdout + ran.stderr


def test_identify_names_the_apikey_and_revision_of_a_key_without_printing_it(
    checked_keys: dict[str, Plaintext], ready: Verifier, cluster: Cluster, namespace: str
) -> None:
    env_key = {"FOUND_IN_A_LOG": checked_keys["fenced"]}
    ran = subprocess.run([str(BIN / "kubectl-apikey"), "identify", "--verifier", ready.url,
                          "--key-from-env", "FOUND_IN_A_LOG"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, **env_key,
                                          "KUBECONFIG": str(cluster.kubeconfig)})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(f"ApiKey {namespace}/fenced, revision 1 "
                                 f"(...{checked_keys['fenced'][-4:]}, current)")
    assert checked_keys["fenced"] not in ran.stdout
    nobody = apikey_cli(cluster, "identify", "--verifier", ready.url,
                        stdin=tokens.generate("kw"))
    assert nobody.returncode == 3
    assert nobody.stdout.strip() == "INVALID_KEY: no ApiKey holds this key"
