"""The shared limits on the two replicated Redis topologies, with real servers on
loopback: a master and a replica behind two Sentinels (`redis+sentinel://`, the
sentinels wanting the password too) and a three-master Redis Cluster
(`redis+cluster://`). For each, two verifier processes allow exactly N of a rate limit
between them and spend a quota exactly once per credit; a Sentinel failover, and a
cluster node restarting empty (it has forgotten the script: NOSCRIPT), are ridden out
under load within seconds and without a 5xx, and limits are exact again afterwards. At
start, a malformed URL stops the verifier in one line, and the checks tell each
misconfiguration (wrong password, unknown service, a server of the wrong kind, Sentinel
auth one way or the other) from a Redis that is merely away."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from keywright.core import limits
from keywright.dev.redis import RedisCluster, RedisSentinel, RedisServer, info
from keywright.kits import processes
from keywright.verifier import index, limits_backend
from tests.support import k8s
from tests.support.waiting import eventually

N, PERIOD = 5, 4.0  # the rate limit: 5 per 4 s
TIMEOUT = 0.5  # per Redis call: 2 cores, four verifiers, seven Redis processes
DENY_PROBE = "/verify?scope=Orders.Write"  # a scope the keys lack: checks without spending
# seconds: a failover or a node restart is ridden out within this (a restarted cluster
# master refuses writes for its first 2 s; the breaker then retries 0.25, 0.5, 1, 2 and
# 4 s apart)
RECOVERY = 8.0
Timed = tuple[float, k8s.Response]  # when the request was sent (monotonic), the answer


@pytest.fixture(scope="module")
def sentinels() -> Iterator[RedisSentinel]:
    with RedisSentinel(sentinel_password=True) as servers:
        yield servers


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as servers:
        yield servers


def two_verifiers(accounts: dict[str, Path], address: str, password_file: Path,
                  logs: pytest.TempPathFactory, name: str) -> list[k8s.Verifier]:
    started = [k8s.Verifier(accounts["verifier"], logs.mktemp(f"{name}-{i}"),
                            "--redis-url", address, "--redis-password-file",
                            str(password_file), "--redis-timeout", str(TIMEOUT))
               for i in range(2)]
    for one in started:
        one.start(wait_ready=False)
    return started


def stop_all(verifiers: list[k8s.Verifier]) -> None:
    """Stop them at once: each takes a while to shut down."""
    with ThreadPoolExecutor(max_workers=len(verifiers)) as pool:
        list(pool.map(k8s.Verifier.stop, verifiers))


def serving_pair(accounts: dict[str, Path], servers: RedisSentinel | RedisCluster,
                 tmp_path_factory: pytest.TempPathFactory, name: str,
                 ) -> Iterator[list[k8s.Verifier]]:
    """Two verifiers on `servers`, stopped after the module; none logged the password."""
    pair = two_verifiers(accounts, servers.address, servers.password_file,
                         tmp_path_factory, name)
    yield pair
    stop_all(pair)
    leaked = any(servers.password in one.all_logs() for one in pair)
    assert not leaked, "the Redis password is in a verifier's log"


@pytest.fixture(scope="module")
def sentinel_pair(accounts: dict[str, Path], sentinels: RedisSentinel,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[k8s.Verifier]]:
    yield from serving_pair(accounts, sentinels, tmp_path_factory, "sentinel")


@pytest.fixture(scope="module")
def cluster_pair(accounts: dict[str, Path], redis_cluster: RedisCluster,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[k8s.Verifier]]:
    yield from serving_pair(accounts, redis_cluster, tmp_path_factory, "cluster")


@pytest.fixture(params=["sentinel", "cluster"])
def pair(request: pytest.FixtureRequest,
         running_operator: k8s.Operator) -> list[k8s.Verifier]:
    """Two verifiers sharing the topology, both ready."""
    verifiers: list[k8s.Verifier] = request.getfixturevalue(f"{request.param}_pair")
    for one in verifiers:
        one.ensure_ready()
    return verifiers


def issue(cluster: k8s.Cluster, pair: list[k8s.Verifier], namespace: str, name: str,
          **limited: object) -> k8s.Plaintext:
    """An ApiKey with `limited` (rateLimit=..., quota=...), indexed by both verifiers."""
    key = k8s.issue(cluster, pair[0], namespace, name, probe=DENY_PROBE,
                    expect="INSUFFICIENT_SCOPE", scopes=["Orders.Read"], **limited)
    eventually(lambda: pair[1].get(DENY_PROBE, {"X-API-Key": key})[0] == 403, timeout=10,
               what="the second verifier has the key")
    return key


def hammer(pair: list[k8s.Verifier], key: k8s.Plaintext, seconds: float,
           stop: threading.Event | None = None) -> list[Timed]:
    """Requests alternating between the verifiers, one after another, for `seconds` or
    until `stop`."""
    answers: list[Timed] = []
    deadline = time.monotonic() + seconds
    for one in itertools.cycle(pair):
        sent = time.monotonic()
        if sent > deadline or (stop is not None and stop.is_set()):
            return answers
        answers.append((sent, one.get("/verify", {"X-API-Key": key})))
    raise AssertionError("unreachable")


def exactly_n_in_one_window(pair: list[k8s.Verifier], key: k8s.Plaintext) -> None:
    statuses = [response[0] for _, response in hammer(pair, key, PERIOD / 2)]
    assert statuses.count(200) == N, f"{statuses.count(200)} allowed"
    assert set(statuses) == {200, 429}
    assert len(statuses) > 2 * N  # the limit was really pressed, on both


def test_two_verifiers_allow_exactly_n_per_period(
        cluster: k8s.Cluster, pair: list[k8s.Verifier], namespace: str) -> None:
    key = issue(cluster, pair, namespace, "exact", rateLimit={"requests": N, "period": "4s"})
    exactly_n_in_one_window(pair, key)


def test_a_quota_is_spent_exactly_once_per_credit(
        cluster: k8s.Cluster, pair: list[k8s.Verifier], namespace: str) -> None:
    credits = 40
    key = issue(cluster, pair, namespace, "credits", quota={"limit": credits})
    with ThreadPoolExecutor(max_workers=40) as pool:  # 2 x 20 concurrent clients
        answers = list(pool.map(lambda i: pair[i % 2].get("/verify", {"X-API-Key": key}),
                                range(3 * credits)))
    statuses = [status for status, _, _ in answers]
    assert statuses.count(200) == credits  # none spent twice, none lost
    assert {body for status, _, body in answers if status != 200} == {
        k8s.answer("USAGE_LIMIT_REACHED")}


def settle(pair: list[k8s.Verifier], stop: threading.Event) -> None:
    """Until both verifiers say Redis answers, then another second of load; then stop."""
    try:
        eventually(lambda: all(backend_up(one) for one in pair), timeout=RECOVERY,
                   interval=0.2, what="both verifiers reaching Redis again")
        time.sleep(1.0)
    finally:
        stop.set()


def ridden_out(answers: list[Timed], began: float) -> float:
    """Every answer a 200 or a 429 saying limits were unavailable (quotas fail closed),
    never a 5xx or no answer; the seconds from `began` to the last unavailable one (the
    outage as clients saw it), the last answers again 200."""
    statuses = {status for _, (status, _, _) in answers}
    assert statuses <= {200, 429}, statuses
    unavailable = [sent for sent, (status, _, _) in answers if status == 429]
    assert all(body == k8s.answer("LIMITS_UNAVAILABLE")
               for _, (status, _, body) in answers if status == 429)
    assert [status for _, (status, _, _) in answers[-4:]] == [200] * 4
    return max(unavailable, default=began) - began


def backend_up(one: k8s.Verifier) -> bool:
    return "keywright_limits_backend_up 1.0" in one.get("/metrics")[2].decode()


def calls(server: RedisServer, command: str) -> int:
    """How often `server` ran `command` (INFO commandstats) since it started."""
    found = info(server.command("INFO", "commandstats")).get(f"cmdstat_{command}", "")
    return int(found.partition("calls=")[2].partition(",")[0] or 0)


def test_a_sentinel_failover_under_load_recovers_within_seconds_without_a_5xx(
        cluster: k8s.Cluster, sentinels: RedisSentinel, sentinel_pair: list[k8s.Verifier],
        running_operator: k8s.Operator, namespace: str) -> None:
    for one in sentinel_pair:
        one.ensure_ready()
    spending = issue(cluster, sentinel_pair, namespace, "spending", quota={"limit": 100_000})
    limited = issue(cluster, sentinel_pair, namespace, "limited",
                    rateLimit={"requests": N, "period": "4s"})
    old = sentinels.master()
    assert old is not None
    replica = next(node for node in sentinels.data if node is not old)
    # the promoted replica must not already have the script: the verifiers find out by
    # NOSCRIPT from their first call to it, and load it there
    replica.command("SCRIPT", "FLUSH")
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        load = pool.submit(hammer, sentinel_pair, spending, 30.0, stop)
        time.sleep(1.0)
        began = time.monotonic()
        new = sentinels.failover()  # SENTINEL FAILOVER: the old master stays up, writable
        switched = time.monotonic() - began
        # within a poll of the sentinels, no verifier calls the old master any more
        time.sleep(limits_backend.MASTER_POLL + 1.0)
        stale = calls(old, "evalsha")
        settle(sentinel_pair, stop)
        answers = load.result()
    assert new is replica
    assert calls(old, "evalsha") == stale, "a verifier still counts on the old master"
    outage = ridden_out(answers, began)
    print(f"failover: sentinels switched in {switched:.1f}s; clients saw {outage:.1f}s "
          f"of LIMITS_UNAVAILABLE")
    assert outage < RECOVERY
    assert calls(new, "script|load") >= 1  # NOSCRIPT, then loaded on the new master
    assert calls(new, "evalsha") > 10
    assert all(backend_up(one) for one in sentinel_pair)
    assert all("the sentinels name another master" in one.all_logs() for one in sentinel_pair)
    exactly_n_in_one_window(sentinel_pair, limited)  # on the new master, exact again


def test_a_cluster_node_restarting_empty_recovers_within_seconds_without_a_5xx(
        cluster: k8s.Cluster, redis_cluster: RedisCluster, cluster_pair: list[k8s.Verifier],
        running_operator: k8s.Operator, namespace: str) -> None:
    for one in cluster_pair:
        one.ensure_ready()
    spending = issue(cluster, cluster_pair, namespace, "spending", quota={"limit": 100_000})
    owner = redis_cluster.owner(f"{{kw:{namespace}/spending}}:quota")
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        load = pool.submit(hammer, cluster_pair, spending, 30.0, stop)
        time.sleep(1.0)
        began = time.monotonic()
        redis_cluster.restart(owner)  # no persistence: no counters, no script
        restarted = time.monotonic() - began
        settle(cluster_pair, stop)
        answers = load.result()
    outage = ridden_out(answers, began)
    print(f"cluster node restart: ok again in {restarted:.1f}s; clients saw {outage:.1f}s "
          f"of LIMITS_UNAVAILABLE")
    assert outage < RECOVERY
    assert calls(owner, "script|load") >= 1  # NOSCRIPT, then loaded on the node
    assert calls(owner, "evalsha") > 10
    assert all(backend_up(one) for one in cluster_pair)
    # a key whose slot is on the restarted node: exact again
    name = next(f"limited-{i}" for i in range(1000)
                if redis_cluster.owner(f"{{kw:{namespace}/limited-{i}}}:rate") is owner)
    limited = issue(cluster, cluster_pair, namespace, name,
                    rateLimit={"requests": N, "period": "4s"})
    exactly_n_in_one_window(cluster_pair, limited)


def test_a_malformed_url_stops_the_verifier_in_one_line(accounts: dict[str, Path],
                                                        tmp_path: Path) -> None:
    secret = "not-to-be-printed"
    cases = {  # every malformation has its line in tests/unit/verifier/test_limits_urls.py
        f"redis+sentinel://:{secret}@127.0.0.1:26379": "no SERVICE",
        f"redis+cluster://:{secret}@127.0.0.1:7000/3": "a Redis Cluster has only database 0",
        "rediss+cluster://127.0.0.1:7000": "TLS is not supported",
    }

    def run(url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keywright.cli", "verifier", "--kubeconfig",
             str(accounts["verifier"]), "--host", "127.0.0.1", "--port",
             str(processes.free_port())],
            env={**os.environ, "KEYWRIGHT_REDIS_URL": url},  # not on a command line
            capture_output=True, text=True, timeout=30, check=False)
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        results = dict(zip(cases, pool.map(run, cases), strict=True))
    for url, said in cases.items():
        result = results[url]
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, said
        assert [line for line in lines if line.startswith("keywright:")] == lines[-1:], said
        assert said in lines[-1]
        assert "Traceback" not in result.stderr
        leaked = secret in result.stderr + result.stdout
        assert not leaked, f"the password is in the output ({said})"


@pytest.fixture(scope="module")
def open_sentinel() -> Iterator[RedisSentinel]:
    """Sentinels without a password of their own (the data nodes still have one)."""
    with RedisSentinel(count=1) as servers:
        yield servers


def with_password(url: str, password_file: Path) -> str:
    return limits_backend.url_with_password(url, password_file)


@pytest.mark.parametrize(
    ("case", "said"),
    [
        pytest.param("sentinel", None, id="sentinel, sentinel_auth=yes"),
        pytest.param("sentinel, no auth", None, id="sentinel without a password"),
        pytest.param("cluster", None, id="cluster"),
        pytest.param("sentinel, wrong password", "Sentinel 127.0.0.1:", id="sentinel wrong pw"),
        pytest.param("sentinel, wrong password for the master only",
                     "Redis refused the password", id="master wrong pw"),
        pytest.param("cluster, wrong password", "Redis refused the password",
                     id="cluster wrong pw"),
        pytest.param("sentinel wants a password", "add ?sentinel_auth=yes",
                     id="sentinel_auth missing"),
        pytest.param("sentinel has none", None, id="sentinel_auth, sentinels without"),
        pytest.param("unknown service", "no Sentinel knows a master named 'elsewhere'",
                     id="unknown service"),
        pytest.param("sentinel URL, a data node", "is a single Redis, not a Sentinel",
                     id="not a sentinel"),
        pytest.param("cluster URL, a single Redis", "is a single Redis, not a Redis Cluster",
                     id="not a cluster"),
        pytest.param("redis URL, a cluster node", "use redis+cluster://",
                     id="redis:// to a cluster"),
        pytest.param("redis URL, a sentinel", "use redis+sentinel://",
                     id="redis:// to a sentinel"),
        pytest.param("sentinels away", "no Sentinel answers", id="sentinels away"),
        pytest.param("cluster away", "no cluster node answers", id="cluster away"),
    ],
)
def test_the_start_check_tells_a_misconfiguration_from_an_outage(
        sentinels: RedisSentinel, open_sentinel: RedisSentinel, redis_cluster: RedisCluster,
        tmp_path: Path, case: str, said: str | None) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    sentinel, cluster_url = sentinels.address, redis_cluster.address
    open_url = open_sentinel.address
    node = sentinels.data[0]
    urls = {
        "sentinel": with_password(sentinel, sentinels.password_file),
        "sentinel, no auth": with_password(open_url, open_sentinel.password_file),
        "cluster": with_password(cluster_url, redis_cluster.password_file),
        "sentinel, wrong password": with_password(sentinel, wrong),
        "sentinel, wrong password for the master only": with_password(open_url, wrong),
        "cluster, wrong password": with_password(cluster_url, wrong),
        "sentinel wants a password": with_password(sentinel.partition("?")[0],
                                                   sentinels.password_file),
        "sentinel has none": with_password(f"{open_url}?sentinel_auth=yes",
                                           open_sentinel.password_file),
        "unknown service": with_password(sentinel.replace("/keywright/", "/elsewhere/"),
                                         sentinels.password_file),
        "sentinel URL, a data node": with_password(
            f"redis+sentinel://127.0.0.1:{node.port}/keywright?sentinel_auth=yes",
            sentinels.password_file),
        "cluster URL, a single Redis": with_password(f"redis+cluster://127.0.0.1:{node.port}",
                                                     sentinels.password_file),
        "redis URL, a cluster node": with_password(
            f"redis://127.0.0.1:{redis_cluster.nodes[1].port}/0", redis_cluster.password_file),
        "redis URL, a sentinel": f"redis://127.0.0.1:{open_sentinel.sentinels[0].port}/0",
        "sentinels away": "redis+sentinel://127.0.0.1:1,127.0.0.1:2/keywright",
        "cluster away": "redis+cluster://127.0.0.1:1,127.0.0.1:2",
    }
    outcome, text = checked(urls[case])
    expected = "ok" if said is None else "away" if case.endswith("away") else "refused"
    assert outcome == expected, text
    if said is not None:
        assert said in text
        assert "\n" not in text
    leaked = sentinels.password in text or redis_cluster.password in text
    assert not leaked, "the password is in the message"


def checked(url: str) -> tuple[str, str]:
    """ok, away (a warning: the verifier serves, as during an outage) or refused (it
    stops), and what it says."""
    try:
        away = limits_backend.check(url, timeout=1.0)
    except limits_backend.BackendConfigError as exc:
        return "refused", str(exc)
    return ("ok", "") if away is None else ("away", away)


def test_sentinels_without_a_password_serve_the_worker_and_the_status_writer(
        open_sentinel: RedisSentinel) -> None:
    """The worker's client and the status writer's through password-less sentinels (the
    verifiers above have sentinels wanting one): a rate limit counted, a claim taken
    once, the credits read back; after a failover that leaves the old master up, the
    status writer's claims go to the new master."""
    url = with_password(open_sentinel.address, open_sentinel.password_file)
    record = index.KeyRecord(
        namespace="ns", name="open", revision=1, last_characters="abcd",
        scopes=frozenset(), granted=frozenset(), usable=True, expires_at=None,
        retires_at=None, allowlist=(), context=(), rate=(2, 60.0),
        quota=limits.Quota(10, 0, 0))

    async def three() -> list[str | None]:
        backend = limits_backend.RedisLimits(url, timeout=TIMEOUT)
        try:
            return [(verdict.decision.code if verdict.decision else None)
                    for verdict in [await backend.check(record) for _ in range(3)]]
        finally:
            await backend.close()
    assert asyncio.run(three()) == ["OK", "OK", "RATE_LIMITED"]
    claims = limits_backend.WriteClaims(url, 60.0)
    try:
        assert [claims.claim("ns", "open"), claims.claim("ns", "open")] == [True, False]
        credits = claims.credits("ns", "open")
        assert credits is not None
        assert credits[0] == 8
        old = open_sentinel.master()
        new = open_sentinel.failover()
        time.sleep(limits_backend.MASTER_POLL)
        assert claims.claim("ns", "moved")
        written = "{kw:ns/moved}:written"
        assert [new.command("EXISTS", written), old.command("EXISTS", written)] == [1, 0]
    finally:
        claims.close()
