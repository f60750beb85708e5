"""Child processes and loopback ports: start, watch and stop exactly what we started.

Owns: spawning children that die with their parent (even when it is SIGKILLed), stopping
them by PID, telling a live process from a zombie, and free or busy loopback ports.
Must not: signal a process it did not start.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class PortBusy(RuntimeError):
    """The port is taken; the message names its role and number."""


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise PortBusy(
                f"{what} port {port} on {HOST} is already in use ({exc.strerror}); "
                "stop whatever listens there or choose other ports"
            ) from None


def spawn(argv: Sequence[str], log: Path,
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child that writes to `log` and dies with us, even if we are SIGKILLed."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not them
            preexec_fn=die_with_parent,
        )


def terminate(popen: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps the child."""
    if popen is None or popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(grace)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def die_with_parent() -> None:
    """In the child before exec: have the kernel SIGKILL it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def identity(pid: int) -> str | None:
    """`<pid> <start time>`: names one process, even after its PID is used again; None
    if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rpartition(')')[2].split()[19]}"  # field 22: starttime


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie awaiting its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
