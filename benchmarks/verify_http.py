"""`keywright verifier` under wrk: verifications per second on one core, and latency.

    .venv/bin/python -m benchmarks.verify_http [--keys 10000] [--seconds 15]

Starts a local control plane, writes N ApiKeys with their hashes in status (as the
operator would; the verifier cannot tell) and the pepper Secret, then runs the real
`keywright verifier` pinned to core 0, waits until /readyz reports all N indexed, and
drives /verify with wrk from core 1 over keep-alive connections: valid keys (1,000
different ones, with a scope requirement), then unknown but well-formed keys, then valid
keys at about half the valid rate for latency percentiles. In the same run, nginx
`return 200` on core 0 gives the ceiling, and a bare app on the verifier's own
server stack (benchmarks/bare_app.py) the framework's floor; the machine's HMAC-SHA-256
time per call is printed too, so that runs of different days compare. Audit lines are
on, written to a file. Targets: >= 15,000 verifications/s, p99 <= 2 ms at half load.
Prints figures with their ratios; never passes or fails.
"""

from __future__ import annotations

import argparse

from benchmarks import wrkload
from benchmarks.verifier_plane import Bench
from keywright.core import tokens
from keywright.kits import processes

RATE_TARGET, P99_TARGET_MS = 15_000, 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    wrkload.ensure_tools()

    with Bench() as bench:
        plaintexts = bench.write_keys(args.keys)
        verifier = bench.start_verifier()
        verifier.wait_indexed(args.keys)
        url = verifier.url

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
        with wrkload.Floor(processes.free_port()) as bare:
            floor = wrkload.run(bare.url, None, args.connections, args.seconds)
        audit_lines = sum(1 for _ in (bench.logs / "audit.log").open())

        print(f"valid keys:   {valid.line()}; target {RATE_TARGET:,}/s, ratio "
              f"{valid.rate / RATE_TARGET:.2f}; ratio to nginx {valid.rate / ceiling.rate:.2f}")
        print(f"unknown keys: {invalid.line()}; ratio to nginx "
              f"{invalid.rate / ceiling.rate:.2f}")
        p99 = half.percentiles.get("99", float("nan"))
        print(f"half load:    {half.line()}; p99 target {P99_TARGET_MS} ms, ratio "
              f"{p99 / P99_TARGET_MS:.2f}")
        print(f"nginx return 200 on the same core (ceiling): {ceiling.line()}")
        print(f"a bare app on the verifier's server stack, same core (the framework's "
              f"floor): {floor.line()}; valid keys / floor {valid.rate / floor.rate:.2f}")
        print(wrkload.hmac_line())
        print(f"audit lines written: {audit_lines:,}")


if __name__ == "__main__":
    main()
