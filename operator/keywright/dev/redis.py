"""A Redis server on loopback for the shared limits backend: tests, benchmarks and
`keywright dev`.

Owns: starting Debian's redis-server on a free loopback port with a fresh directory,
no persistence (a restart loses everything, as the limits backend must survive) and an
optional password, waiting until it answers, and stopping exactly the process it
started.
Must not: listen anywhere but 127.0.0.1, or touch a Redis it did not start.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from keywright.core import errors
from keywright.dev import apt
from keywright.kits import processes

PACKAGES = ("redis-server",)
HOST = "127.0.0.1"


class RedisError(errors.KeywrightError):
    """redis-server could not start; the message shows its log."""


class RedisServer:
    def __init__(self, *, password: bool = True, port: int | None = None,
                 workdir: Path | None = None) -> None:
        self.password = secrets.token_urlsafe(24) if password else None
        self.port = port or processes.free_port()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="keywright-redis-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
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

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, timeout: float = 10.0) -> None:
        apt.ensure(PACKAGES, print)
        config = self.workdir / "redis.conf"
        lines = [f"bind {HOST}", f"port {self.port}", f"dir {self.workdir}", 'save ""',
                 "appendonly no", "protected-mode yes", "daemonize no"]
        if self.password:
            lines.append(f"requirepass {self.password}")
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)  # the password: never on a command line
        popen = self._popen = processes.spawn(["redis-server", str(config)],
                                              self.workdir / "redis.log")
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

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))
