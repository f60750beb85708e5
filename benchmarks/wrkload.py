"""Shared by the HTTP benchmarks: drive a URL with wrk (Debian's), and an nginx ceiling.

wrk runs on one core and the server under test on the other (`taskset`), over keep-alive
connections. Keys are spread over the requests by a Lua script. For latency "at about
half load", Debian's wrk having no fixed-rate mode, the number of connections is chosen
so that their closed-loop rate is about half the saturating one.
"""

from __future__ import annotations

import hmac
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from keywright.dev import apt
from keywright.kits import processes

SERVER_CORE, LOAD_CORE = "0", "1"


@dataclass
class Result:
    rate: float
    percentiles: dict[str, float]  # "50%" -> milliseconds
    errors: str
    requests: int = 0  # answered in the run

    def line(self) -> str:
        shown = " ".join(f"p{k.rstrip('%')} {v:.3f} ms" for k, v in self.percentiles.items())
        return f"{self.rate:,.0f} req/s; latency {shown}{self.errors}"


def ensure_tools() -> None:
    apt.ensure(["wrk", "nginx"], print)


def lua(keys: Sequence[str], path: str) -> str:
    """A wrk script cycling through `keys` in X-API-Key."""
    listed = ",\n".join(f'  "{key}"' for key in keys)
    return textwrap.dedent("""\
        local keys = {
        %s
        }
        local i = 0
        request = function()
          i = i %% #keys + 1
          return wrk.format("GET", "%s", {["X-API-Key"] = keys[i]})
        end
        """) % (listed, path)


def run(url: str, script: str | None, connections: int, seconds: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["taskset", "-c", LOAD_CORE, "wrk", "--latency", "-t1",
                f"-c{connections}", f"-d{seconds:g}s"]
        if script is not None:
            path = Path(tmp) / "load.lua"
            path.write_text(script)
            path.chmod(0o600)
            argv += ["-s", str(path)]
        out = subprocess.run([*argv, url], capture_output=True, text=True, check=True,
                             timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    percentiles = {m.group(1): _ms(m.group(2), m.group(3))
                   for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: \d+|Socket errors:.*", out)
    done = re.search(r"(\d+) requests in", out)
    return Result(rate, percentiles, f" ({errors.group(0)})" if errors else "",
                  int(done.group(1)) if done else 0)


def half_load(url: str, keys: Sequence[str], path: str, saturating: float,
              seconds: float) -> Result:
    """Latency at about half the saturating rate: the number of keep-alive connections,
    each sending its next request when the last is answered, whose rate comes closest
    to half (short probes with 1, 2, 3, ... connections). Closed-loop, so what is
    measured is the service's latency, not a burst that a millisecond pacing timer makes."""
    script = lua(keys, path)
    return run(url, script, half_load_connections(url, script, saturating), seconds)


def half_load_connections(url: str, script: str, saturating: float) -> int:
    """The number of closed-loop connections whose rate comes closest to half of
    `saturating` (half_load's probes, for a caller that measures the run itself)."""
    target = saturating / 2
    best, best_gap = 1, float("inf")
    for connections in range(1, 33):
        gap = abs(run(url, script, connections, 3).rate - target)
        if gap >= best_gap:
            break
        best, best_gap = connections, gap
    return best


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


class Nginx:
    """nginx with one worker on the server core and a `return 200` location: the most a
    gateway-grade server does on that core, the ceiling for the verifier."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="keywright-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        conf = self.dir / "nginx.conf"
        conf.write_text(textwrap.dedent(f"""\
            daemon off;
            worker_processes 1;
            pid {self.dir}/nginx.pid;
            error_log {self.dir}/error.log;
            events {{ worker_connections 1024; }}
            http {{
              access_log off;
              server {{
                listen 127.0.0.1:{self.port};
                location / {{ return 200 '{{"code":"OK"}}'; }}
              }}
            }}
            """))
        self.process = processes.spawn(
            ["taskset", "-c", SERVER_CORE, "nginx", "-c", str(conf), "-p", str(self.dir)],
            self.dir / "stderr.log")
        wait_http(f"http://127.0.0.1:{self.port}/", 10)
        return self

    def __exit__(self, *exc: object) -> None:
        processes.terminate(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


def get(url: str) -> tuple[int, bytes]:
    """(status, body), an HTTP error status included; OSError if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, timeout: float) -> None:
    """Until anything answers at `url`, whatever its status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Floor:
    """benchmarks.bare_app on the verifier's server stack, pinned to the server core:
    the most any app can do there on that stack, so that verifier / floor says what the
    verifier's own work costs, whatever the machine."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.dir = Path(tempfile.mkdtemp(prefix="keywright-floor-"))
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Floor:
        granian = Path(sys.executable).with_name("granian")
        self.process = processes.spawn(
            ["taskset", "-c", SERVER_CORE, str(granian), "--interface", "asgi",
             "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--no-ws",
             "--host", "127.0.0.1", "--port", str(self.port), "--no-log",
             "benchmarks.bare_app:app"], self.dir / "stderr.log",
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        wait_http(self.url, 20)
        return self

    def __exit__(self, *exc: object) -> None:
        processes.terminate(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


def hmac_line(calls: int = 200_000) -> str:
    """The machine's HMAC-SHA-256 time per call on a key-sized message (the verifier's
    one hash per request), best of 5, for comparing runs of different days."""
    pepper, message = bytes(range(32)), b"kw_" + b"A" * 49
    best = min(timeit.repeat(lambda: hmac.digest(pepper, message, "sha256"),
                             number=calls, repeat=5)) / calls
    return f"calibration: HMAC-SHA-256 {best * 1e6:.2f} us per call on this machine"
