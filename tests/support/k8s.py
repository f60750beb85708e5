"""What e2e tests share: the operator and verifier as child processes, kubectl, and reading
the cluster back (ApiKeys, Secrets, events, ServiceAccount tokens)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client

from keywright.core import names
from keywright.kits import processes
from tests.support.manifests import apikey
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


STOPPED = "Root tasks are stopped"  # what Kopf logs once it has stopped, whyever


class Plaintext(str):
    """A key read back from its Secret. Its repr shows only the last characters, so a
    failing assertion never prints a key into the test output."""

    def __repr__(self) -> str:
        return f"<key ...{self[-4:]}>"

    def bearer(self) -> Plaintext:
        """`Bearer <key>`, for an Authorization header, as secret as the key itself."""
        return Plaintext(f"Bearer {self}")


class Operator:
    """`keywright operator` as a child process, at DEBUG, logging to files we keep."""

    def __init__(self, kubeconfig: Path, logdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.logdir = logdir
        self.popen: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.extra: tuple[str, ...] = ()  # the flags of the last start

    @property
    def log(self) -> Path:
        return self.logdir / f"operator-{self.runs}.log"

    def start(self, crash_at: str | None = None, extra: tuple[str, ...] = ()) -> None:
        assert self.popen is None or self.popen.poll() is not None, "already running"
        self.runs += 1
        self.extra = extra
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
        if "--webhook-port" in extra:  # each start makes a new CA: published before use
            eventually(lambda: all(f"{kind} {names.WEBHOOK_CONFIGURATION} written" in
                                   self.log.read_text() for kind in (
                                       "ValidatingWebhookConfiguration",
                                       "MutatingWebhookConfiguration")),
                       timeout=30, what="the webhook configurations published")

    def ensure_running(self) -> None:
        """Start it again if an earlier test left it stopped (or crashed it), or left it
        on its way out: Kopf has stopped (a watch failed for good while the API server
        restarted, say) and the process exits some seconds later."""
        if self.popen is not None and self.popen.poll() is None and \
                STOPPED in self.log.read_text(errors="replace"):
            self.popen.wait(timeout=30)
        if self.popen is None or self.popen.poll() is not None:
            self.start()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an evicted Pod."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def pause(self) -> None:
        """SIGSTOP: hung, as a wedged process. Its listening sockets still accept
        connections (the kernel does that), but nothing answers."""
        assert self.popen is not None
        assert self.popen.poll() is None, "not running"
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT, after `pause`."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()  # a paused process would only act on SIGTERM once continued
        processes.terminate(self.popen)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def all_logs(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.logdir.glob("operator-*.log")))


Response = tuple[int, dict[str, str], bytes]  # status, headers (lower-case names), body
Headers = Mapping[str, str] | Sequence[tuple[str, str]]  # pairs: to send a name twice


def http_request(url: str, headers: Headers | None = None, *, method: str = "GET",
                 body: bytes | None = None, source: str | None = None) -> Response:
    """One request on a fresh connection; its answer whatever the status, or status 0 if
    nothing answered at all (so a check of the status must name the one it expects).
    `source` binds the client's socket to that local address: the session verifier
    trusts 127.0.0.2 as a proxy."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=10,
        source_address=(source, 0) if source is not None else None)
    try:
        connection.putrequest(method, target)
        for name, value in pairs:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())
    except (OSError, http.client.HTTPException):
        return 0, {}, b""
    finally:
        connection.close()


def http_get(url: str, headers: Headers | None = None) -> Response:
    """A GET that returns 4xx/5xx answers instead of raising; status 0 if nothing
    answered at all."""
    return http_request(url, headers)


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

    def ensure_ready(self) -> None:
        """Start it again if an earlier test left it stopped; wait for its first list."""
        if not self.running:
            self.start(wait_ready=False)
        eventually(lambda: self.get("/readyz")[0] == 200, timeout=30, what="verifier ready")

    def stop(self) -> None:
        processes.terminate(self.popen)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def get(self, path: str, headers: Headers | None = None) -> Response:
        return http_get(self.url + path, headers)

    def request(self, path: str, headers: Headers | None = None, *, method: str = "GET",
                body: bytes | None = None, source: str | None = None) -> Response:
        return http_request(self.url + path, headers, method=method, body=body,
                            source=source)

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


def answer(code: str) -> bytes:
    """The body the contract gives every /verify answer: `{"code":"..."}`, compact."""
    return f'{{"code":"{code}"}}'.encode()


def issue(cluster: Cluster, verifier: Verifier, namespace: str, name: str, *,
          probe: str = "/verify", expect: str = "OK", **spec: Any) -> Plaintext:
    """Apply an ApiKey, wait for Active, and for `verifier` to have indexed its key: until
    it answers `probe` with the key by the code `expect` (a verifier that is down answers
    nothing, one that has not seen the key yet INVALID_KEY: neither will do). The probe
    is a request like any other: it counts as use, and an OK takes a rate-limit token;
    probe a rate-limited key with a scope it lacks to keep its tokens."""
    cluster.apply(apikey(name, namespace, **spec))
    status = cluster.wait_phase(namespace, name, "Active")
    key = cluster.plaintext(namespace, status["secretName"])
    eventually(lambda: verifier.get(probe, {"X-API-Key": key})[2] == answer(expect),
               timeout=10, what=f"the verifier answering {expect} for {namespace}/{name}")
    return key


class Relay:
    """A loopback TCP port that forwards to the API server, for one client to lose its
    connection while the cluster goes on: `cut()` drops every connection through it and
    refuses new ones (as a network partition would), `mend()` lets them through again."""

    def __init__(self, target: str) -> None:
        parts = urllib.parse.urlsplit(target)
        assert parts.hostname is not None
        assert parts.port is not None
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.server = f"{parts.scheme}://127.0.0.1:{self.port}"
        self._open = threading.Event()
        self._open.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def kubeconfig(self, source: Path, path: Path) -> Path:
        """`source` with its server replaced by this relay."""
        config = yaml.safe_load(source.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.server
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            dropped, self._sockets = self._sockets, set()
        for sock in dropped:
            _close(sock)

    def mend(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self.cut()
        _close(self.listener)

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return  # stopped
            if not self._open.is_set():
                _close(near)
                continue
            try:
                far = socket.create_connection(self.target, timeout=5)
                far.settimeout(None)
            except OSError:
                _close(near)
                continue
            with self._lock:
                self._sockets |= {near, far}
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            return  # cut, or the other side went away
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


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
