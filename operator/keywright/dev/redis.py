"""Redis servers on loopback for the shared limits backend: tests, benchmarks and
`keywright dev`; also the two replicated topologies the backend speaks, Sentinel and
Redis Cluster, for the tests.

Owns: starting Debian's redis-server on a free loopback port with a fresh directory,
no persistence (a restart loses everything, as the limits backend must survive) and an
optional password, waiting until it answers, and stopping exactly the process it
started; a master, a replica and sentinels watching them (`RedisSentinel`, with a
failover on request); three cluster masters sharing the slots (`RedisCluster`); one
command on a loopback connection (`command`), for both and for tests.
Must not: listen anywhere but 127.0.0.1, put a password anywhere but a file only we can
read (never a command line or a log), or touch a Redis it did not start.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Self

from keywright.core import errors
from keywright.dev import apt
from keywright.kits import processes

PACKAGES = ("redis-server",)
HOST = "127.0.0.1"
SLOTS = 16384  # Redis Cluster's hash slots

Reply = str | int | None | list["Reply"]


class RedisError(errors.KeywrightError):
    """redis-server could not start, or answered a command with an error; the message
    shows its log or the error (never a password)."""


class _Group:
    """One or several servers in one directory, started together; the directory is
    removed on exit."""

    workdir: Path

    def start(self, timeout: float = 20.0) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)  # no __exit__ to do it
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisServer(_Group):
    """One redis-server (or, with `sentinel`, one redis-sentinel). `password`: True for a
    new random one, False for none, or the one to use; `extra`: more configuration lines
    (they go to the 0600 config file, so they may hold a password)."""

    def __init__(self, *, password: bool | str = True, port: int | None = None,
                 workdir: Path | None = None, extra: Sequence[str] = (),
                 sentinel: bool = False) -> None:
        self.password = (password if isinstance(password, str)
                         else secrets.token_urlsafe(24) if password else None)
        self.port = port or processes.free_port()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="keywright-redis-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # ours alone: Sentinel rewrites its config file, and a failover the data nodes',
        # with the umask's mode, passwords and all
        self.workdir.chmod(0o700)
        self.extra, self.sentinel = tuple(extra), sentinel
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/0"

    @property
    def address(self) -> str:
        """The URL without the password (which `password_file` holds)."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def password_file(self) -> Path:
        path = self.workdir / "password"
        if not path.exists():
            path.write_text(self.password or "")
            path.chmod(0o600)
        return path

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self, timeout: float = 10.0) -> None:
        apt.ensure(PACKAGES, print)
        config = self.workdir / "redis.conf"
        lines = [f"bind {HOST}", f"port {self.port}", f"dir {self.workdir}",
                 "protected-mode yes", "daemonize no"]
        if not self.sentinel:
            lines += ['save ""', "appendonly no"]
        if self.password:
            lines.append(f"requirepass {self.password}")
        config.write_text("\n".join([*lines, *self.extra]) + "\n")
        config.chmod(0o600)  # the password: never on a command line
        argv = ["redis-server", str(config), *(["--sentinel"] if self.sentinel else [])]
        popen = self._popen = processes.spawn(argv, self.workdir / "redis.log")
        deadline = time.monotonic() + timeout
        while not self._answers():
            if popen.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RedisError(f"redis-server did not start on {HOST}:{self.port}:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        processes.terminate(self._popen)
        self._popen = None

    def command(self, *args: str, timeout: float = 2.0) -> Reply:
        """One command to this server, authenticated when it has a password."""
        return command(self.port, *args, password=self.password, timeout=timeout)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))


def command(port: int, *args: str, password: str | None = None,
            timeout: float = 2.0) -> Reply:
    """One command on a fresh connection to 127.0.0.1:`port` (AUTH first with
    `password`): its reply as str, int, None or a list of those. An error reply raises
    RedisError naming the command's first word only (the arguments may be secret)."""
    commands = ([("AUTH", password)] if password else []) + [args]
    payload = b"".join(
        b"*%d\r\n" % len(words) + b"".join(
            b"$%d\r\n%s\r\n" % (len(word.encode()), word.encode()) for word in words)
        for words in commands)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        replies = sock.makefile("rb")
        result: Reply = None
        for words in commands:
            result = _read(replies, words[0])
    return result


def _read(stream: BinaryIO, what: str) -> Reply:
    line = stream.readline()
    if not line:
        raise RedisError(f"{what}: the connection closed before a reply")
    kind, body = line[:1], line[1:].rstrip(b"\r\n").decode(errors="replace")
    if kind == b"+":
        return body
    if kind == b"-":
        raise RedisError(f"{what}: {body}")
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        return stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read(stream, what) for _ in range(size)]
    raise RedisError(f"{what}: unexpected reply {line[:40]!r}")


def info(reply: Reply) -> dict[str, str]:
    """An INFO reply's `name:value` lines."""
    assert isinstance(reply, str)
    return dict(line.split(":", 1) for line in reply.splitlines() if ":" in line)


def _wait(check: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, RedisError) as exc:
            last = exc
        time.sleep(0.05)
    raise RedisError(f"{what} not within {timeout:.0f}s" + (f" ({last})" if last else ""))


class RedisSentinel(_Group):
    """A master and one replica (sharing one password) watched by `count` sentinels as
    service `SERVICE`: what a `redis+sentinel://` URL names. `sentinel_password`: the
    sentinels want the data nodes' password too (`?sentinel_auth=yes`).

    Owns: its processes (each a RedisServer, in one directory), waiting until the
    replica has synced and every sentinel knows it, and a failover on request.
    Must not: listen anywhere but 127.0.0.1, or touch a Redis it did not start.
    """

    SERVICE = "keywright"

    def __init__(self, *, count: int = 2, sentinel_password: bool = False,
                 workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="keywright-sentinel-"))
        self.password = secrets.token_urlsafe(24)
        self.sentinel_password = sentinel_password
        master_port = processes.free_port()
        # a replica syncs at once, not after diskless replication's default 5 s wait
        replicated = [f"masterauth {self.password}", "repl-diskless-sync-delay 0"]
        self.data = [
            RedisServer(password=self.password, port=master_port,
                        workdir=self.workdir / "data-0", extra=replicated),
            RedisServer(password=self.password, workdir=self.workdir / "data-1",
                        extra=[*replicated, f"replicaof {HOST} {master_port}"]),
        ]
        watch = [f"sentinel monitor {self.SERVICE} {HOST} {master_port} 1",
                 f"sentinel auth-pass {self.SERVICE} {self.password}",
                 f"sentinel down-after-milliseconds {self.SERVICE} 1000",
                 f"sentinel failover-timeout {self.SERVICE} 10000"]
        if sentinel_password:
            watch.append(f"sentinel sentinel-pass {self.password}")
        self.sentinels = [
            RedisServer(password=self.password if sentinel_password else False,
                        workdir=self.workdir / f"sentinel-{i}", extra=watch, sentinel=True)
            for i in range(count)]

    @property
    def address(self) -> str:
        """The URL without the password (which `password_file` holds)."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        auth = "?sentinel_auth=yes" if self.sentinel_password else ""
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0{auth}"

    @property
    def password_file(self) -> Path:
        return self.data[0].password_file

    def start(self, timeout: float = 20.0) -> None:
        try:
            for node in self.data:
                node.start()
            _wait(lambda: info(self.data[1].command("INFO", "replication"))
                  .get("master_link_status") == "up", "the replica's sync", timeout)
            for sentinel in self.sentinels:
                sentinel.start()

            def replica_seen() -> bool:
                return all(s.command("SENTINEL", "REPLICAS", self.SERVICE)
                           for s in self.sentinels)
            _wait(replica_seen, "the sentinels seeing the replica", timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()

    def master(self, sentinel: int = 0) -> RedisServer | None:
        """The data node a sentinel calls master now."""
        reply = self.sentinels[sentinel].command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                 self.SERVICE)
        port = reply[1] if isinstance(reply, list) else None
        return next((node for node in self.data if str(node.port) == port), None)

    def failover(self, timeout: float = 20.0) -> RedisServer:
        """SENTINEL FAILOVER: the replica becomes master, the master its replica. Returns
        the new master once every sentinel names it and it accepts writes."""
        old = self.master()
        new = next(node for node in self.data if node is not old)
        self.sentinels[0].command("SENTINEL", "FAILOVER", self.SERVICE)

        def switched() -> bool:
            return all(self.master(i) is new for i in range(len(self.sentinels))) \
                and info(new.command("INFO", "replication")).get("role") == "master"
        _wait(switched, "the failover", timeout)
        return new


class RedisCluster(_Group):
    """Three cluster masters, no replicas, the 16384 slots split between them: what a
    `redis+cluster://` URL names. One password for all, in each node's 0600 config.

    Owns: the three processes (each a RedisServer with its own cluster bus port), joining
    them (CLUSTER ADDSLOTSRANGE and MEET, as `redis-cli --cluster create` does, without a
    password on its command line) and waiting until every node says the cluster is ok;
    restarting one node (empty, as after a crash: no counters, no scripts).
    Must not: listen anywhere but 127.0.0.1, or touch a Redis it did not start.
    """

    def __init__(self, *, size: int = 3, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="keywright-cluster-"))
        self.password = secrets.token_urlsafe(24)
        self.buses = [processes.free_port() for _ in range(size)]  # the cluster bus ports
        self.nodes = [
            RedisServer(password=self.password, workdir=self.workdir / f"node-{i}",
                        extra=["cluster-enabled yes", "cluster-config-file nodes.conf",
                               f"cluster-port {self.buses[i]}",
                               "cluster-node-timeout 2000", f"masterauth {self.password}"])
            for i in range(size)]

    @property
    def address(self) -> str:
        """The URL without the password (which `password_file` holds)."""
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    @property
    def password_file(self) -> Path:
        return self.nodes[0].password_file

    def start(self, timeout: float = 20.0) -> None:
        try:
            for node in self.nodes:
                node.start()
            share = -(-SLOTS // len(self.nodes))
            for i, node in enumerate(self.nodes):
                node.command("CLUSTER", "SET-CONFIG-EPOCH", str(i + 1))
                node.command("CLUSTER", "ADDSLOTSRANGE", str(i * share),
                             str(min(SLOTS, (i + 1) * share) - 1))
            for node in self.nodes[1:]:
                node.command("CLUSTER", "MEET", HOST, str(self.nodes[0].port),
                             str(self.buses[0]))
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ok(self, timeout: float = 20.0) -> None:
        def ok() -> bool:
            return all(info(n.command("CLUSTER", "INFO")).get("cluster_state") == "ok"
                       and info(n.command("CLUSTER", "INFO")).get("cluster_known_nodes")
                       == str(len(self.nodes)) for n in self.nodes)
        _wait(ok, "the cluster's state ok on every node", timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def owner(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot."""
        slot = self.nodes[0].command("CLUSTER", "KEYSLOT", key)
        ranges = self.nodes[0].command("CLUSTER", "SLOTS")
        assert isinstance(ranges, list)
        assert isinstance(slot, int)
        for entry in ranges:
            assert isinstance(entry, list)
            first, last, primary = entry[0], entry[1], entry[2]
            assert isinstance(first, int)
            assert isinstance(last, int)
            assert isinstance(primary, list)
            if first <= slot <= last:
                return next(n for n in self.nodes if n.port == primary[1])
        raise RedisError(f"no node serves slot {slot}")

    def restart(self, node: RedisServer) -> None:
        """Stop `node` and start it again, empty (no persistence), as after a crash; it
        keeps its identity and slots (nodes.conf). Returns once the cluster is ok."""
        node.stop()
        node.start()
        self.wait_ok()
