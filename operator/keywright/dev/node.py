"""A real Kubernetes node: the control plane plus kube-scheduler, containerd, kubelet and
kube-proxy, all inside a network namespace this run creates, so that Pods really run.

Owns: the network namespace (a veth pair carrying the node address, the pod bridge, a
route for the Service range; no link out, no default route: nothing in it can reach any
address outside it but its own), the cluster's PKI (a CA, the API server's serving
certificate for the node address, the first Service IP, kubernetes.default.svc and
127.0.0.1, and the API server's client certificate for kubelets), containerd's private
root, state, socket and CNI configuration, the pause image (compiled here: nothing can
be pulled) and the Redis image deploy/ runs (Debian's redis-server with the libraries it
loads, standing in for the shipped redis image), importing images, the relay that makes
the API server reachable from this machine's loopback, and stopping it all so that the
host is left as it was found: Pods deleted while kubelet runs, processes stopped by
recorded PID (containerd's shims, which outlive it by design, found by this run's own
socket path), mounts under the state directory unmounted, the namespace, the kubepods
cgroups and the host paths kubelet and containerd create removed, the host-wide sysctls
kubelet rewrites restored from a record (`host.json`) written at start; and the same for
a run that was killed, by the next one.
One node per machine at a time: a lock in the cache, held for the node's life.
Must not: run anything that uses a non-loopback address outside the namespace, signal a
process it did not start (containerd's shims are found by this run's own socket path),
or remove a host path that existed before it started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keywright.dev import apt, binaries, controlplane, image
from keywright.kits import mounts, processes

Say = Callable[[str], None]

PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "conntrack",
            "iproute2", "util-linux", "gcc", "libc6-dev")
NODE_NAME = "kw-node"
NODE_IP = "10.100.0.1"
NODE_PREFIX = 24
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: the first address of the range
APISERVER_PORT = 6443
PAUSE_IMAGE = "kw.local/pause:3.4"
REDIS_IMAGE = "kw.local/redis:7.0"  # overlays put it in place of deploy/'s redis image
CNI_BIN = Path("/usr/lib/cni")
NODE_USER = f"system:node:{NODE_NAME}"
PROXY_USER = "system:kube-proxy"
SCHEDULER_USER = "system:kube-scheduler"
NODE_CONTROLLERS = "*,-nodeipam,-bootstrapsigner,-tokencleaner,-persistentvolume-binder"
WORKDIR_PREFIX = "keywright-node-"
# kubelet rewrites these host-wide values at start; they are put back at stop
HOST_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic",
                "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
# kubelet 1.20 and containerd 1.6 create these whatever their flags say
HOST_PATHS = (Path("/var/log/pods"), Path("/var/log/containers"), Path("/var/lib/kubelet"),
              Path("/var/lib/cni"), Path("/run/containerd"), Path("/opt/containerd"))
NETNS_DIR = Path("/run/netns")  # `ip netns add` makes it (and mounts it onto itself)
HOST_FILE = "host.json"  # in the state directory: the host as this run found it
LOCK_FILE = "node.lock"  # in the cache: one node at a time on a machine
PAUSE_SOURCE = Path(__file__).with_name("pause.c")
NETNS_FILE = "netns"  # in the state directory: the namespace this run made


class NodeError(controlplane.ControlPlaneError):
    """The node cannot start; the message says which part and shows its log."""


@dataclass(frozen=True)
class HostState:
    """What a node run changes on the host, as it was before: put back at stop, or by
    the next run's clean-up if this one was killed."""

    sysctls: dict[str, str]
    existing: list[str]  # HOST_PATHS that were there already (never removed)
    netns_dir: bool  # whether /run/netns was there already

    @classmethod
    def observe(cls) -> HostState:
        return cls({key: Path("/proc/sys", key).read_text() for key in HOST_SYSCTLS},
                   [str(p) for p in HOST_PATHS if p.exists()], NETNS_DIR.exists())

    def save(self, path: Path) -> None:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(dataclasses.asdict(self)))
        partial.replace(path)  # whole or absent

    @classmethod
    def load(cls, path: Path) -> HostState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def restore(self) -> None:
        for key, value in self.sysctls.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)
        for path in HOST_PATHS:
            if str(path) not in self.existing and path.exists():
                shutil.rmtree(path, ignore_errors=True)
        if not self.netns_dir and NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
            while str(NETNS_DIR) in mounts.points():
                if subprocess.run(["umount", str(NETNS_DIR)], capture_output=True,
                                  check=False).returncode != 0:
                    break
            with contextlib.suppress(OSError):
                NETNS_DIR.rmdir()


def pause_archive(say: Say) -> Path:
    """A docker-archive of the pause image, its static binary compiled once and cached."""
    cache = binaries.cache_root() / "images"
    archive = cache / "pause-3.4.tar"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pause-", dir=cache) as work:
        tree = Path(work) / "rootfs"
        tree.mkdir()
        _run(["gcc", "-Os", "-static", "-o", str(tree / "pause"), str(PAUSE_SOURCE)], "gcc")
        _run(["strip", str(tree / "pause")], "strip")
        image.write_archive(tree, archive, PAUSE_IMAGE, config={"Entrypoint": ["/pause"]})
    say(f"compiled the pause image into {archive}")
    return archive


def redis_archive(say: Say) -> Path:
    """A docker-archive of Debian's redis-server (the binary and the shared libraries
    `ldd` says it loads, nothing else), made once per Redis version and cached."""
    apt.ensure(("redis-server",), say)
    command = shutil.which("redis-server") or "/usr/bin/redis-server"
    binary = Path(command).resolve()  # Debian's is a link to redis-check-rdb
    version = subprocess.run([command, "--version"], capture_output=True, text=True,
                             check=True).stdout.split("v=", 1)[1].split()[0]
    cache = binaries.cache_root() / "images"
    archive = cache / f"redis-{version}.tar"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    linked = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                            check=True).stdout
    libraries = [Path(part) for line in linked.splitlines() for part in line.split()
                 if part.startswith("/")]
    with tempfile.TemporaryDirectory(prefix="redis-", dir=cache) as work:
        tree = Path(work) / "rootfs"
        # named redis-server: Debian's binary picks its mode from the name it runs as
        for source, target in ((binary, Path("usr/local/bin/redis-server")),
                               *((lib, lib.relative_to("/")) for lib in libraries)):
            (tree / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.resolve(), tree / target)
        for empty in ("data", "tmp", "etc"):
            (tree / empty).mkdir(exist_ok=True)
        (tree / "tmp").chmod(0o1777)
        image.write_archive(tree, archive, REDIS_IMAGE, config={
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["redis-server"],
            "WorkingDir": "/data"})
    say(f"made the Redis image {REDIS_IMAGE} ({version}) into {archive}")
    return archive


class Node(controlplane.ControlPlane):
    """A one-node cluster in its own network namespace. Use as a context manager, or
    call start() and stop(). `kubeconfig` (admin) reaches the API server from this
    machine through a relay on loopback; `nsenter()` runs a command inside."""

    def __init__(self, say: Say = print, *, images: tuple[Path, ...] = (),
                 keep_workdir: bool = False, audit: bool = False) -> None:
        apt.ensure(PACKAGES, say)
        cp = binaries.ensure_binaries(say)
        binaries.ensure_binaries(say, binaries.NODE_BINARIES)
        super().__init__(cp, say=say, keep_workdir=keep_workdir, audit=audit)
        self.images = images
        self.netns = f"kw-{uuid.uuid4().hex[:8]}"
        for name, groups in ((NODE_USER, ("system:nodes",)), (PROXY_USER, ()),
                             (SCHEDULER_USER, ())):
            self.users[name] = controlplane.TokenUser(name, secrets.token_urlsafe(32), groups)
        self._host: HostState | None = None
        self._lock: IO[str] | None = None
        self.timings: dict[str, float] = {}

    # -- public surface -------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def nsenter(self, argv: list[str]) -> list[str]:
        """`argv` run inside the node's network namespace (and nothing else changed:
        `ip netns exec` would remount /sys, hiding the cgroups and kubelet's mounts)."""
        return ["nsenter", f"--net={self.netns_path}", *argv]

    def start(self, timeout: float = 180.0) -> None:
        if os.geteuid() != 0:
            raise NodeError("a node needs root (network namespaces, mounts, cgroups)")
        started = time.monotonic()
        binaries.cache_root().mkdir(parents=True, exist_ok=True)
        self._lock = (binaries.cache_root() / LOCK_FILE).open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise NodeError("another Keywright node runs on this machine (it holds "
                            f"{binaries.cache_root() / LOCK_FILE}); stop it first") from None
        try:
            remove_leftovers(self.say)
            self._host = HostState.observe()  # after the clean-up: the host as it should be
            workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            self._given_workdir = self.workdir = workdir
            written = workdir / f".{controlplane.OWNER_FILE}"
            written.write_text(processes.identity(os.getpid()) or "")
            written.rename(workdir / controlplane.OWNER_FILE)  # whole or absent
            self._host.save(workdir / HOST_FILE)
        except BaseException:
            self.stop()
            raise
        try:
            super().start(timeout)  # etcd, kube-apiserver, kube-controller-manager: inside
            deadline = time.monotonic() + timeout
            self._spawn(self._process("kube-scheduler", self.nsenter([
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self._inner_kubeconfig(SCHEDULER_USER)}",
                "--leader-elect=false", "--port=0", "--bind-address=127.0.0.1"])))
            self._start_containerd(deadline)
            for archive in (pause_archive(self.say), *self.images):
                self.import_image(archive)
            self._spawn(self._process("kubelet", self.nsenter(self._kubelet())))
            self._spawn(self._process("kube-proxy", self.nsenter(self._kube_proxy())))
            self._wait(deadline, "kubelet", self._node_ready)
        except BaseException:
            self.stop()
            raise
        self.timings["node ready"] = time.monotonic() - started
        self.say(f"node {NODE_NAME} Ready in {self.timings['node ready']:.0f}s "
                 f"(network namespace {self.netns}, state in {self.workdir})")

    def import_image(self, archive: Path) -> float:
        """Import a docker-archive into the node's containerd; returns the seconds taken."""
        began = time.monotonic()
        _run(["ctr", "-a", str(self.containerd_socket), "-n", "k8s.io", "images", "import",
              str(archive)], f"importing {archive.name}")
        took = time.monotonic() - began
        self.say(f"imported {archive.name} into the node in {took:.1f}s")
        return took

    def forward(self, host: str, port: int, local_port: int = 0, name: str = "") -> int:
        """Make `host:port` inside the namespace reachable at 127.0.0.1:`local_port` on
        this machine (0: any free port); returns the local port. The listening socket is
        bound here and handed to a relay process that runs inside."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((controlplane.HOST, local_port))
        listener.listen(128)
        bound = int(listener.getsockname()[1])
        proc = controlplane._Process(
            name or f"relay-{bound}",
            self.nsenter([sys.executable, "-m", "keywright.dev.relay",
                          str(listener.fileno()), f"{host}:{port}"]),
            self.workdir / "logs" / f"{name or f'relay-{bound}'}.log")
        with proc.log.open("ab") as out:
            proc.popen = subprocess.Popen(
                proc.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),), start_new_session=True,
                preexec_fn=processes.die_with_parent)
        listener.close()  # the relay holds it: if the relay dies, connections are refused
        self._processes[proc.name] = proc
        return bound

    def stop(self) -> None:
        """Stop everything in the order that leaves nothing behind (see the docstring)."""
        if self.workdir != Path():
            if "kubelet" in self._processes and "kube-apiserver" in self._processes:
                with contextlib.suppress(Exception):
                    self._delete_pods()
            for name in ("kube-proxy", "kubelet"):
                self._terminate(name)
            self._stop_containers()
            self._terminate("containerd")
            _teardown(self.workdir, self.netns, self._host)
            for name in reversed(list(self._processes)):
                self._terminate(name)
            mounts.unmount_under(self.workdir)
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = Path()
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    # -- the control plane, moved into the namespace ----------------------------------

    def _prepare_files(self) -> None:
        super()._prepare_files()
        self._make_netns()
        self._make_pki()
        (self.workdir / "resolv.conf").write_text("nameserver 127.0.0.1\n")  # no cluster DNS
        assert self.ports is not None
        self.forward("127.0.0.1", APISERVER_PORT, self.ports.apiserver, name="relay")

    def _etcd(self, etcd: str) -> controlplane._Process:
        proc = super()._etcd(etcd)
        proc.argv = self.nsenter(proc.argv)
        return proc

    def _audit_rules(self) -> list[dict[str, Any]]:
        """Workloads' requests, reads included (which account, from which Pod address),
        and everyone's writes."""
        return [{"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
                *super()._audit_rules()]

    def _etcd_healthy(self) -> bool:
        assert self.ports is not None
        probe = ("import json,sys,urllib.request;"
                 f"r=urllib.request.urlopen('http://127.0.0.1:{self.ports.etcd_client}/health',"
                 "timeout=2);sys.exit(json.load(r).get('health')!='true')")
        return subprocess.run(self.nsenter([sys.executable, "-c", probe]),
                              capture_output=True, check=False).returncode == 0

    def _apiserver(self) -> controlplane._Process:
        assert self.ports is not None
        pki = self.workdir / "pki"
        return self._process("kube-apiserver", self.nsenter([
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=0.0.0.0",
            f"--secure-port={APISERVER_PORT}",
            f"--advertise-address={NODE_IP}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *([f"--audit-policy-file={pki / 'audit-policy.yaml'}",
               f"--audit-log-path={self.audit_log}"] if self.audit else []),
        ]))

    def _controller_manager(self) -> controlplane._Process:
        pki = self.workdir / "pki"
        return self._process("kube-controller-manager", self.nsenter([
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self._inner_kubeconfig(controlplane.ADMIN)}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--leader-elect=false",
            f"--controllers={NODE_CONTROLLERS}",
            "--secure-port=0",
            "--port=0",
        ]))

    def _inner_kubeconfig(self, user: str) -> Path:
        """A kubeconfig for a component inside the namespace (API server on its port)."""
        path = self.workdir / f"kubeconfig-inner-{user.replace(':', '-')}"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "node", "cluster": {
                "server": f"https://127.0.0.1:{APISERVER_PORT}",
                "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": self.users[user].token}}],
            "contexts": [{"name": "node", "context": {"cluster": "node", "user": user}}],
            "current-context": "node",
        }, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- network ----------------------------------------------------------------------

    def _make_netns(self) -> None:
        (self.workdir / NETNS_FILE).write_text(self.netns)  # for a later clean-up
        _run(["ip", "netns", "add", self.netns], "ip netns add")
        inside = ["ip", "-n", self.netns]
        for argv in (
            [*inside, "link", "set", "lo", "up"],
            # no dummy driver in this kernel: both ends of a veth pair stay inside
            [*inside, "link", "add", "kwnode0", "type", "veth", "peer", "name", "kwnode1"],
            [*inside, "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", "kwnode0"],
            [*inside, "link", "set", "kwnode0", "up"],
            [*inside, "link", "set", "kwnode1", "up"],
            # the API server is a process of the node, not a Pod: to reach a Service (the
            # webhooks) by its ClusterIP it needs a route for the Service range
            [*inside, "route", "add", SERVICE_CIDR, "dev", "kwnode0"],
        ):
            _run(argv, " ".join(argv[3:6]))
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.route_localnet=1"):
            _run(self.nsenter(["sysctl", "-qw", key]), f"sysctl {key}")

    # -- PKI --------------------------------------------------------------------------

    def _make_pki(self) -> None:
        pki = self.workdir / "pki"
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keywright-node-ca")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=True, key_cert_sign=True, crl_sign=True,
                  content_commitment=False, key_encipherment=False, data_encipherment=False,
                  key_agreement=False, encipher_only=False, decipher_only=False),
                  critical=True)
              .sign(ca_key, hashes.SHA256()))
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

        def issue(stem: str, common: str, org: str | None, sans: list[x509.GeneralName],
                  usage: x509.ObjectIdentifier) -> None:
            key = ec.generate_private_key(ec.SECP256R1())
            attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
            if org:
                attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
            builder = (x509.CertificateBuilder().subject_name(x509.Name(attrs))
                       .issuer_name(ca_name).public_key(key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(days=30))
                       .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans),
                                                critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_path = pki / f"{stem}.key"
            key_path.write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            key_path.chmod(0o600)

        issue("apiserver", "kube-apiserver", None, [
            *(x509.IPAddress(ipaddress.ip_address(a)) for a in (NODE_IP, SERVICE_IP,
                                                               "127.0.0.1")),
            *(x509.DNSName(n) for n in ("kubernetes", "kubernetes.default",
                                        "kubernetes.default.svc",
                                        "kubernetes.default.svc.cluster.local",
                                        "localhost")),
        ], ExtendedKeyUsageOID.SERVER_AUTH)
        issue("kubelet-client", "kube-apiserver-kubelet-client", "system:masters", [],
              ExtendedKeyUsageOID.CLIENT_AUTH)

    # -- containerd, kubelet, kube-proxy ----------------------------------------------

    def _start_containerd(self, deadline: float) -> None:
        base = self.workdir / "containerd"
        (self.workdir / "cni").mkdir()
        (self.workdir / "cni" / "10-keywright.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "keywright", "plugins": [{
                "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                "hairpinMode": True, "ipam": {
                    "type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                    # the bridge is the Pods' way to everything else (the node, Services)
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(self.workdir / "cni-ipam")}}]}))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = "\n".join([
            "version = 2",
            f'root = "{base / "root"}"',
            f'state = "{base / "state"}"',
            "[grpc]",
            f'  address = "{self.containerd_socket}"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{base / "opt"}"',  # not /opt/containerd
            f"[{cri}]",
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            "  netns_mounts_under_state_dir = true",
            "  enable_selinux = false",
            # root here cannot lower oom_score_adj (no CAP_SYS_RESOURCE): without this
            # every sandbox fails with "can't get final child's PID from pipe"
            "  restrict_oom_score_adj = true",
            '  stream_server_address = "127.0.0.1"',
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            f'  Root = "{base / "runc"}"',
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN}"',
            f'  conf_dir = "{self.workdir / "cni"}"',
            "",
        ])
        base.mkdir()
        (base / "config.toml").write_text(config)
        self._spawn(self._process("containerd", self.nsenter(
            ["containerd", "--config", str(base / "config.toml")])))
        self._wait(deadline, "containerd", self.containerd_socket.exists)

    def _kubelet(self) -> list[str]:
        root = self.workdir / "kubelet"
        root.mkdir()
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"x509": {"clientCAFile": str(self.ca_file)},
                               "webhook": {"enabled": True},
                               "anonymous": {"enabled": False}},
            "authorization": {"mode": "Webhook"},
            "resolvConf": str(self.workdir / "resolv.conf"),
            "clusterDNS": ["127.0.0.1"],  # none: Pods' lookups fail at once, quietly
            "imageGCHighThresholdPercent": 100,  # imported images are never collected
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
            "serializeImagePulls": False,
        }))
        return [
            str(self.bin_dir / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={self._inner_kubeconfig(NODE_USER)}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{self.containerd_socket}",
            f"--root-dir={root}",
            f"--cert-dir={root / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
        ]

    def _kube_proxy(self) -> list[str]:
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "hostnameOverride": NODE_NAME,
            "clientConnection": {"kubeconfig": str(self._inner_kubeconfig(PROXY_USER))},
            "conntrack": {"maxPerCore": 0, "min": 0},  # leave the host's table alone
        }))
        return [str(self.bin_dir / "kube-proxy"), f"--config={config}"]

    def _node_ready(self) -> bool:
        node = self.get_json(f"/api/v1/nodes/{NODE_NAME}")
        conditions = (node or {}).get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in conditions)

    def get_json(self, path: str) -> dict[str, Any] | None:
        """GET `path` from the API server as admin; None unless 200."""
        status, body = self.fetch(path)
        if status != 200:
            return None
        loaded: dict[str, Any] = json.loads(body)
        return loaded

    # -- stopping ---------------------------------------------------------------------

    def _delete_pods(self, timeout: float = 30.0) -> None:
        """Stop the controllers that would make new Pods, then delete every Pod while
        kubelet still runs, so that it tears down their networks and volumes."""
        self._terminate("kube-controller-manager")
        self._terminate("kube-scheduler")
        kubectl = ["kubectl", f"--kubeconfig={self.kubeconfig}"]
        subprocess.run([*kubectl, "delete", "pods", "--all", "--all-namespaces",
                        "--grace-period=1", "--wait=false"], capture_output=True, check=False,
                       timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.get_json("/api/v1/pods")
            if pods is not None and not pods.get("items"):
                return
            time.sleep(0.5)

    def _stop_containers(self) -> None:
        if "containerd" not in self._processes or not self.containerd_socket.exists():
            return
        ctr = ["ctr", "-a", str(self.containerd_socket), "-n", "k8s.io"]
        listed = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True,
                                check=False, timeout=30)
        for task in listed.stdout.split():
            subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", task],
                           capture_output=True, check=False, timeout=30)
            subprocess.run([*ctr, "tasks", "delete", "-f", task], capture_output=True,
                           check=False, timeout=30)

    def _terminate(self, name: str) -> None:
        proc = self._processes.pop(name, None)
        if proc is not None:
            processes.terminate(proc.popen, grace=10.0)


def remove_leftovers(say: Say, base: Path | None = None) -> list[Path]:
    """Clean up after node runs that were killed before they could (SIGKILL, a power
    cut). Their own processes died with them, but containerd's shims and the containers
    under them, the mounts under their state directory, their network namespace and
    what kubelet changed on the host outlive them. A run counts as dead when the process
    recorded in its owner file is gone; callers hold the node lock, so no live run is
    half-way through starting."""
    removed = []
    for path in sorted((base or Path(tempfile.gettempdir())).glob(f"{WORKDIR_PREFIX}*")):
        owner = path / controlplane.OWNER_FILE
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            recorded = owner.read_text().strip() if owner.exists() else ""
            if recorded and processes.identity(int(recorded.split()[0])) == recorded:
                continue  # its run is alive
            netns = (path / NETNS_FILE).read_text().strip() \
                if (path / NETNS_FILE).exists() else ""
        except (OSError, ValueError):
            continue
        _teardown(path, netns, HostState.load(path / HOST_FILE))
        mounts.unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)
        say(f"removed {path} and what it left on the host, left by a node run that was "
            "killed")
        removed.append(path)
    return removed


def _teardown(workdir: Path, netns: str, host: HostState | None) -> None:
    """What outlives a run's own processes: its containers (by its own runc state, so no
    other container is touched), its shims, its namespace, the kubepods cgroups, and
    the host as it was (`host`)."""
    runc = ["runc", "--root", str(workdir / "containerd" / "runc" / "k8s.io")]
    listed = subprocess.run([*runc, "list", "-q"], capture_output=True, text=True,
                            check=False)
    for container in listed.stdout.split() if listed.returncode == 0 else []:
        subprocess.run([*runc, "delete", "--force", container], capture_output=True,
                       check=False)
    _kill_shims(workdir / "containerd" / "containerd.sock")
    mounts.unmount_under(workdir)
    if netns.startswith("kw-") and (NETNS_DIR / netns).exists():
        subprocess.run(["ip", "netns", "delete", netns], check=False, capture_output=True)
    _remove_cgroups("kubepods")
    if host is not None:
        host.restore()


def _kill_shims(socket_path: Path) -> None:
    """containerd's shims outlive it by design; a run's shims name its socket on their
    command line, which no other process on the machine can."""
    marker = str(socket_path).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdecimal():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in argv and marker in argv:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), 9)


def _remove_cgroups(name: str) -> None:
    """Remove the `name` cgroup (and what is under it) in every v1 hierarchy."""
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return
    for hierarchy in root.iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        for directory in sorted(_directories(top), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()


def _directories(top: Path) -> Iterator[Path]:
    yield top
    for directory, subdirs, _ in os.walk(top):
        for sub in subdirs:
            yield Path(directory) / sub


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"{what} failed (exit {result.returncode}): "
                        f"{(result.stdout + result.stderr).strip()[-2000:]}")
