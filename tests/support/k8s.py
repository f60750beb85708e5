"""What e2e tests share: the operator and verifier as child processes, kubectl, and reading
the cluster back (ApiKeys, Secrets, events, ServiceAccount tokens)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client

from keywright.core import names
from keywright.kits import processes
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = names.DEFAULT_NAMESPACE


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args],
                            input=stdin, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


class Plaintext(str):
    """A key read back from its Secret. Its repr shows only the last characters, so a
    failing assertion never prints a key into the test output."""

    def __repr__(self) -> str:
        return f"<key ...{self[-4:]}>"


class Operator:
    """`keywright operator` as a child process, at DEBUG, logging to files we keep."""

    def __init__(self, kubeconfig: Path, logdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.logdir = logdir
        self.popen: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.logdir / f"operator-{self.runs}.log"

    def start(self, crash_at: str | None = None, extra: tuple[str, ...] = ()) -> None:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self.runs += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("KEYWRIGHT_CRASH_AT", None)
        if crash_at:
            env["KEYWRIGHT_CRASH_AT"] = crash_at
        self.popen = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
             str(self.kubeconfig), "--namespace", OPERATOR_NAMESPACE,
             "--log-level", "DEBUG", *extra],
            self.log, env=env)
        eventually(lambda: "Activity 'login' succeeded" in self.log.read_text(),
                   timeout=30, what="operator start")

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an evicted Pod."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        processes.terminate(self.popen)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.logdir.glob("operator-*.log")))


Response = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body


def http_get(url: str, headers: dict[str, str] | None = None) -> Response:
    """A GET that returns 4xx/5xx answers instead of raising; status 0 if nothing
    answered at all."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return (response.status, {k.lower(): v for k, v in response.headers.items()},
                    response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()
    except OSError:
        return 0, {}, b""


class Verifier:
    """`keywright verifier` as a child process at DEBUG: audit lines (stdout) and
    diagnostics (stderr) in separate files we keep."""

    def __init__(self, kubeconfig: Path, logdir: Path, *extra: str) -> None:
        self.kubeconfig, self.logdir, self.extra = kubeconfig, logdir, extra
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.popen: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.logdir / f"verifier-{self.runs}.log"

    @property
    def audit(self) -> Path:
        return self.logdir / f"audit-{self.runs}.log"

    def start(self, wait_ready: bool = True) -> None:
        self.runs += 1
        with self.audit.open("ab") as out, self.log.open("ab") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "keywright.cli", "verifier", "--kubeconfig",
                 str(self.kubeconfig), "--namespace", OPERATOR_NAMESPACE, "--host",
                 "127.0.0.1", "--port", str(self.port), "--log-level", "DEBUG", *self.extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                preexec_fn=processes.die_with_parent)
        if wait_ready:
            eventually(lambda: self.get("/readyz")[0] == 200, timeout=30,
                       what="verifier ready")

    def stop(self) -> None:
        processes.terminate(self.popen)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return http_get(self.url + path, headers)

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for path in sorted(self.logdir.glob("audit-*.log"))
                for line in path.read_text().splitlines() if line.strip()]

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.logdir.glob("*.log")))


class Cluster:
    """Reads the way a user would check: the ApiKey, its Secret, its events."""

    def __init__(self, api: client.ApiClient, kubeconfig: Path) -> None:
        self.api = api
        self.kubeconfig = kubeconfig
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def apply(self, manifest: dict[str, Any]) -> None:
        kubectl(self.kubeconfig, "apply", "-f", "-", stdin=json.dumps(manifest))

    def apikey(self, namespace: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name))

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.apikey(namespace, name).get("status") or {}
        return found

    def wait_phase(self, namespace: str, name: str, phase: str,
                   timeout: float = 30) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(namespace, name)
            return status if status.get("phase") == phase else None
        return eventually(reached, timeout=timeout, what=f"{namespace}/{name} phase {phase}")

    def secret(self, namespace: str, name: str) -> client.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def plaintext(self, namespace: str, name: str, key: str = "api-key") -> Plaintext:
        secret = self.secret(namespace, name)
        assert secret is not None
        assert secret.data is not None
        return Plaintext(base64.b64decode(secret.data[key]).decode("ascii"))

    def pepper(self) -> dict[str, bytes]:
        secret = self.secret(OPERATOR_NAMESPACE, "keywright-pepper")
        assert secret is not None
        assert secret.data is not None
        return {k: base64.b64decode(v) for k, v in secret.data.items()}

    def events(self, namespace: str, name: str, quiet: float = 1.0,
               timeout: float = 10.0) -> list[tuple[str, str, str]]:
        """The object's events, oldest first, once none has arrived for `quiet` seconds
        (the operator posts events just after the status patch a test waits for)."""
        def listed() -> list[tuple[str, str, str]]:
            found = self.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}")
            ordered = sorted(found.items, key=lambda e: int(e.metadata.resource_version or 0))
            return [(str(e.type), str(e.reason), str(e.message)) for e in ordered]
        deadline = time.monotonic() + timeout
        last, since = listed(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = listed()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
        return last

    def reasons(self, namespace: str, name: str) -> list[str]:
        return [reason for _, reason, _ in self.events(namespace, name)]


def token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the same API server as `admin`, authenticated by `token` only."""
    config = yaml.safe_load(admin.read_text())
    cluster = config["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": cluster["name"],
                                                   "user": "token"}}],
        "current-context": "token"}))
    path.chmod(0o600)
    return path


def service_account_token(api: client.ApiClient, namespace: str, name: str) -> str:
    """The token the controller-manager minted for a ServiceAccount (1.20: a Secret)."""
    core = client.CoreV1Api(api)

    def minted() -> str | None:
        account = core.read_namespaced_service_account(name, namespace)
        for ref in account.secrets or []:
            secret = core.read_namespaced_secret(str(ref.name), namespace)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                return base64.b64decode(secret.data["token"]).decode()
        return None
    return eventually(minted, timeout=30, what=f"token of ServiceAccount {name}")
