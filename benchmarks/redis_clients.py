"""Which asyncio Redis client the verifier uses: keywright's own pipelined connection
(verifier/redis_pipe.py, on hiredis), redis-py (with hiredis) and coredis, all calling the
limits script by SHA on a real redis-server; print figures.

    .venv/bin/python benchmarks/redis_clients.py [--calls 20000]

Prints, per client and concurrency (1 and 32 callers on one uvloop event loop, the
verifier's): calls per second, p50 and p99 latency, this process's CPU time per call
(what the verifier pays per limited request), and the ratio to the fastest client. All
clients run in the same process, pinned to core 0, against one server pinned to core 1,
one after the other, each warmed first. Not part of the test suite: it prints, it does
not pass or fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import coredis
import redis.asyncio as redis_py
import uvloop

from keywright.core import limits
from keywright.dev.redis import RedisServer
from keywright.verifier import limits_backend, limits_redis, redis_pipe

RATE = limits.Rate(1_000_000_000, 60_000_000)  # never denies: every call does the work
QUOTA = limits.Quota(1_000_000_000, 86_400_000_000)

Call = Callable[[list[str], list[str]], Awaitable[Any]]


Result = tuple[float, float, float, float]  # calls/s, p50 ms, p99 ms, CPU µs per call
CLIENTS = ("keywright", "redis-py", "coredis")


async def measure(call: Call, calls: int, concurrency: int) -> Result:
    latencies: list[float] = []

    async def worker(index: int) -> None:
        keys = list(limits_redis.keys("bench", f"k{index}"))
        argv = limits_redis.arguments(RATE, QUOTA)
        for _ in range(calls // concurrency):
            began = time.perf_counter()
            await call(keys, argv)
            latencies.append(time.perf_counter() - began)

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    ordered = sorted(latencies)
    return (len(latencies) / elapsed, statistics.median(ordered) * 1e3,
            ordered[int(len(ordered) * 0.99)] * 1e3, cpu / len(latencies) * 1e6)


async def run(url: str, calls: int) -> dict[tuple[str, int], Result]:
    results = {}
    plain = redis_py.Redis.from_url(url)
    sha = await plain.script_load(limits_redis.SCRIPT)
    address = limits_backend.pipe_address(url)
    assert address is not None
    pipe = redis_pipe.Pipeline(address, timeout=5.0)

    async def with_keywright(keys: list[str], argv: list[str]) -> Any:
        return await pipe.call("EVALSHA", sha, len(keys), *keys, *argv)

    async def with_redis_py(keys: list[str], argv: list[str]) -> Any:
        return await plain.evalsha(sha, len(keys), *keys, *argv)

    async with coredis.Redis.from_url(url) as other:

        async def with_coredis(keys: list[str], argv: list[str]) -> Any:
            return await other.evalsha(sha, keys=keys, args=argv)

        for name, call in (("keywright", with_keywright), ("redis-py", with_redis_py),
                           ("coredis", with_coredis)):
            await measure(call, 2000, 8)  # warm up
            for concurrency in (1, 32):
                results[(name, concurrency)] = await measure(call, calls, concurrency)
    await plain.aclose()
    await pipe.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    with RedisServer() as server:
        assert server.pid is not None
        os.sched_setaffinity(server.pid, {1})
        results = uvloop.run(run(server.url, args.calls))
    for concurrency in (1, 32):
        best = max(results[(name, concurrency)][0] for name in CLIENTS)
        for name in CLIENTS:
            rate, p50, p99, cpu = results[(name, concurrency)]
            print(f"{name:9} concurrency {concurrency:2}: {rate:8.0f} calls/s  p50 {p50:.3f} ms"
                  f"  p99 {p99:.3f} ms  CPU {cpu:5.1f} µs/call  ({rate / best:.2f} of the "
                  "fastest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
