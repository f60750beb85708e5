"""The local control plane: etcd, kube-apiserver and kube-controller-manager on loopback.

Owns: free ports, a fresh data directory, the service-account key pair, the token users,
an admin kubeconfig that verifies the server certificate, readiness, and stopping exactly
the processes it started, by PID (also when the Python process that started them dies:
each child is asked to be killed with its parent).
Must not: import the Kubernetes client (kube.py is the only module that does), touch any
process it did not start, or start anything before the ports and binaries are checked.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import ssl
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keywright.core import errors
from keywright.kits import processes

HOST = "127.0.0.1"
WORKDIR_PREFIX = "keywright-cp-"
ADMIN = "admin"
CONTROLLERS = "*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-ttl," \
    "-bootstrapsigner,-tokencleaner"

Say = Callable[[str], None]


class ControlPlaneError(errors.KeywrightError):
    """The control plane cannot start or stopped working; the message says what to do."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int

    @classmethod
    def free(cls) -> Ports:
        return cls(processes.free_port(), processes.free_port(), processes.free_port())


@dataclass
class TokenUser:
    name: str
    token: str
    groups: tuple[str, ...] = ()


@dataclass
class _Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)


OWNER_FILE = "owner"  # in a data directory: the identity of the process that made it
CHILDREN_FILE = "children"  # and one line per child it started: name and identity
STALE_UNOWNED = 60.0  # seconds: an older directory with no owner file is a leftover


def workdir_base() -> Path:
    """Where data directories go: tmpfs when there is one (etcd's fsyncs are then cheap)."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory inside
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def default_workdir(base: Path | None = None) -> Path:
    """A fresh directory that says which process owns it."""
    path = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base or workdir_base()))
    written = path / f".{OWNER_FILE}"
    written.write_text(processes.identity(os.getpid()) or "")
    written.rename(path / OWNER_FILE)  # whole or absent, never half-written
    return path


def remove_leftovers(say: Say, base: Path | None = None) -> list[Path]:
    """Remove the data directories of earlier runs that were killed before they could
    clean up (SIGKILL, a power cut): their owner is gone. A child they recorded that is
    somehow still running (its parent's death normally kills it) is killed first, by its
    recorded PID and start time, so nothing else is ever signalled."""
    removed = []
    for path in sorted((base or workdir_base()).glob(f"{WORKDIR_PREFIX}*")):
        owner = path / OWNER_FILE
        try:
            found = path.lstat()
            if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
                continue  # a link, a file, or another user's: never ours to touch
            recorded = owner.read_text().strip() if owner.exists() else ""
            if not recorded:
                if time.time() - found.st_mtime < STALE_UNOWNED:
                    continue  # just made: its owner file is on the way
            elif processes.identity(int(recorded.split()[0])) == recorded:
                continue  # its run is alive
            for line in _lines(path / CHILDREN_FILE):
                _, pid, started = line.split()
                if processes.identity(int(pid)) == f"{pid} {started}":
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # not ours to judge, or gone meanwhile
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            say(f"could not remove {path}, left by an earlier run that was killed")
            continue
        say(f"removed {path} ({size / 1e6:.0f} MB), left by an earlier run that was killed")
        removed.append(path)
    return removed


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class ControlPlane:
    """One local control plane. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        bin_dir: Path,
        *,
        workdir: Path | None = None,
        ports: Ports | None = None,
        say: Say = print,
        keep_workdir: bool = False,
        audit: bool = False,
    ) -> None:
        self.bin_dir = bin_dir
        self._given_workdir = workdir
        self.workdir = workdir or Path()
        self.ports = ports
        self.say = say
        self.keep_workdir = keep_workdir
        self.audit = audit
        self.users: dict[str, TokenUser] = {
            ADMIN: TokenUser(ADMIN, secrets.token_urlsafe(32), ("system:masters",))
        }
        self._processes: dict[str, _Process] = {}
        # (stopped, ready again) per kube-apiserver restart, in wall-clock seconds: in the
        # moments after one, its RBAC authorizer refuses what it will soon allow
        self.outages: list[tuple[float, float | None]] = []

    # -- public surface -------------------------------------------------------------

    @property
    def server(self) -> str:
        assert self.ports is not None
        return f"https://{HOST}:{self.ports.apiserver}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "apiserver.crt"

    @property
    def audit_log(self) -> Path:
        """With audit=True: one JSON line per write request (metadata only, no bodies)."""
        return self.workdir / "logs" / "audit.log"

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.popen.pid for name, p in self._processes.items() if p.popen}

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        ports = self.ports or Ports.free()
        try:
            processes.check_port_free(ports.etcd_client, "etcd client")
            processes.check_port_free(ports.etcd_peer, "etcd peer")
            processes.check_port_free(ports.apiserver, "kube-apiserver")
        except processes.PortBusy as exc:
            raise ControlPlaneError(str(exc)) from None
        missing = [b for b in ("kube-apiserver", "kube-controller-manager")
                   if not os.access(self.bin_dir / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(
                f"{' and '.join(missing)} not found in {self.bin_dir}; "
                "run `keywright cluster prepare` to build them"
            )
        etcd = shutil.which("etcd")
        if etcd is None:
            raise ControlPlaneError("etcd not found on PATH; install Debian's etcd-server")
        self.ports = ports
        if self._given_workdir is None:
            remove_leftovers(self.say)
        self.workdir = self._given_workdir or default_workdir()
        try:
            self._prepare_files()
            deadline = time.monotonic() + timeout
            self._spawn(self._etcd(etcd))
            self._wait(deadline, "etcd", self._etcd_healthy)
            self._spawn(self._apiserver())
            self._wait(deadline, "kube-apiserver", self._apiserver_ready)
            for name in self.users:
                self._write_kubeconfig(name)
            self._spawn(self._controller_manager())
            self._wait(deadline, "kube-controller-manager", self._service_accounts_work)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the processes this object started, newest first; nothing else."""
        for proc in reversed(list(self._processes.values())):
            processes.terminate(proc.popen)
        self._processes.clear()
        if not self.keep_workdir and self._given_workdir is None and self.workdir != Path():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def check_running(self) -> None:
        """Raise ControlPlaneError naming the first of our processes that has exited."""
        for proc in self._processes.values():
            code = proc.popen.poll() if proc.popen else None
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code}; last lines of {proc.log}:\n"
                    f"{_tail(proc.log)}"
                )

    def add_token_user(self, name: str, groups: Sequence[str] = ()) -> Path:
        """A user authenticated by a static token; returns a kubeconfig for it.

        kube-apiserver 1.20 reads its token file only at start, so adding a user to a
        running control plane restarts kube-apiserver (etcd keeps all state).
        """
        if name in self.users:
            raise ControlPlaneError(f"token user {name!r} already exists")
        self.users[name] = TokenUser(name, secrets.token_urlsafe(32), tuple(groups))
        if "kube-apiserver" in self._processes:
            self._write_token_file()
            self.stop_apiserver()
            self.start_apiserver()
            self._write_kubeconfig(name)
        return self.user_kubeconfig(name)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps all state), as an outage would."""
        self.outages.append((time.time(), None))
        processes.terminate(self._processes.pop("kube-apiserver").popen)

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """Start kube-apiserver again on the same port, and wait until it is ready."""
        self._spawn(self._apiserver())
        self._wait(time.monotonic() + timeout, "kube-apiserver", self._apiserver_ready)
        if self.outages and self.outages[-1][1] is None:
            self.outages[-1] = (self.outages[-1][0], time.time())

    def user_kubeconfig(self, name: str) -> Path:
        """The kubeconfig of token user `name` (written once the control plane runs)."""
        return self.kubeconfig if name == ADMIN else self.workdir / f"kubeconfig-{name}"

    # -- files ----------------------------------------------------------------------

    def _prepare_files(self) -> None:
        for sub in ("etcd", "pki", "logs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "pki" / "sa.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ))
        (self.workdir / "pki" / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
        ))
        self._write_token_file()
        (self.workdir / "pki" / "audit-policy.yaml").write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy",
            "omitStages": ["RequestReceived"], "rules": self._audit_rules()}))

    def _audit_rules(self) -> list[dict[str, Any]]:
        """Writes only, metadata only (no bodies)."""
        return [{"level": "None", "verbs": ["get", "list", "watch"]}, {"level": "Metadata"}]

    def _write_token_file(self) -> None:
        lines = []
        for user in self.users.values():
            groups = f',"{",".join(user.groups)}"' if user.groups else ""
            lines.append(f"{user.token},{user.name},{user.name}-uid{groups}\n")
        path = self.workdir / "pki" / "tokens.csv"
        path.write_text("".join(lines))
        path.chmod(0o600)

    def _write_kubeconfig(self, user: str) -> None:
        path = self.user_kubeconfig(user)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "keywright-local", "cluster": {
                "server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": self.users[user].token}}],
            "contexts": [{"name": f"{user}@keywright-local", "context": {
                "cluster": "keywright-local", "user": user, "namespace": "default"}}],
            "current-context": f"{user}@keywright-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    # -- processes ------------------------------------------------------------------

    def _etcd(self, etcd: str) -> _Process:
        assert self.ports is not None
        client = f"http://{HOST}:{self.ports.etcd_client}"
        peer = f"http://{HOST}:{self.ports.etcd_peer}"
        return self._process("etcd", [
            etcd, "--name", "keywright", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"keywright={peer}",
        ])

    def _apiserver(self) -> _Process:
        assert self.ports is not None
        pki = self.workdir / "pki"
        return self._process("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://{HOST}:{self.ports.etcd_client}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={pki}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--endpoint-reconciler-type=none",
            *([f"--audit-policy-file={pki / 'audit-policy.yaml'}",
               f"--audit-log-path={self.audit_log}"] if self.audit else []),
        ])

    def _controller_manager(self) -> _Process:
        pki = self.workdir / "pki"
        return self._process("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--leader-elect=false",
            f"--controllers={CONTROLLERS}",
            "--secure-port=0",
            "--port=0",
        ])

    def _process(self, name: str, argv: list[str]) -> _Process:
        return _Process(name, argv, self.workdir / "logs" / f"{name}.log")

    def _spawn(self, proc: _Process) -> None:
        proc.popen = processes.spawn(proc.argv, proc.log)
        self._processes[proc.name] = proc
        with (self.workdir / CHILDREN_FILE).open("a") as record:  # for remove_leftovers
            record.write(f"{proc.name} {processes.identity(proc.popen.pid) or ''}\n")

    def _wait(self, deadline: float, name: str, ready: Callable[[], bool]) -> None:
        proc = self._processes[name]
        while True:
            assert proc.popen is not None
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {code} while starting; last lines of "
                    f"{proc.log}:\n{_tail(proc.log)}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} was not ready in time; last lines of {proc.log}:\n{_tail(proc.log)}"
                )
            time.sleep(0.2)

    # -- readiness ------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        assert self.ports is not None
        url = f"http://{HOST}:{self.ports.etcd_client}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(json.load(response).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _apiserver_ready(self) -> bool:
        if not self.ca_file.exists():
            return False
        return self._get("/readyz") == 200

    def _service_accounts_work(self) -> bool:
        """The controller-manager runs once it has made the default ServiceAccount."""
        return self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200

    def _get(self, path: str) -> int:
        return self.fetch(path)[0]

    def fetch(self, path: str) -> tuple[int, bytes]:
        """GET `path` as admin: (status, body); status 0 if nothing answered."""
        request = urllib.request.Request(  # noqa: S310 - our own https URL
            self.server + path,
            headers={"Authorization": f"Bearer {self.users[ADMIN].token}"},
        )
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310
                status: int = response.status
                return status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except (OSError, ssl.SSLError):
            return 0, b""


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
