"""`keywright verifier` under wrk: verifications per second on one core, and latency.

    .venv/bin/python -m benchmarks.verify_http [--keys 10000] [--seconds 15]

Starts a local control plane, writes N ApiKeys with their hashes in status (as the
operator would; the verifier cannot tell) and the pepper Secret, then runs the real
`keywright verifier` pinned to core 0, waits until /readyz reports all N indexed, and
drives /verify with wrk from core 1 over keep-alive connections: valid keys (1,000
different ones, with a scope requirement), then unknown but well-formed keys, then valid
keys at about half the valid rate for latency percentiles. In the same run, nginx
`return 200` on core 0 gives the ceiling. Audit lines are on, written to a file.
Targets: >= 15,000 verifications/s, p99 <= 2 ms at half load. Prints figures with their
ratios; never passes or fails.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import wrkload
from keywright import kube
from keywright.core import hashing, names, tokens
from keywright.dev import binaries, controlplane, install
from keywright.kits import processes

NAMESPACE = "bench"
RATE_TARGET, P99_TARGET_MS = 15_000, 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    wrkload.ensure_tools()

    plane = controlplane.ControlPlane(binaries.ensure_binaries(print))
    verifier = None
    try:
        plane.start()
        admin = kube.Kube.connect(str(plane.kubeconfig))
        install.bootstrap(admin, [NAMESPACE])
        peppers = hashing.Peppers("v1", {"v1": secrets.token_bytes(32)})
        admin.create_secret(names.DEFAULT_NAMESPACE, {
            "metadata": {"name": names.PEPPER_SECRET}, "type": "Opaque",
            "data": kube.Kube.secret_data(peppers.to_data())})
        plaintexts = _write_keys(admin, peppers, args.keys)

        logs = plane.workdir / "logs"
        port = processes.free_port()
        url = f"http://127.0.0.1:{port}"
        with (logs / "audit.log").open("ab") as out, (logs / "verifier.log").open("ab") as err:
            verifier = subprocess.Popen(
                ["taskset", "-c", wrkload.SERVER_CORE, sys.executable, "-m", "keywright.cli",
                 "verifier", "--kubeconfig", str(plane.kubeconfig), "--host", "127.0.0.1",
                 "--port", str(port), "--log-level", "WARNING"],
                stdout=out, stderr=err, preexec_fn=processes.die_with_parent)
        started = time.monotonic()
        while _indexed(url) < args.keys:
            if time.monotonic() - started > 120:
                raise SystemExit(f"verifier did not index {args.keys} keys; see {logs}")
            time.sleep(0.2)
        print(f"verifier indexed {args.keys:,} keys {time.monotonic() - started:.1f} s "
              "after start")

        path = "/verify?scope=Reviews.Read"
        valid = wrkload.run(url + path, wrkload.lua(plaintexts[:1000], path),
                            args.connections, args.seconds)
        unknown = [tokens.generate("kw") for _ in range(1000)]
        invalid = wrkload.run(url + path, wrkload.lua(unknown, path), args.connections,
                              args.seconds)
        half = wrkload.half_load(url + path, plaintexts[:1000], path, valid.rate,
                                 args.seconds)
        with wrkload.Nginx(processes.free_port()) as nginx:
            ceiling = wrkload.run(f"http://127.0.0.1:{nginx.port}/", None,
                                  args.connections, args.seconds)
        audit_lines = sum(1 for _ in (logs / "audit.log").open())

        print(f"valid keys:   {valid.line()}; target {RATE_TARGET:,}/s, ratio "
              f"{valid.rate / RATE_TARGET:.2f}; ratio to nginx {valid.rate / ceiling.rate:.2f}")
        print(f"unknown keys: {invalid.line()}; ratio to nginx "
              f"{invalid.rate / ceiling.rate:.2f}")
        p99 = half.percentiles.get("99", float("nan"))
        print(f"half load:    {half.line()}; p99 target {P99_TARGET_MS} ms, ratio "
              f"{p99 / P99_TARGET_MS:.2f}")
        print(f"nginx return 200 on the same core (ceiling): {ceiling.line()}")
        print(f"audit lines written: {audit_lines:,}")
    finally:
        processes.terminate(verifier)
        plane.stop()


def _write_keys(admin: kube.Kube, peppers: hashing.Peppers, count: int) -> list[str]:
    """N ApiKeys with a hash in status, as the operator leaves them; returns the keys."""
    plaintexts = [tokens.generate("kw") for _ in range(count)]
    started = time.monotonic()

    def write(i: int) -> None:
        name = f"key-{i:05d}"
        install.create_apikey(admin, NAMESPACE, {
            "apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.KIND,
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"expiration": "90d", "scopes": ["Reviews.Write"]}})
        key = plaintexts[i]
        admin.patch_apikey_status(NAMESPACE, name, {
            "phase": "Active", "revision": 1, "hash": hashing.digest(key, peppers),
            "lastCharacters": tokens.last_characters(key), "prefix": "kw",
            "expiresAt": "2099-01-01T00:00:00Z"})
        if i and i % 1000 == 0:
            print(f"  {i:,}/{count:,} ApiKeys written ({time.monotonic() - started:.0f} s)",
                  flush=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(count)))
    print(f"wrote {count:,} ApiKeys in {time.monotonic() - started:.1f} s")
    return plaintexts


def _indexed(url: str) -> int:
    try:
        _, body = wrkload.get(url + "/readyz")
    except OSError:
        return -1
    found = json.loads(body)
    return int(found["keysIndexed"]) if found.get("ready") else -1


if __name__ == "__main__":
    main()
