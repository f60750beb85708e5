"""The limits backend's pipelined connection (verifier/redis_pipe.py) on a real
redis-server, on both event loops the verifier may run (asyncio's and uvloop's): every
caller gets its own reply however many share the connection, a late or cancelled call's
reply goes nowhere, a connection that broke or stalled is dropped and made again, and
the login (password, user, database, client name) over TCP, TLS and a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from keywright.controller import webcerts
from keywright.dev.redis import RedisServer
from keywright.kits import processes
from keywright.verifier import limits_backend, redis_pipe

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
LOOPS: dict[str, Runner] = {"asyncio": asyncio.run,
                                                      "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Runner:
    return LOOPS[request.param]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("redis-tls")
    files = webcerts.issue(directory, ["localhost", "127.0.0.1"])
    socket_path = directory / "redis.sock"
    with RedisServer(extra=[f"unixsocket {socket_path}", "unixsocketperm 700",
                            f"tls-port {processes.free_port()}", f"tls-cert-file {files.cert}",
                            f"tls-key-file {files.key}", f"tls-ca-cert-file {files.ca}",
                            "tls-auth-clients no",
                            "user reader on >reader-secret ~* +@all"]) as started:
        started.ca = files.ca  # type: ignore[attr-defined]
        started.socket = socket_path  # type: ignore[attr-defined]
        yield started


def pipe(url: str, timeout: float = 2.0, **options: Any) -> redis_pipe.Pipeline:
    address = limits_backend.pipe_address(url)
    assert address is not None, url
    return redis_pipe.Pipeline(address, timeout, **options)


def pause(server: RedisServer, seconds: float) -> None:
    """Redis answers no client's command for `seconds` (CLIENT PAUSE, from another
    connection): a slow or hung Redis on demand."""
    server.command("CLIENT", "PAUSE", str(int(seconds * 1000)), "ALL")


def test_every_caller_gets_its_own_reply_on_one_connection(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> None:
        connection = pipe(server.url)
        replies = await asyncio.gather(*(connection.call("ECHO", f"caller-{n}")
                                         for n in range(1000)))
        assert replies == [f"caller-{n}".encode() for n in range(1000)]
        assert connection.connects == 1
        await connection.close()
    run(scenario())


def test_an_error_reply_is_raised_to_its_caller_only(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> tuple[Any, ...]:
        connection = pipe(server.url)
        replies = await asyncio.gather(connection.call("ECHO", "before"),
                                       connection.call("EVALSHA", "0" * 40, 0),
                                       connection.call("ECHO", "after"),
                                       return_exceptions=True)
        await connection.close()
        return tuple(replies)
    before, error, after = run(scenario())
    assert (before, after) == (b"before", b"after")
    assert isinstance(error, redis_pipe.ReplyError)
    assert str(error).startswith("NOSCRIPT")


def test_a_late_reply_goes_nowhere_and_the_next_call_gets_its_own(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> None:
        connection = pipe(server.url, timeout=0.1)
        assert await connection.call("ECHO", "warm") == b"warm"
        pause(server, 0.3)
        began = time.monotonic()
        with pytest.raises(redis_pipe.Late):
            await connection.call("ECHO", "late")
        assert time.monotonic() - began < 0.2  # the call's own timeout, not Redis's pause
        await asyncio.sleep(0.3)  # the pause ends: Redis answers "late" now
        assert await connection.call("ECHO", "next") == b"next"
        assert connection.connects == 1  # a slow Redis is not a dead one
        await connection.close()
    run(scenario())


def test_a_cancelled_call_keeps_its_place_in_the_replies(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> None:
        connection = pipe(server.url)
        assert await connection.call("PING") == b"PONG"
        pause(server, 0.2)
        first = asyncio.ensure_future(connection.call("ECHO", "cancelled"))
        second = asyncio.ensure_future(connection.call("ECHO", "kept"))
        await asyncio.sleep(0.05)
        first.cancel()
        assert await second == b"kept"
        assert first.cancelled()
        await connection.close()
    run(scenario())


def test_a_redis_that_stops_answering_is_dropped_and_connected_again(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> None:
        connection = pipe(server.url, timeout=0.05, stall=0.2)
        assert await connection.call("PING") == b"PONG"
        pause(server, 0.5)
        calls = [asyncio.ensure_future(connection.call("ECHO", str(n))) for n in range(5)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(result, redis_pipe.Late) for result in results)
        await asyncio.sleep(0.3)  # past the oldest call's deadline plus the stall
        assert connection.connects == 1
        assert not connection.connected  # dropped
        await asyncio.sleep(0.4)  # the pause ends
        assert await connection.call("ECHO", "again") == b"again"
        assert connection.connects == 2
        await connection.close()
    run(scenario())


def test_too_many_waiting_calls_are_refused_at_once(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> None:
        connection = pipe(server.url, timeout=1.0, max_waiting=10)
        assert await connection.call("PING") == b"PONG"
        pause(server, 0.2)
        calls = [asyncio.ensure_future(connection.call("ECHO", str(n))) for n in range(10)]
        await asyncio.sleep(0)
        began = time.monotonic()
        with pytest.raises(redis_pipe.Late, match="10 calls already waiting"):
            await connection.call("ECHO", "one too many")
        assert time.monotonic() - began < 0.05
        assert await asyncio.gather(*calls) == [str(n).encode() for n in range(10)]
        await connection.close()
    run(scenario())


def test_a_broken_connection_fails_its_calls_and_the_next_call_connects_again(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> None:
        connection = pipe(server.url + "?client_name=kw-pipe-test")
        assert await connection.call("PING") == b"PONG"
        waiting = asyncio.ensure_future(connection.call("BLPOP", "kw-no-such-list", "0"))
        await asyncio.sleep(0.1)  # in flight: Redis holds it, blocked
        server.command("CLIENT", "KILL", "ID", str(client_id(server, "kw-pipe-test")))
        with pytest.raises(redis_pipe.Unavailable, match=r"closed|broke"):
            await waiting
        assert await connection.call("ECHO", "again") == b"again"
        assert connection.connects == 2
        await connection.close()
    run(scenario())


def client_id(server: RedisServer, name: str) -> int:
    listing = server.command("CLIENT", "LIST")
    assert isinstance(listing, str)
    for line in listing.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("name") == name:
            return int(fields["id"])
    raise AssertionError(f"no client named {name}")


def test_a_wrong_password_is_refused_without_repeating_it(
        server: RedisServer, run: Runner) -> None:
    async def scenario() -> str:
        connection = pipe(f"redis://:not-the-Pa55word@127.0.0.1:{server.port}/0")
        with pytest.raises(redis_pipe.Unavailable) as refused:
            await connection.call("PING")
        await connection.close()
        return str(refused.value)
    message = run(scenario())
    assert message.startswith("AUTH refused: WRONGPASS")
    assert "not-the-Pa55word" not in message


def test_a_user_a_database_a_socket_and_tls(
        server: RedisServer, run: Runner) -> None:
    """The login as redis-py would read the same URL: the value written through each
    form lands where redis-py, reading the same database, finds it."""
    ca, socket_path = server.ca, server.socket  # type: ignore[attr-defined]
    tls_port = tls_port_of(server)
    forms = {
        "user": f"redis://reader:reader-secret@127.0.0.1:{server.port}/5",
        "socket": f"unix://{socket_path}?db=6&password={server.password}",
        "tls": f"rediss://:{server.password}@localhost:{tls_port}/7?ssl_ca_certs={ca}",
    }

    async def scenario() -> dict[str, Any]:
        seen = {}
        for form, url in forms.items():
            connection = pipe(url)
            await connection.call("SET", "kw-pipe-form", form)
            seen[form] = (await connection.call("CLIENT", "INFO")).decode()
            await connection.close()
        return seen
    seen = run(scenario())
    for form, db in (("user", 5), ("socket", 6), ("tls", 7)):
        assert server.command("EVAL", f"redis.call('SELECT', {db}) return "
                              "redis.call('GET', 'kw-pipe-form')", "0") == form
        assert f" db={db} " in seen[form]
    assert " user=reader " in seen["user"]


def tls_port_of(server: RedisServer) -> int:
    reply = server.command("CONFIG", "GET", "tls-port")
    assert isinstance(reply, list)
    port = int(str(reply[1]))
    return port


def test_a_tls_server_whose_certificate_is_not_trusted_is_refused(
        server: RedisServer, run: Runner, tmp_path: Path) -> None:
    other_ca = webcerts.issue(tmp_path, ["localhost"]).ca
    url = f"rediss://:{server.password}@localhost:{tls_port_of(server)}/0?ssl_ca_certs={other_ca}"

    async def scenario() -> str:
        connection = pipe(url)
        with pytest.raises(redis_pipe.Unavailable) as refused:
            await connection.call("PING")
        await connection.close()
        return str(refused.value)
    assert "CERTIFICATE_VERIFY_FAILED" in run(scenario())


def test_a_server_that_does_not_speak_resp_drops_the_connection(
        run: Runner) -> None:
    """A fault no real Redis makes on demand: a listener that answers garbage."""
    async def scenario() -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await reader.read(100)
            writer.close()
        listener = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        connection = pipe(f"redis://127.0.0.1:{port}/0")
        with pytest.raises(redis_pipe.Unavailable, match="not RESP"):
            await connection.call("PING")
        await connection.close()
        listener.close()
    run(scenario())


def test_a_listener_that_never_answers_fails_calls_within_their_timeout_quietly(
        run: Runner, caplog: pytest.LogCaptureFixture) -> None:
    """A fault no real Redis makes on demand: a socket that accepts and never answers
    (the handshake outlives every caller). Each call fails within its own timeout, and
    the handshake's later failure, awaited by no one, logs nothing."""
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up
            writer.close()
        listener = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        connection = pipe(f"redis://:pw@127.0.0.1:{port}/0", timeout=0.05,
                          connect_timeout=0.2)
        began = time.monotonic()
        with pytest.raises(redis_pipe.Late):
            await connection.call("PING")
        assert time.monotonic() - began < 0.15
        await asyncio.sleep(0.4)  # the handshake has failed by now, unawaited
        with pytest.raises(redis_pipe.Late):  # a new attempt lets go of the failed one
            await connection.call("PING")
        await connection.close()
        del connection
        gc.collect()  # a task whose failure no one retrieved would say so now
        listener.close()
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(scenario())
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
