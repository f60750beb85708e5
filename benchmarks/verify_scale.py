"""`keywright verifier` at 100,000 keys: memory, time to ready, and a watch event applied.

    .venv/bin/python -m benchmarks.verify_scale [--keys 100000] [--events 20]

Starts a local control plane and writes N ApiKeys with their hashes in status (as the
operator would; verifier_plane.py), showing progress. Then starts two real verifiers,
pinned to core 0, as a user that may read but not write ApiKey status: one watching the
namespace of the N keys, one watching an empty namespace (the baseline: the same process
with no keys). Prints:
- the time from the process's start to /readyz reporting all N keys indexed (the paged
  list, the index built);
- each worker's resident memory (VmRSS) and peak (VmHWM), and the index's cost per key:
  (RSS with N keys - RSS with none) / N;
- a watch event applied: an ApiKey deactivated (`spec.active: false`) --events times, each
  timed from the patch returning to the verifier answering 401 INACTIVE for its key
  (polled every millisecond), p50 and max.
Targets (issue 17): <= 300 MB RSS and ready in <= 20 s at 100,000 keys, a watch event
applied in < 100 ms. Prints figures and ratios; never passes or fails. Loopback only.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks import wrkload
from benchmarks.verifier_plane import NAMESPACE, Bench, Verifier
from keywright.core import names

EMPTY = "bench-empty"
RSS_TARGET_MB, READY_TARGET_S, EVENT_TARGET_MS = 300, 20.0, 100.0


def worker_memory(verifier: Verifier) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of the verifier's granian worker (its supervisor's child)."""
    children = subprocess.run(["pgrep", "-P", str(verifier.popen.pid)], capture_output=True,
                              text=True, check=False).stdout.split()
    pid = int(children[0]) if children else verifier.popen.pid
    status = Path(f"/proc/{pid}/status").read_text()
    found = {line.split(":")[0]: int(line.split()[1]) / 1024
             for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return found["VmRSS"], found["VmHWM"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    print(wrkload.hmac_line())
    with Bench((NAMESPACE, EMPTY)) as bench:
        plaintexts = bench.write_keys(args.keys)
        empty = bench.start_verifier("--watch-namespace", EMPTY, suffix="-empty",
                                     status_writes=False)
        empty.wait_indexed(0)
        full = bench.start_verifier("--watch-namespace", NAMESPACE, status_writes=False)
        ready = full.wait_indexed(args.keys, timeout=600)
        time.sleep(2)  # settled: the list's pages freed, the watch running
        rss, peak = worker_memory(full)
        base, _ = worker_memory(empty)
        per_key = (rss - base) * 1024 * 1024 / args.keys
        print(f"ready with {args.keys:,} keys: {ready:.1f} s after start (target "
              f"{READY_TARGET_S:g} s, ratio {ready / READY_TARGET_S:.2f})")
        print(f"worker memory: {rss:.0f} MB resident, {peak:.0f} MB at peak (target "
              f"{RSS_TARGET_MB} MB, ratio {peak / RSS_TARGET_MB:.2f}); with no keys "
              f"{base:.0f} MB; the index {per_key:,.0f} bytes per key")
        waits = []
        for i in range(args.events):
            name, key = f"key-{i:05d}", plaintexts[i]
            bench.admin.merge_patch_object(f"{bench.admin.apikeys_path(NAMESPACE)}/{name}",
                                           {"spec": {"active": False}})
            patched = time.monotonic()
            while full.answer(key, "/verify")[1].get("x-keywright-code") != "INACTIVE":
                if time.monotonic() - patched > 10:
                    raise SystemExit(f"{name}: not INACTIVE within 10 s")
                time.sleep(0.001)
            waits.append((time.monotonic() - patched) * 1000)
        p50 = statistics.median(waits)
        print(f"a watch event applied ({args.events} deactivations, from the patch "
              f"returning to 401 INACTIVE): p50 {p50:.0f} ms, max {max(waits):.0f} ms "
              f"(target {EVENT_TARGET_MS:g} ms, ratio {max(waits) / EVENT_TARGET_MS:.2f})")
    print(f"(the {names.KIND}s were in namespace {NAMESPACE})")


if __name__ == "__main__":
    main()
