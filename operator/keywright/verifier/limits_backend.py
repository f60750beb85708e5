"""The shared limits backend: exact rate limits across verifier replicas, on Redis.

Owns: the connection to Redis: to one Redis, redis_pipe's single pipelined connection
(redis://, rediss://, unix://, with the URL options it knows), else redis-py's asyncio
client with hiredis (the only module that imports redis-py): to the master a set of
Sentinels names (`redis+sentinel://`; asked again every second, so that no replica keeps
counting on an old master a failover left up), or to a Redis Cluster
(`redis+cluster://`), and parsing those URLs; checking at start that the URL, the
password and scripting work (one clear line and the verifier stops, never serving with
limits silently off), calling the script by SHA (loading it when Redis restarted, failed
over or a node forgot it), the per-call timeout, the circuit breaker that makes a dead
Redis cost no latency, what happens then (`on_error`: open lets the request through,
closed answers 429), one log line per state change, and the backend's metrics.
Must not: decide (the script and core/limits.py do), block the event loop, turn a
backend failure into a 5xx or a hung request, or put a password in a log line or an
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.backoff
import redis.cluster
import redis.connection
import redis.exceptions
import redis.retry
import redis.sentinel

from keywright.core import errors, limits
from keywright.verifier import index, limits_redis, ratelimit, redis_pipe

log = logging.getLogger(__name__)

URL_ENV = "KEYWRIGHT_REDIS_URL"
DEFAULT_TIMEOUT = 0.05  # seconds per call: a verification is worth more than a limit
COOLDOWN = (0.25, 4.0)  # seconds the breaker stays open: doubling from, up to
MASTER_POLL = 1.0  # seconds between asking the sentinels which node is master
# with redis-py's client (Sentinel, Cluster, URL options only it knows): calls in flight
# at once, under its 100 connections per pool (it fails the 101st at once, which is not
# an outage); a call waiting for its turn waits within its timeout
IN_FLIGHT = 64
COMMANDS_KEPT = 65536  # packed commands cached, one per KeyRecord in use
OnError = Literal["open", "closed"]
SENTINEL_SCHEME, CLUSTER_SCHEME = "redis+sentinel", "redis+cluster"
SENTINEL_FORM = "redis+sentinel://HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?sentinel_auth=yes]"
CLUSTER_FORM = "redis+cluster://HOST[:PORT][,HOST[:PORT]...]"
DEFAULT_PORTS = {SENTINEL_SCHEME: 26379, CLUSTER_SCHEME: 6379}
FORMS = f"redis://, rediss://, unix://, {SENTINEL_FORM} or {CLUSTER_FORM}"
_HOST = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<port6>[^:]*))?|"
                   r"(?P<name>[^:\[\]]+)(?::(?P<port>[^:]*))?")
_YES, _NO = ("1", "yes", "true", "on"), ("0", "no", "false", "off")


class BackendConfigError(errors.KeywrightError):
    """The limits backend is misconfigured (URL, password, scripting): the verifier must
    not start, since it would serve with limits silently off."""


@dataclass(frozen=True)
class Verdict:
    """The backend's answer for one request: a Decision, or None when the backend is
    down and `on_error` let the request through (or, closed, refused it)."""

    decision: limits.Decision | None
    rate: limits.Rate | None


@dataclass(frozen=True)
class Topology:
    """A `redis+sentinel://` or `redis+cluster://` URL, parsed. `nodes`: the sentinels,
    or the cluster nodes to discover the cluster from. The data nodes' user and password
    come from the URL's user information; the sentinels are given them too only with
    `sentinel_auth`."""

    kind: Literal["sentinel", "cluster"]
    nodes: tuple[tuple[str, int], ...]
    service: str = ""  # the name the sentinels monitor the master under
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_auth: bool = False

    def sentinel_credentials(self) -> dict[str, str | None]:
        """What the sentinels are given: the data nodes' user and password with
        `sentinel_auth`, else nothing."""
        if not self.sentinel_auth:
            return {}
        return {"username": self.username, "password": self.password}


def parse(url: str) -> Topology | None:
    """A Sentinel or Cluster URL's parts; None for a URL redis-py reads itself (redis://,
    rediss://, unix://). A malformed one raises BackendConfigError saying what is wrong
    without repeating any part of the URL (a password with a character it should have
    percent-encoded would end up in some other part)."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("rediss+sentinel", "rediss+cluster"):
        raise BackendConfigError("--redis-url: TLS is not supported with Sentinel or "
                                 "Redis Cluster (only rediss:// to a single Redis)")
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME) or "://" not in url:
        return None
    form = SENTINEL_FORM if scheme == SENTINEL_SCHEME else CLUSTER_FORM

    def bad(problem: str) -> BackendConfigError:
        return BackendConfigError(f"--redis-url: {problem}; expected {form}")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # brackets that make no IPv6 address
        raise bad("the hosts are not HOST[:PORT],... ([IPv6] in brackets)") from None
    if parts.fragment:
        raise bad("a '#' has no meaning here")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_node(one, i, DEFAULT_PORTS[scheme], bad)
                  for i, one in enumerate(hostlist.split(","), 1))
    try:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True,
                                       strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("the query is not NAME=VALUE&...") from None
    options = dict(query)
    user, secret = urllib.parse.unquote(username) or None, urllib.parse.unquote(password) or None
    if scheme == CLUSTER_SCHEME:
        if options:
            raise bad("a parameter after '?' (a cluster URL takes none)")
        if parts.path.strip("/") not in ("", "0"):
            raise bad("a Redis Cluster has only database 0")
        return Topology("cluster", nodes, username=user, password=secret)
    if set(options) - {"sentinel_auth"}:
        raise bad("an unknown parameter after '?' (there is only sentinel_auth)")
    auth = options.get("sentinel_auth", "no").lower()
    if auth not in _YES + _NO:
        raise bad("sentinel_auth is yes or no")
    path = parts.path.strip("/").split("/")
    if not path[0]:
        raise bad("no SERVICE (the master's name the sentinels monitor)")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdecimal()):
        raise bad("after SERVICE only a database number")
    return Topology("sentinel", nodes, urllib.parse.unquote(path[0]),
                    int(path[1]) if len(path) == 2 else 0, user, secret,
                    sentinel_auth=auth in _YES)


def _node(text: str, nth: int, default_port: int,
          bad: Callable[[str], BackendConfigError]) -> tuple[str, int]:
    found = _HOST.fullmatch(text)
    if not text or found is None:
        raise bad(f"host {nth} is not HOST or HOST:PORT" if text else f"host {nth} is missing")
    host = found["v6"] or found["name"]
    port = found["port6"] if found["v6"] else found["port"]
    if port is None:
        return host, default_port
    if not port.isdecimal() or not 0 < int(port) < 65536:
        raise bad(f"the port of host {nth} is not a number from 1 to 65535")
    return host, int(port)


def url_with_password(url: str, password_file: Path | None) -> str:
    """The URL, with the password from a mounted file when given (not on a command
    line, where `ps` would show it)."""
    if password_file is None:
        return url
    try:
        password = password_file.read_text().strip()
    except OSError as exc:
        raise BackendConfigError(f"--redis-password-file {password_file}: "
                                 f"{exc.strerror}") from None
    topology = parse(url)
    if topology is None:
        try:
            parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise BackendConfigError(f"--redis-url is not a Redis URL ({exc}); "
                                     f"expected {FORMS}") from None
        has_password = "password" in parsed
    else:
        has_password = topology.password is not None
    if has_password:
        raise BackendConfigError("--redis-url has a password and --redis-password-file "
                                 "gives one too: keep one")
    quoted = urllib.parse.quote(password, safe="")
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        return f"{url}{'&' if '?' in url else '?'}password={quoted}"
    end = min([i for i in map(rest.find, "/?#") if i >= 0] or [len(rest)])
    userinfo, _, hosts = rest[:end].rpartition("@")
    username = userinfo.partition(":")[0]
    return f"{scheme}://{username}:{quoted}@{hosts}{rest[end:]}"


def check(url: str, timeout: float = 2.0) -> str | None:
    """At start, before serving: the URL parses, the password is right, the servers are
    what the URL's scheme says (a single Redis, Sentinels that know SERVICE, cluster
    nodes) and Redis runs scripts. A misconfiguration raises BackendConfigError (one
    clear line); a Redis that is merely unreachable returns why, for a warning (an outage
    like any other)."""
    topology = parse(url)
    if topology is None:
        try:
            client = redis.Redis.from_url(url, socket_timeout=timeout,
                                          socket_connect_timeout=timeout, retry=_ONCE)
        except ValueError as exc:
            raise BackendConfigError(f"--redis-url is not a Redis URL ({exc}); "
                                     f"expected {FORMS}") from None
        return _check_node(client, "standalone")
    if topology.kind == "sentinel":
        return _check_sentinel(topology, timeout)
    return _check_cluster(topology, timeout)


_ONCE = redis.retry.Retry(redis.backoff.NoBackoff(), 0)  # a check says at once, not in 6 s
_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_KINDS = {"standalone": ("a single Redis", "redis://HOST:PORT/DB"),
          "sentinel": ("a Sentinel", SENTINEL_FORM),
          "cluster": ("a Redis Cluster node", CLUSTER_FORM)}


def _check_node(client: redis.Redis, expected: str, where: str = "") -> str | None:
    """One data node (closed after): the password, its kind, the script. Raises on a
    misconfiguration; returns why when it does not answer."""
    try:
        mode = _mode(client)
        if mode in _KINDS and mode != expected:
            kind, form = _KINDS[mode]
            raise BackendConfigError(f"--redis-url: {where or 'the server'} is {kind}, not "
                                     f"{_KINDS[expected][0]}: use {form}")
        client.script_load(limits_redis.SCRIPT)
    except redis.exceptions.AuthenticationError:
        raise BackendConfigError("Redis refused the password in --redis-url "
                                 "(or --redis-password-file)") from None
    except redis.exceptions.NoPermissionError as exc:
        raise BackendConfigError(f"Redis refused to load the limits script ({exc}); "
                                 "the verifier's user needs SCRIPT, EVALSHA and the "
                                 "commands the script runs") from None
    except redis.exceptions.ResponseError as exc:
        raise BackendConfigError(f"Redis refused the limits script ({exc})") from None
    except _UNREACHABLE as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def _mode(client: redis.Redis) -> str | None:
    """standalone, sentinel or cluster, as INFO says; None when INFO is not allowed."""
    try:
        server = client.info("server")
    except redis.exceptions.ResponseError:  # a user without INFO, a renamed command
        return None
    mode = server.get("redis_mode") or server.get("server_mode")
    return str(mode) if mode else None


def _check_sentinel(topology: Topology, timeout: float) -> str | None:
    if topology.sentinel_auth and topology.password is None:
        raise BackendConfigError("--redis-url has sentinel_auth=yes but no password (in "
                                 "the URL or --redis-password-file) to give the sentinels")
    away, asked = [], []
    master: tuple[str, int] | None = None
    for host, port in topology.nodes:
        where = f"{host}:{port}"
        client = redis.Redis(host=host, port=port, socket_timeout=timeout,
                             socket_connect_timeout=timeout, retry=_ONCE,
                             username=topology.username if topology.sentinel_auth else None,
                             password=topology.password if topology.sentinel_auth else None)
        try:
            mode = _mode(client)
            if mode in _KINDS and mode != "sentinel":
                kind, form = _KINDS[mode]
                raise BackendConfigError(f"--redis-url: {where} is {kind}, not a Sentinel: "
                                         f"use {form}")
            reply = client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", topology.service)
        except redis.exceptions.AuthenticationError:
            raise BackendConfigError(_sentinel_refused(topology, where)) from None
        except redis.exceptions.ResponseError as exc:
            raise BackendConfigError(f"--redis-url: Sentinel {where} refused SENTINEL "
                                     f"GET-MASTER-ADDR-BY-NAME ({exc})") from None
        except _UNREACHABLE as exc:
            away.append(f"{where}: {_describe(exc)}")
            continue
        finally:
            client.close()
        if reply:
            master = (_text(reply[0]), int(reply[1]))
            break
        asked.append(where)
    if master is None:
        if asked:
            raise BackendConfigError(f"--redis-url: no Sentinel knows a master named "
                                     f"{topology.service!r} (asked {', '.join(asked)})")
        return f"no Sentinel answers ({'; '.join(away)})"
    host, port = master
    why = _check_node(redis.Redis(host=host, port=port, db=topology.db, socket_timeout=timeout,
                                  socket_connect_timeout=timeout, retry=_ONCE,
                                  username=topology.username, password=topology.password),
                      "standalone", f"the master {host}:{port}")
    return None if why is None else f"the master Sentinel names, {host}:{port}: {why}"


def _sentinel_refused(topology: Topology, where: str) -> str:
    if not topology.sentinel_auth:
        return (f"--redis-url: {where} wants a password: if it is a Sentinel, add "
                "?sentinel_auth=yes to give the sentinels the data nodes' password")
    return (f"Sentinel {where} refused the password in --redis-url (or "
            "--redis-password-file), which sentinel_auth=yes gives the sentinels too")


def _check_cluster(topology: Topology, timeout: float) -> str | None:
    away = []
    for host, port in topology.nodes:
        where = f"{host}:{port}"
        why = _check_node(redis.Redis(host=host, port=port, socket_timeout=timeout,
                                      socket_connect_timeout=timeout, retry=_ONCE,
                                      username=topology.username,
                                      password=topology.password), "cluster", where)
        if why is None:
            break
        away.append(f"{where}: {why}")
    else:
        return f"no cluster node answers ({'; '.join(away)})"
    try:  # one node is right: now every primary, through the cluster's own map
        cluster = _sync_client(topology, timeout, retry=_ONCE)[0]
        try:
            cluster.script_load(limits_redis.SCRIPT)
        finally:
            cluster.close()
    except redis.exceptions.AuthenticationError:
        raise BackendConfigError("a Redis Cluster node refused the password in --redis-url "
                                 "(or --redis-password-file)") from None
    except (redis.exceptions.RedisClusterException, redis.exceptions.ClusterDownError,
            *_UNREACHABLE) as exc:
        return f"the cluster is not ready: {_describe(exc)}"
    except redis.exceptions.ResponseError as exc:
        raise BackendConfigError(f"a Redis Cluster node refused the limits script "
                                 f"({exc})") from None
    return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


Closers = list[Callable[[], Any]]
# what Redis names the script (SHA-1 is its name for it, not a security measure)
SCRIPT_SHA = hashlib.sha1(limits_redis.SCRIPT.encode(), usedforsecurity=False).hexdigest()
# the URL options redis_pipe's connection honours; with any other, redis-py's client
_PIPE_OPTIONS = {"host", "port", "path", "db", "username", "password", "client_name",
                 "connection_class", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
                 "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
              "required": ssl.CERT_REQUIRED}


def pipe_address(url: str) -> redis_pipe.Address | None:
    """Where redis_pipe connects for a redis://, rediss:// or unix:// URL whose options
    it knows, read as redis-py reads it; None for any other URL (redis-py's client)."""
    if parse(url) is not None:
        return None
    options = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    if not set(options) <= _PIPE_OPTIONS:
        return None
    kind = options.pop("connection_class", None)
    tls = None
    if kind is redis.connection.SSLConnection:
        reqs = options.get("ssl_cert_reqs", "required")
        if reqs not in _CERT_REQS:
            return None
        tls = ssl.create_default_context(cafile=options.get("ssl_ca_certs"),
                                         capath=options.get("ssl_ca_path"))
        tls.check_hostname = bool(options.get("ssl_check_hostname", True)) and (
            reqs != "none")
        tls.verify_mode = _CERT_REQS[reqs]
        if "ssl_certfile" in options:
            tls.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    elif kind not in (None, redis.connection.UnixDomainSocketConnection):
        return None
    return redis_pipe.Address(
        host=options.get("host") or "localhost", port=int(options.get("port") or 6379),
        path=options.get("path"), db=int(options.get("db") or 0),
        username=options.get("username") or None, password=options.get("password"),
        tls=tls, client_name=options.get("client_name"))


def _sync_client(topology: Topology, timeout: float,
                 retry: redis.retry.Retry | None = None) -> tuple[Any, Closers]:
    """A blocking client for a Sentinel's master or a cluster, and what closes it all.
    A cluster client connects at once (and raises if it cannot)."""
    timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if topology.kind == "sentinel":
        sentinels = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(topology.nodes), sentinel_kwargs={**timeouts,
                                                   **topology.sentinel_credentials()},
            **timeouts)
        master = sentinels.master_for(  # type: ignore[no-untyped-call]
            topology.service, db=topology.db, username=topology.username,
            password=topology.password, socket_timeout=timeout,
            socket_connect_timeout=timeout)
        return master, [master.close, *(s.close for s in sentinels.sentinels)]
    cluster = redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                       for host, port in topology.nodes],
        username=topology.username, password=topology.password, socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=retry)
    return cluster, [cluster.close]


def _async_client(url: str, timeout: float) -> tuple[Any, Closers]:
    """The worker's client for any URL form, and what closes it all (coroutines). It
    connects on its first command."""
    timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    topology = parse(url)
    if topology is None:
        client = redis.asyncio.Redis.from_url(url, health_check_interval=0,
                                              socket_timeout=timeout,
                                              socket_connect_timeout=timeout)
        return client, [client.aclose]
    if topology.kind == "sentinel":
        sentinels = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(topology.nodes), sentinel_kwargs={**timeouts,
                                                   **topology.sentinel_credentials()},
            **timeouts)
        master = sentinels.master_for(
            topology.service, db=topology.db, health_check_interval=0,
            username=topology.username, password=topology.password, socket_timeout=timeout,
            socket_connect_timeout=timeout)
        return master, [master.aclose, sentinels.aclose]
    cluster = redis.asyncio.cluster.RedisCluster(
        startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port)
                       for host, port in topology.nodes],
        health_check_interval=0, username=topology.username, password=topology.password,
        socket_timeout=timeout, socket_connect_timeout=timeout)
    return cluster, [cluster.aclose]


class RedisLimits:
    """One per event loop (the verifier's worker). `now` is only for the breaker."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 on_error: OnError = "open", on_quota_error: OnError = "closed",
                 now: Callable[[], float] = time.monotonic) -> None:
        self.url, self.timeout, self._now = url, timeout, now
        self.on_error, self.on_quota_error = on_error, on_quota_error
        self._client: Any = None  # redis.asyncio's Redis or RedisCluster
        self._closers: Closers = []
        self._follower: asyncio.Task[None] | None = None
        self._sha: str | None = None
        self.up = True
        self._open_until = 0.0
        self._cooldown = COOLDOWN[0]
        self.errors = 0  # for the metrics: calls that failed or timed out
        self._turns = asyncio.Semaphore(IN_FLIGHT)
        address = pipe_address(url)
        self._pipe = None if address is None else redis_pipe.Pipeline(address, timeout)
        # per KeyRecord (they are immutable): its rate and its EVALSHA, packed
        self._commands: dict[int, tuple[index.KeyRecord, limits.Rate | None, bytes]] = {}

    async def check(self, record: index.KeyRecord) -> Verdict:
        """One round trip for a key with a rate limit or a quota (both checked at once):
        the script's decision, or None (down)."""
        cached = self._commands.get(id(record))
        if cached is None or cached[0] is not record:
            cached = self._command(record)
        rate = cached[1]
        if self._now() < self._open_until:
            return Verdict(None, rate)  # the breaker is open: no call, no wait
        try:
            reply = await (self._piped(cached[2]) if self._pipe is not None else
                           asyncio.wait_for(self._in_turn(record, rate), self.timeout))
        except Exception as exc:  # any failure of the backend is an outage
            self._failed(exc)
            return Verdict(None, rate)
        if not self.up:
            self.up = True
            self._cooldown = COOLDOWN[0]
            log.warning("limits backend: Redis answers again; limits are shared and exact")
        return Verdict(limits_redis.decision(reply), rate)

    def _command(self, record: index.KeyRecord,
                 ) -> tuple[index.KeyRecord, limits.Rate | None, bytes]:
        rate = ratelimit.rate_of(record)
        keys = limits_redis.keys(record.namespace, record.name)
        argv = limits_redis.arguments(rate, record.quota, record.reset_token, record.seed)
        if len(self._commands) >= COMMANDS_KEPT:  # records replaced over time: start anew
            self._commands.clear()
        made = self._commands[id(record)] = (
            record, rate, redis_pipe.pack("EVALSHA", SCRIPT_SHA, len(keys), *keys, *argv))
        return made

    async def _piped(self, command: bytes) -> Any:
        """One EVALSHA on the pipelined connection (its timeout is the pipe's): the
        script's SHA is known without asking, so it is loaded only when Redis answers
        NOSCRIPT, and the call made again, all within the first call's timeout."""
        assert self._pipe is not None
        began = asyncio.get_running_loop().time()
        try:
            return await self._pipe.send(command)
        except redis_pipe.ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        async with asyncio.timeout_at(began + self.timeout):
            await self._pipe.call("SCRIPT", "LOAD", limits_redis.SCRIPT)
            return await self._pipe.send(command)

    async def _in_turn(self, record: index.KeyRecord, rate: limits.Rate | None) -> Any:
        async with self._turns:
            return await self._call(record, rate)

    async def _call(self, record: index.KeyRecord, rate: limits.Rate | None) -> Any:
        client = self._client
        if client is None:
            client, self._closers = _async_client(self.url, self.timeout)
            self._client = client
            pool = getattr(client, "connection_pool", None)
            if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
                self._follower = asyncio.get_running_loop().create_task(self._follow(pool))
        keys = limits_redis.keys(record.namespace, record.name)
        argv = limits_redis.arguments(rate, record.quota, record.reset_token, record.seed)
        if self._sha is None:
            self._sha = await client.script_load(limits_redis.SCRIPT)
        try:
            return await client.evalsha(self._sha, len(keys), *keys, *argv)
        except redis.exceptions.NoScriptError:  # Redis restarted, failed over, or a
            # cluster node is new: it does not have it (a cluster loads it on every master)
            self._sha = await client.script_load(limits_redis.SCRIPT)
            return await client.evalsha(self._sha, len(keys), *keys, *argv)

    async def _follow(self, pool: redis.asyncio.sentinel.SentinelConnectionPool) -> None:
        """With Sentinel, every MASTER_POLL: which node is master. When it is another,
        the connections to the old one go (idle ones now, busy ones when their call
        ends): a failover that leaves the old master up and writable, as SENTINEL
        FAILOVER does for about 10 s, must not keep this replica counting there while
        the others count on the new one. A connection that breaks asks anyway."""
        master = None
        while True:
            await asyncio.sleep(MASTER_POLL)
            try:
                address = await asyncio.wait_for(
                    pool.get_master_address(),  # type: ignore[no-untyped-call]
                    max(1.0, self.timeout))
                if master is not None and address != master:
                    log.warning("limits backend: the sentinels name another master, "
                                "%s:%s; calls go there now", *address)
                    await pool.disconnect(inuse_connections=False)
                    await pool.update_active_connections_for_reconnect()  # type: ignore[no-untyped-call]
                master = address
            except Exception:  # noqa: S112 - an outage: the calls themselves report it
                continue

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        now = self._now()
        if now < self._open_until:
            return  # calls already in flight when the breaker opened: the same outage
        # opened (again, if the probe after a cooldown failed): each time for longer
        self._open_until = now + self._cooldown
        self._cooldown = min(COOLDOWN[1], self._cooldown * 2)
        if self.up:
            self.up = False

            def what(mode: OnError) -> str:
                return "lets them through" if mode == "open" else "refuses them (429)"
            log.warning("limits backend: Redis failed (%s); until it answers again, for "
                        "keys with a rate limit the verifier %s, for keys with a quota "
                        "it %s", _describe(exc), what(self.on_error),
                        what(self.on_quota_error))

    async def close(self) -> None:
        if self._pipe is not None:
            await self._pipe.close()
        if self._follower is not None:
            self._follower.cancel()
        for close in self._closers:
            await close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, redis_pipe.Late | redis_pipe.Unavailable):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer within the timeout"
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WriteClaims:
    """At most one status write per ApiKey per interval across every replica: before a
    replica sends a key's usage patch it claims the key in Redis (SET NX with an
    expiry); a replica that finds it claimed keeps its note for later. Synchronous: the
    usage thread calls it, with a connection of its own. If Redis cannot be asked, the
    replica writes anyway (usage is never lost; the bound is then per replica)."""

    def __init__(self, url: str, interval: float, timeout: float = 0.5) -> None:
        self.interval = interval
        self._url, self._timeout = url, timeout
        self._topology = parse(url)
        self._connection: tuple[Any, Closers] | None = None
        self._ask_master_at = 0.0

    def _client(self) -> Any:
        """Made on first use: a cluster client connects when made, and Redis may be
        away when the verifier starts. With Sentinel, at most every MASTER_POLL, which
        node is master: a connection to one that is no longer (still up after a
        failover) is dropped, as RedisLimits does."""
        if self._connection is None:
            if self._topology is None:
                client = redis.Redis.from_url(self._url, socket_timeout=self._timeout,
                                              socket_connect_timeout=self._timeout)
                self._connection = client, [client.close]
            else:
                self._connection = _sync_client(self._topology, self._timeout)
        client = self._connection[0]
        pool = getattr(client, "connection_pool", None)
        if isinstance(pool, redis.sentinel.SentinelConnectionPool) \
                and time.monotonic() >= self._ask_master_at:
            self._ask_master_at = time.monotonic() + MASTER_POLL
            with contextlib.suppress(*_FAILURES):  # the call itself will say
                pool.get_master_address()  # type: ignore[no-untyped-call]
        return client

    def claim(self, namespace: str, name: str) -> bool:
        key = limits_redis.keys(namespace, name)[0].replace(":rate", ":written")
        try:
            return bool(self._client().set(key, "1", nx=True,
                                           px=max(1, int(self.interval * 1000))))
        except _FAILURES:
            return True

    def credits(self, namespace: str, name: str) -> tuple[int, float, str] | None:
        """The key's quota as Redis holds it (credits, refilled at in seconds, the reset
        annotation's value they count from), or None (no quota there, or Redis cannot be
        asked). Before a refill that is due but not yet applied, this counts fewer credits
        than there are: restarting from it never hands out a credit twice."""
        key = limits_redis.keys(namespace, name)[1]
        try:
            credits, refilled, token = self._client().hmget(
                key, ["credits", "refilled_at", "token"])
        except _FAILURES:
            return None
        if credits is None or refilled is None:
            return None
        return (max(0, int(credits)), int(refilled) / limits.MICROS,
                token.decode() if isinstance(token, bytes) else str(token or ""))

    def close(self) -> None:
        for close in self._connection[1] if self._connection else []:
            close()


_FAILURES = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)
