"""One pipelined connection to one standalone Redis: the shared limits' hot path.

Owns: the socket (TCP, TLS or Unix) to one Redis, the RESP wire (hiredis packs the
commands and parses the replies; the only module that imports it), and pipelining:
every caller's command goes out on the one connection when the event loop next turns
(all of that turn's commands in one send), and the replies, which Redis sends in order,
go back to their callers in order. AUTH, SELECT and CLIENT SETNAME when it connects,
before any caller's command; per-call deadlines (one timer for all of them: the oldest
call is the first due); dropping a connection whose replies stopped coming; connecting
again, lazily, on the next call. A call that timed out or was cancelled keeps its place,
so that its late reply is read and dropped, never handed to the next caller.
Must not: know what the commands mean or retry one (a command that was sent may have
run; limits_backend decides), block the event loop, or put a password in an error.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass, field
from typing import Any

import hiredis

MAX_WAITING = 1024  # calls sent and not yet answered; more is an overload, refused at once
STALL = 1.0  # seconds past its deadline the oldest unanswered call may wait: then the
# connection is taken for dead (a hung Redis or a half-open TCP) and dropped
CONNECT_TIMEOUT = 2.0  # seconds to connect and authenticate; callers wait within theirs


class ReplyError(Exception):
    """Redis answered the command with an error (its message, e.g. `NOSCRIPT ...`)."""


class Unavailable(ConnectionError):
    """No connection, or it broke with the call unanswered (which may have run)."""


class Late(TimeoutError):
    """No answer within the call's timeout, or too many calls already waiting."""


@dataclass(frozen=True)
class Address:
    """Where the Redis is and how to log in: host and port, or a Unix socket's path."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    client_name: str | None = None


def pack(*args: str | bytes | int) -> bytes:
    """One command in RESP, as Redis reads it."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # stub: 1-tuples
    return packed


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class _Protocol(asyncio.Protocol):
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe

    def data_received(self, data: bytes) -> None:
        self.pipe._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._lost(self, exc)


class Pipeline:
    """One per event loop. `call` sends one command and returns its reply."""

    def __init__(self, address: Address, timeout: float, *,
                 max_waiting: int = MAX_WAITING, stall: float = STALL,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.address, self.timeout = address, timeout
        self.max_waiting, self.stall, self.connect_timeout = max_waiting, stall, connect_timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._ready = False  # connected, and the handshake's commands answered
        self._connecting: asyncio.Task[None] | None = None
        # (deadline, future) per command sent on this connection and not yet answered,
        # in the order Redis answers them, which is the deadlines' order too (each is
        # `timeout` after it was sent; the handshake's, longer, are alone in it); the
        # first `_expired` are past their deadline
        self._waiting: collections.deque[tuple[float, asyncio.Future[Any]]] = (
            collections.deque())
        self._expired = 0
        self._out: list[bytes] = []
        self._flushing = False
        self._timer: asyncio.TimerHandle | None = None
        self._reader = hiredis.Reader(replyError=ReplyError)
        self.connects = 0  # connections made (for tests and metrics)

    @property
    def connected(self) -> bool:
        """Connected and logged in (else the next call connects)."""
        return self._ready

    async def call(self, *args: str | bytes | int) -> Any:
        """The reply to one command within `timeout`; raises ReplyError, Unavailable or
        Late."""
        return await self.send(pack(*args))

    async def send(self, command: bytes) -> Any:
        """`call` for a command packed before (`pack`): one a caller sends again and
        again need not be packed each time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if not self._ready:
            await self._connected(deadline)
        return await self._send(loop, deadline, command)

    def _send(self, loop: asyncio.AbstractEventLoop, deadline: float,
              command: bytes) -> asyncio.Future[Any]:
        if len(self._waiting) >= self.max_waiting:
            raise Late(f"{len(self._waiting)} calls already waiting for Redis")
        future = loop.create_future()
        self._waiting.append((deadline, future))
        self._out.append(command)
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        if self._timer is None or deadline < self._timer.when():  # after the handshake's
            self._schedule(loop, deadline)
        return future

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire)

    def _flush(self) -> None:
        self._flushing = False
        if self._transport is not None and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    async def _connected(self, deadline: float) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
            # its failure is each waiting caller's; with none left waiting, no one's
            self._connecting.add_done_callback(_retrieved)
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(asyncio.shield(self._connecting), max(0.0, remaining))
        except TimeoutError:
            raise Late("not connected within the timeout") from None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        address = self.address
        try:
            async with asyncio.timeout(self.connect_timeout):
                if address.path is not None:
                    transport, protocol = await loop.create_unix_connection(
                        lambda: _Protocol(self), address.path)
                else:
                    transport, protocol = await loop.create_connection(
                        lambda: _Protocol(self), address.host, address.port,
                        ssl=address.tls,
                        server_hostname=address.host if address.tls else None)
        except TimeoutError:
            raise Unavailable("could not connect within "
                              f"{self.connect_timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, or TLS (ssl.SSLError): what and why
            raise Unavailable(f"could not connect: {str(exc)[:200] or type(exc).__name__}"
                              ) from None
        self._transport, self._protocol = transport, protocol
        self._reader = hiredis.Reader(replyError=ReplyError)
        handshake: list[tuple[str, ...]] = []
        if address.password is not None:
            handshake.append(("AUTH", address.username, address.password)
                             if address.username else ("AUTH", address.password))
        if address.db:
            handshake.append(("SELECT", str(address.db)))
        if address.client_name:
            handshake.append(("CLIENT", "SETNAME", address.client_name))
        deadline = loop.time() + self.connect_timeout
        try:
            for command in handshake:
                await self._send(loop, deadline, pack(*command))
        except ReplyError as exc:
            transport.abort()
            raise Unavailable(f"{command[0]} refused: {str(exc)[:200]}") from None
        except BaseException:
            transport.abort()
            raise
        self._ready = True
        self.connects += 1

    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return  # a connection already dropped
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                if not self._waiting:
                    raise hiredis.ProtocolError("a reply no command asked for")
                _, future = self._waiting.popleft()
                if self._expired:
                    self._expired -= 1
                if future.done():
                    continue  # timed out or cancelled: its late reply goes nowhere
                if isinstance(reply, ReplyError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except hiredis.ProtocolError:
            self._drop(Unavailable("Redis sent what is not RESP"))

    def _expire(self) -> None:
        """Fail the calls past their deadline; drop a connection that stopped answering."""
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        waiting = self._waiting
        if self._expired and waiting[0][0] + self.stall <= now:
            self._drop(Unavailable(f"Redis stopped answering (nothing for {self.stall:g} s "
                                   "past a call's timeout)"))
            return
        while self._expired < len(waiting):
            deadline, future = waiting[self._expired]
            if deadline > now:
                self._schedule(loop, deadline)
                return
            if not future.done():
                future.set_exception(Late("no answer within the timeout"))
            self._expired += 1
        if waiting:  # all expired: look again when the oldest has stalled
            self._schedule(loop, waiting[0][0] + self.stall)

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is self._protocol:
            self._drop(Unavailable("the connection to Redis closed" if exc is None else
                                   f"the connection to Redis broke: {type(exc).__name__}"))

    def _drop(self, error: Exception) -> None:
        """Forget the connection: every unanswered call fails with `error`."""
        transport, self._transport, self._protocol = self._transport, None, None
        self._ready = False
        if transport is not None:
            transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, collections.deque()
        self._expired = 0
        self._out.clear()
        for _, future in waiting:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        self._drop(Unavailable("closed"))
