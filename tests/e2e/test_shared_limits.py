"""Rate limits shared on a real redis-server by three verifier processes: exactly N per
period whichever replica answers, the headers clients read, and Redis dying and coming
back under load (no 5xx, bounded latency, recovery in seconds), or restarting empty
(rate limits start over, quotas start again from status.usage); a misconfigured backend
stops the verifier at start with one clear line."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keywright.core import limits
from keywright.dev import controlplane
from keywright.dev.redis import RedisServer
from keywright.kits import processes
from keywright.verifier import index, limits_backend, usagepatch
from tests.support import k8s
from tests.support.waiting import eventually

N, PERIOD = 5, 4.0  # the rate limit: 5 per 4 s
# per Redis call: above the default 50 ms, because here 150 client threads, three
# verifiers, Redis and the control plane share 2 cores, and a timeout taken while the
# event loop waits for the CPU is not the backend's fault
TIMEOUT = 0.5
DENY_PROBE = "/verify?scope=Orders.Write"  # a scope the keys lack: checks without spending


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def trio(accounts: dict[str, Path], redis_server: RedisServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[k8s.Verifier]]:
    """Three verifiers sharing one Redis, as three replicas behind one Service would."""
    started = [k8s.Verifier(accounts["verifier"], tmp_path_factory.mktemp(f"shared-{i}"),
                            "--redis-url", redis_server.address,
                            "--redis-password-file", str(redis_server.password_file),
                            "--redis-timeout", str(TIMEOUT))
               for i in range(3)]
    for one in started:
        one.start(wait_ready=False)
    yield started
    for one in started:
        one.stop()


@pytest.fixture
def ready_trio(trio: list[k8s.Verifier], redis_server: RedisServer,
               running_operator: k8s.Operator) -> list[k8s.Verifier]:
    if redis_server.pid is None:  # a test that stopped it failed before starting it again
        redis_server.start()
    for one in trio:
        one.ensure_ready()
    return trio


def issue_everywhere(cluster: k8s.Cluster, trio: list[k8s.Verifier], namespace: str,
                     name: str, requests: int = N, period: str = "4s") -> k8s.Plaintext:
    key = k8s.issue(cluster, trio[0], namespace, name, probe=DENY_PROBE,
                    expect="INSUFFICIENT_SCOPE", scopes=["Orders.Read"],
                    rateLimit={"requests": requests, "period": period})
    for one in trio[1:]:
        def indexed(one: k8s.Verifier = one) -> bool:
            return one.get(DENY_PROBE, {"X-API-Key": key})[0] == 403
        eventually(indexed, timeout=10, what="every replica has the key")
    return key


def kill(redis_server: RedisServer) -> None:
    """SIGKILL, as an OOM kill or a lost node: gone at once (a SIGTERMed Redis may still
    answer while it shuts down)."""
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGKILL)
    redis_server.stop()  # reaps it


def hammer(trio: list[k8s.Verifier], key: k8s.Plaintext, seconds: float,
           ) -> list[tuple[float, k8s.Response]]:
    """Requests round-robin over the replicas, one after another, for `seconds`."""
    answers: list[tuple[float, k8s.Response]] = []
    deadline = time.monotonic() + seconds
    for one in itertools.cycle(trio):
        if time.monotonic() > deadline:
            return answers
        began = time.monotonic()
        response = one.get("/verify", {"X-API-Key": key})
        answers.append((time.monotonic() - began, response))
    return answers


def test_three_replicas_allow_exactly_n_per_period(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], namespace: str) -> None:
    key = issue_everywhere(cluster, ready_trio, namespace, "exact")
    for window in range(3):
        began = time.monotonic()
        answers = [response for _, response in hammer(ready_trio, key, PERIOD / 2)]
        statuses = [status for status, _, _ in answers]
        assert statuses.count(200) == N, f"window {window}: {statuses.count(200)} allowed"
        assert set(statuses) == {200, 429}
        assert len(statuses) > 3 * N  # the limit was really pressed, on every replica
        retry = {int(headers["retry-after"]) for status, headers, _ in answers
                 if status == 429}
        assert retry <= set(range(1, int(PERIOD) + 1))
        time.sleep(max(0.0, began + PERIOD + 0.3 - time.monotonic()))  # the window passes


def test_clients_are_told_their_limit_on_200_and_429(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], namespace: str) -> None:
    key = issue_everywhere(cluster, ready_trio, namespace, "told")
    answers = [ready_trio[i % 3].get("/verify", {"X-API-Key": key}) for i in range(N + 1)]
    remaining = [int(headers["x-ratelimit-remaining"]) for _, headers, _ in answers]
    assert remaining == [4, 3, 2, 1, 0, 0]
    status, headers, _ = answers[-1]
    assert status == 429
    assert headers["x-ratelimit-limit"] == str(N)
    assert 1 <= int(headers["x-ratelimit-reset"]) <= int(PERIOD)
    assert headers["ratelimit-policy"] == f'"keywright";q={N};w={int(PERIOD)}'
    assert re.fullmatch(r'"keywright";r=0;t=[1-4]', headers["ratelimit"])
    assert int(headers["retry-after"]) == int(headers["x-ratelimit-reset"])


def test_redis_dying_under_load_lets_rate_limited_keys_through_refuses_quotas_then_limits_return(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], redis_server: RedisServer,
        namespace: str) -> None:
    key = issue_everywhere(cluster, ready_trio, namespace, "outage", requests=3,
                           period="60s")
    metered = quota_key(cluster, ready_trio, namespace, "metered", {"limit": 1000})
    down, back = "limits backend: Redis failed", "limits backend: Redis answers again"
    earlier = ready_trio[0].all_logs()  # other tests may have stopped Redis before
    spent = [s for s, _, _ in (one.get("/verify", {"X-API-Key": key})
                               for one in ready_trio * 2)]
    assert spent.count(200) == 3
    kill(redis_server)
    try:
        during = hammer(ready_trio, key, 3.0)
        statuses = [response[0] for _, response in during]
        assert set(statuses) == {200}, set(statuses)  # open: no 429, and never a 5xx
        latencies = sorted(seconds for seconds, _ in during)
        p99 = latencies[int(len(latencies) * 0.99)]
        assert p99 < TIMEOUT + 0.05, f"p99 {p99 * 1000:.0f} ms while Redis was down"
        # a quota fails closed by default: credits nobody can count are not handed out
        for one in ready_trio:
            status, headers, body = one.get("/verify", {"X-API-Key": metered})
            assert (status, body) == (429, k8s.answer("LIMITS_UNAVAILABLE"))
            assert headers["retry-after"] == "1"
        for one in ready_trio:
            metrics = one.get("/metrics")[2].decode()
            assert "keywright_limits_backend_up 0.0" in metrics
            errors = re.search(r"^keywright_limits_backend_errors_total (\S+)$", metrics,
                               re.MULTILINE)
            assert errors is not None
            assert float(errors.group(1)) >= 1
    finally:
        redis_server.start()
    began = time.monotonic()

    def limited_again() -> bool:  # Redis came back empty: 3 more, then 429 again
        return any(one.get("/verify", {"X-API-Key": key})[0] == 429 for one in ready_trio)
    eventually(limited_again, timeout=15, interval=0.2, what="limits enforced again")
    assert time.monotonic() - began < 10
    assert all("keywright_limits_backend_up 1.0" in one.get("/metrics")[2].decode()
               for one in ready_trio)
    logs = ready_trio[0].all_logs()
    assert logs.count(down) - earlier.count(down) == 1  # one line per state change
    assert logs.count(back) - earlier.count(back) == 1


def run_verifier(kubeconfig: Path, *extra: str, timeout: float = 20,
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keywright.cli", "verifier", "--kubeconfig", str(kubeconfig),
         "--host", "127.0.0.1", "--port", str(processes.free_port()), *extra],
        capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize(
    ("how", "said"),
    [
        pytest.param("a wrong password", "Redis refused the password", id="wrong password"),
        pytest.param("a malformed URL", "is not a Redis URL", id="malformed URL"),
    ],
)
def test_a_misconfigured_backend_stops_the_verifier_in_one_line(
        accounts: dict[str, Path], redis_server: RedisServer, tmp_path: Path, how: str,
        said: str) -> None:
    extra: tuple[str, ...] = ("--redis-url", "http://127.0.0.1:1/")
    if how == "a wrong password":
        wrong = tmp_path / "password"
        wrong.write_text("not-the-password")
        extra = ("--redis-url", redis_server.address, "--redis-password-file", str(wrong))
    result = run_verifier(accounts["verifier"], *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if line.startswith("keywright:")]) == 1
    assert said in lines[-1]
    assert "Traceback" not in result.stderr


def quota_key(cluster: k8s.Cluster, trio: list[k8s.Verifier], namespace: str, name: str,
              quota: dict[str, object]) -> k8s.Plaintext:
    key = k8s.issue(cluster, trio[0], namespace, name, probe=DENY_PROBE,
                    expect="INSUFFICIENT_SCOPE", scopes=["Orders.Read"], quota=quota)
    for one in trio[1:]:
        def indexed(one: k8s.Verifier = one) -> bool:
            return one.get(DENY_PROBE, {"X-API-Key": key})[0] == 403
        eventually(indexed, timeout=10, what="every replica has the key")
    return key


def test_a_quota_is_spent_exactly_once_per_credit_under_concurrency(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], namespace: str) -> None:
    credits = 100
    key = quota_key(cluster, ready_trio, namespace, "credits", {"limit": credits})
    with ThreadPoolExecutor(max_workers=150) as pool:  # 3 x 50 concurrent clients
        answers = list(pool.map(lambda i: ready_trio[i % 3].get("/verify", {"X-API-Key": key}),
                                range(3 * credits)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == credits  # none spent twice, none lost
    assert statuses.count(429) == 2 * credits
    refused = [body for status, _, body in answers if status == 429]
    assert set(refused) == {k8s.answer("USAGE_LIMIT_REACHED")}
    assert not any("retry-after" in headers for status, headers, _ in answers
                   if status == 429)  # no refill: waiting will not help
    # status.usage: the key's status is written at most once a minute, and the first
    # write may have come from the probes before any credit was spent
    usage = eventually(lambda: cluster.status(namespace, "credits").get("usage"),
                       timeout=75, interval=1, what="status.usage")
    assert 0 <= usage["remaining"] < credits


def test_credits_come_back_at_the_refill_and_with_the_reset_annotation(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], namespace: str) -> None:
    key = quota_key(cluster, ready_trio, namespace, "refilled",
                    {"limit": 2, "refill": {"every": "3s"}})
    spent = [ready_trio[i % 3].get("/verify", {"X-API-Key": key}) for i in range(3)]
    assert [status for status, _, _ in spent] == [200, 200, 429]
    wait = int(spent[-1][1]["retry-after"])
    assert 1 <= wait <= 3
    time.sleep(wait + 0.2)
    assert ready_trio[1].get("/verify", {"X-API-Key": key})[0] == 200  # refilled

    once = quota_key(cluster, ready_trio, namespace, "reset", {"limit": 1})
    assert [ready_trio[i].get("/verify", {"X-API-Key": once})[0] for i in range(2)] == [
        200, 429]
    k8s.kubectl(cluster.kubeconfig, "-n", namespace, "annotate", "apikey", "reset",
                "keywright.dev/reset-quota=first")
    eventually(lambda: ready_trio[2].get("/verify", {"X-API-Key": once})[0] == 200,
               timeout=10, what="the credits reset")
    assert ready_trio[0].get("/verify", {"X-API-Key": once})[0] == 429  # one, not one each


def test_redis_restarted_empty_starts_limits_over_and_quotas_from_status_usage(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], redis_server: RedisServer,
        namespace: str) -> None:
    credits, spent = 10, 4
    key = quota_key(cluster, ready_trio, namespace, "restarted", {"limit": credits})
    # spent on two replicas: the status writer reports what Redis holds, not what it saw
    assert [ready_trio[min(i, 1)].get("/verify", {"X-API-Key": key})[0]
            for i in range(spent)] == [200] * spent
    # written at most once a minute: the first write may have come from the probes
    eventually(lambda: (cluster.status(namespace, "restarted").get("usage") or {})
               .get("remaining") == credits - spent,
               timeout=75, interval=1, what="status.usage.remaining == 6")
    kill(redis_server)
    redis_server.start()  # no persistence: every counter is gone
    exhausted, unavailable = k8s.answer("USAGE_LIMIT_REACHED"), k8s.answer("LIMITS_UNAVAILABLE")
    bodies: list[bytes] = []
    for i in range(60):  # until each replica has said "spent" (a replica's first call
        # after the restart may find its connection broken: 429 LIMITS_UNAVAILABLE,
        # nothing spent)
        status, _, body = ready_trio[i % 3].get("/verify", {"X-API-Key": key})
        bodies.append(b"200" if status == 200 else body)
        if bodies[-3:] == [exhausted] * 3:
            break
        time.sleep(0.05)
    # the credits left, not a full quota again: no credit is handed out twice
    assert bodies.count(b"200") == credits - spent, bodies
    assert set(bodies) <= {b"200", exhausted, unavailable}
    assert bodies[-3:] == [exhausted] * 3


def test_a_quota_without_the_backend_is_kept_in_process(
        cluster: k8s.Cluster, verifier: k8s.Verifier, running_operator: k8s.Operator,
        namespace: str) -> None:
    verifier.ensure_ready()
    key = k8s.issue(cluster, verifier, namespace, "local", probe=DENY_PROBE,
                    expect="INSUFFICIENT_SCOPE", scopes=["Orders.Read"], quota={"limit": 3})
    statuses = [verifier.get("/verify", {"X-API-Key": key})[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_one_status_write_per_key_per_minute_whatever_the_replicas(
        cluster: k8s.Cluster, ready_trio: list[k8s.Verifier], namespace: str,
        control_plane: controlplane.ControlPlane) -> None:
    key = quota_key(cluster, ready_trio, namespace, "written", {"limit": 1_000_000})
    began = time.time()
    hammer(ready_trio, key, 8.0)  # every replica uses the key, again and again
    time.sleep(3 * usagepatch.FLUSH_SECONDS + 1)  # every replica has flushed its usage

    def writes() -> list[dict[str, object]]:
        found = []
        for line in control_plane.audit_log.read_text().splitlines():
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            if (entry.get("verb") == "patch" and ref.get("resource") == "apikeys"
                    and ref.get("subresource") == "status" and ref.get("name") == "written"
                    and ref.get("namespace") == namespace
                    and entry["user"]["username"].endswith(":keywright-verifier")):
                found.append(entry)
        return found
    # the first write (at the probe that saw the key indexed) claimed the minute
    assert len(writes()) == 1, f"{len(writes())} status writes in {time.time() - began:.0f}s"


def quota_record(name: str, credits: int) -> index.KeyRecord:
    return index.KeyRecord(
        namespace="direct", name=name, revision=1, last_characters="abcd",
        scopes=frozenset(), granted=frozenset(), usable=True, expires_at=None,
        retires_at=None, allowlist=(), context=(), rate=None, quota=limits.Quota(credits))


@pytest.mark.parametrize(("client", "connections"), [
    pytest.param("pipelined", range(1, 2), id="one Redis: one pipelined connection"),
    # an option only redis-py honours: its pool, as with Sentinel and Cluster
    pytest.param("redis-py", range(2, limits_backend.IN_FLIGHT + 1),
                 id="redis-py: at most IN_FLIGHT connections"),
])
def test_more_calls_at_once_than_the_client_has_connections_are_no_outage(
        redis_server: RedisServer, client: str, connections: range) -> None:
    """150 concurrent checks in one verifier: each answered, none an outage, on one
    pipelined connection; with redis-py, whose pool holds 100 connections and fails the
    101st call at once, they wait their turn instead."""
    name = f"crowd-{client}"
    url = limits_backend.url_with_password(
        redis_server.address + f"?client_name={name}" +
        ("&socket_keepalive=yes" if client == "redis-py" else ""), redis_server.password_file)
    assert (limits_backend.pipe_address(url) is None) is (client == "redis-py")
    record = quota_record(name, 120)

    async def crowd() -> tuple[list[str | None], int]:
        backend = limits_backend.RedisLimits(url, timeout=TIMEOUT)
        try:
            verdicts = await asyncio.gather(*(backend.check(record) for _ in range(150)))
            listing = await asyncio.to_thread(redis_server.command, "CLIENT", "LIST")
            assert isinstance(listing, str)
            return ([v.decision.code if v.decision else None for v in verdicts],
                    listing.count(f" name={name} "))
        finally:
            await backend.close()
    codes, connected = asyncio.run(crowd())
    assert codes.count("OK") == 120
    assert codes.count("USAGE_LIMIT_REACHED") == 30  # none None: no outage
    assert connected in connections


def test_the_breaker_opens_once_per_outage_not_once_per_failed_call() -> None:
    """Eight calls failing together (Redis refusing connections, nothing on the port)
    open the breaker for its first cooldown, not for eight doublings of it."""
    clock = [100.0]
    backend = limits_backend.RedisLimits(f"redis://127.0.0.1:{processes.free_port()}/0",
                                         timeout=TIMEOUT, now=lambda: clock[0])
    record = quota_record("down", 10)

    async def checks(count: int) -> list[bool]:
        verdicts = await asyncio.gather(*(backend.check(record) for _ in range(count)))
        return [v.decision is None for v in verdicts]

    async def scenario() -> None:
        try:
            assert await checks(8) == [True] * 8
            assert backend.errors == 8
            clock[0] += limits_backend.COOLDOWN[0] / 2  # open: no call, no error
            assert await checks(1) == [True]
            assert backend.errors == 8
            clock[0] += limits_backend.COOLDOWN[0]  # past the first cooldown: a call
            assert await checks(1) == [True]
            assert backend.errors == 9
            clock[0] += limits_backend.COOLDOWN[0] * 1.5  # now open twice as long
            assert await checks(1) == [True]
            assert backend.errors == 9
        finally:
            await backend.close()
    asyncio.run(scenario())
