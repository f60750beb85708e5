"""Which HTTP server should carry the verifier? The same ASGI app under each, measured.

    .venv/bin/python -m benchmarks.verify_servers [--keys 10000] [--seconds 10]

Builds the verifier's real ASGI app (`keywright.verifier.app.Verifier`, audit lines on,
written to a file) over an index of N keys, with no cluster (the index is filled
directly: the watch is not on the request path), and serves it on core 0 under uvicorn
(httptools + uvloop, the settings `keywright verifier` uses) and under granian (ASGI,
one worker, one runtime thread). wrk drives valid keys from core 1, flat out and then
at about half that rate for latency. Also serves nginx `return 200` on core 0 as the
ceiling. Prints rates, latency percentiles and the ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from granian import Granian
from granian.constants import Interfaces, Loops

from benchmarks import wrkload
from keywright.core import hashing, tokens
from keywright.kits import processes
from keywright.verifier import app, index
from keywright.verifier import server as server_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--serve", choices=["uvicorn", "granian"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.data)
        return
    wrkload.ensure_tools()
    with tempfile.TemporaryDirectory(prefix="keywright-bench-") as tmp:
        data = Path(tmp)
        pepper = secrets.token_bytes(32)
        peppers = hashing.Peppers("v1", {"v1": pepper})
        plaintexts = [tokens.generate("kw") for _ in range(args.keys)]
        (data / "pepper").write_bytes(pepper)
        (data / "apikeys.json").write_text(json.dumps([
            _apikey(i, key, peppers) for i, key in enumerate(plaintexts)]))
        script = wrkload.lua(plaintexts[:1000], "/verify?scope=Reviews.Read")
        with wrkload.Nginx(processes.free_port()) as nginx:
            ceiling = wrkload.run(f"http://127.0.0.1:{nginx.port}/", None,
                                  args.connections, args.seconds)
        print(f"nginx return 200 (ceiling): {ceiling.line()}")
        for server in ("uvicorn", "granian"):
            port = processes.free_port()
            child = processes.spawn(
                ["taskset", "-c", wrkload.SERVER_CORE, sys.executable, "-m",
                 "benchmarks.verify_servers", "--serve", server, "--port", str(port),
                 "--data", str(data)], data / f"{server}.log")
            try:
                wrkload.wait_http(f"http://127.0.0.1:{port}/healthz", 60)
                url = f"http://127.0.0.1:{port}/verify?scope=Reviews.Read"
                found = wrkload.run(url, script, args.connections, args.seconds)
                half = wrkload.half_load(url, plaintexts[:1000], "/verify?scope=Reviews.Read",
                                         found.rate, args.seconds)
            finally:
                processes.terminate(child)
            print(f"{server:>8} (valid keys): {found.line()}; "
                  f"ratio to nginx {found.rate / ceiling.rate:.2f}")
            print(f"{server:>8} at half load: {half.line()}")


def serve(server: str, port: int, data: Path) -> None:
    if server == "uvicorn":  # the settings a careful uvicorn deployment would use
        uvicorn.run(make_app(data), host="127.0.0.1", port=port, loop="uvloop",
                    http="httptools", lifespan="off", access_log=False, proxy_headers=False,
                    log_level="warning", server_header=False, date_header=False,
                    timeout_keep_alive=75)
    else:  # as `keywright verifier` runs it: one granian worker builds the app itself
        os.environ["KEYWRIGHT_BENCH_DATA"] = str(data)
        Granian("benchmarks.verify_servers:make_app", factory=True, address="127.0.0.1",
                port=port, interface=Interfaces.ASGI, workers=1, runtime_threads=1,
                loop=Loops.uvloop, log_access=False).serve()


def make_app(data: Path | None = None) -> app.Verifier:
    data = data or Path(os.environ["KEYWRIGHT_BENCH_DATA"])
    server_module.audit_to_stdout()  # the child's stdout is a log file
    peppers = hashing.Peppers("v1", {"v1": (data / "pepper").read_bytes()})
    keys = index.Index()
    keys.replace_all(json.loads((data / "apikeys.json").read_text()))
    return app.Verifier(keys, lambda: peppers, lambda: True, lambda: 0.0)


def _apikey(i: int, key: str, peppers: hashing.Peppers) -> dict[str, Any]:
    return {"metadata": {"namespace": "bench", "name": f"key-{i}"},
            "spec": {"expiration": "90d", "scopes": ["Reviews.Write"]},
            "status": {"phase": "Active", "hash": hashing.digest(key, peppers), "revision": 1,
                       "lastCharacters": key[-4:], "expiresAt": "2099-01-01T00:00:00Z"}}


if __name__ == "__main__":
    main()
