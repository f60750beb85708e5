"""`keywright verifier`: the index, its watches, the usage patches and the HTTP server.

Owns: wiring the parts together and running them; the only module that imports the
HTTP server. That is granian (a Rust HTTP stack running the ASGI app), in its own
process model: a supervisor process and one worker, which builds the app through the
`worker_app` factory. Chosen by measuring (benchmarks/verify_servers.py, figures in
docs/benchmarks.md): the same app on one core served about a fifth more verifications
per second, with a lower p50, than under uvicorn + httptools + uvloop.
Audit lines go to stdout, diagnostics to stderr.
Must not: decide anything (decision.py does) or log a key or a pepper.
"""

from __future__ import annotations

import atexit
import dataclasses
import ipaddress
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from granian import Granian
from granian.constants import Interfaces, Loops
from granian.http import HTTP1Settings

from keywright import kube
from keywright.core import names
from keywright.kits import processes
from keywright.verifier import (
    app,
    audit,
    decision,
    index,
    limits_backend,
    sync,
    usage,
    usagepatch,
)

log = logging.getLogger(__name__)
OPTIONS_ENV = "KEYWRIGHT_VERIFIER_OPTIONS"  # how the supervisor hands options to its worker
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class Options:
    host: str = "0.0.0.0"  # noqa: S104 - a Service in front of it is the point
    port: int = 8080
    kubeconfig: str | None = None
    pepper_namespace: str = names.DEFAULT_NAMESPACE
    namespaces: Sequence[str] = ()
    key_headers: Sequence[str] = ()  # extra key headers, after X-API-Key
    trusted_proxies: Sequence[str] = ()  # CIDRs
    max_staleness: float = 0.0
    audit: bool = True
    keep_alive: int = 75  # longer than gateways keep idle upstream connections (nginx: 60)
    log_level: str = "INFO"
    redis_url: str | None = None  # the shared limits backend; None: in-process limits
    redis_password_file: str | None = None
    redis_timeout: float = limits_backend.DEFAULT_TIMEOUT
    on_backend_error: str | None = None  # None: open for rate limits, closed for quotas


def build(api: kube.Kube, options: Options,
          shared: limits_backend.RedisLimits | None = None) -> tuple[app.Verifier, sync.Sync]:
    """The ASGI app and the sync loop that feeds it, not yet started."""
    keys = index.Index()
    policy = decision.Policy(
        key_headers=tuple(dict.fromkeys([decision.KEY_HEADER,
                                         *(h.lower() for h in options.key_headers)])),
        trusted_proxies=tuple(ipaddress.ip_network(n, strict=False)
                              for n in options.trusted_proxies))
    syncer = sync.Sync(api, keys, options.pepper_namespace, options.namespaces)
    verifier = app.Verifier(
        keys, peppers=lambda: syncer.peppers, ready=lambda: syncer.ready,
        staleness=syncer.seconds_since_sync,
        settings=app.VerifierSettings(policy=policy, max_staleness=options.max_staleness,
                              audit=options.audit), shared=shared)
    syncer.forget = verifier.forget
    syncer.restarted = lambda label: verifier.metrics.watch_restarts.labels(
        label.partition(" ")[0]).inc()
    return verifier, syncer


def serve(options: Options) -> None:
    """Run until interrupted: granian's supervisor here, the app in its worker. Serves at
    once; /readyz says when answers mean something."""
    if options.redis_url:
        url = limits_backend.url_with_password(
            options.redis_url,
            Path(options.redis_password_file) if options.redis_password_file else None)
        options = dataclasses.replace(options, redis_url=url, redis_password_file=None)
        away = limits_backend.check(url)  # a misconfiguration stops us here, in one line
        if away is not None:
            log.warning("limits backend: Redis does not answer yet (%s); serving as while "
                        "it is down (--on-backend-error) until it does", away)
        else:
            log.info("rate limits are shared on Redis: exact across every replica")
    else:
        log.info("rate limits are in-process: exact only while one replica serves "
                 "(--redis-url shares them)")
    os.environ[OPTIONS_ENV] = json.dumps(dataclasses.asdict(options))
    log.info("verifier listening on %s:%d", options.host, options.port)
    Granian(
        f"{__name__}:worker_app", factory=True, address=options.host, port=options.port,
        interface=Interfaces.ASGI, workers=1, runtime_threads=1, loop=Loops.uvloop,
        # an idle keep-alive connection waits for its next request's headers this long
        http1_settings=HTTP1Settings(header_read_timeout=options.keep_alive * 1000),
        log_access=False, log_dictconfig=_granian_logging(options.log_level),
    ).serve()


def worker_app() -> app.Verifier:
    """granian's factory, run in its worker process: everything that holds state."""
    processes.die_with_parent()  # a SIGKILLed supervisor must not leave the worker behind
    # the watch and usage threads hand the GIL back to the request loop sooner than the
    # default 5 ms: that wait is what a request's tail latency would be made of
    sys.setswitchinterval(0.0005)
    raw = json.loads(os.environ[OPTIONS_ENV])
    options = Options(**raw)
    logging.basicConfig(level=options.log_level, stream=sys.stderr, format=LOG_FORMAT,
                        force=True)
    audit_to_stdout(options.audit)
    api = kube.Kube.connect(options.kubeconfig, component="keywright-verifier")
    shared = limits_backend.RedisLimits(
        options.redis_url, timeout=options.redis_timeout,
        on_error="closed" if options.on_backend_error == "closed" else "open",
        on_quota_error="open" if options.on_backend_error == "open" else "closed",
    ) if options.redis_url else None
    verifier, syncer = build(api, options, shared)
    syncer.start()
    claims = limits_backend.WriteClaims(options.redis_url, usage.INTERVAL) \
        if options.redis_url else None
    threading.Thread(target=usagepatch.run, args=(api, verifier, threading.Event(), claims),
                     daemon=True, name="usage patches").start()
    return verifier


def audit_to_stdout(enabled: bool = True) -> None:
    """Audit lines to stdout, batched; diagnostics stay on the root logger (stderr)."""
    # a record per request: skip what no format here uses (the logging docs'
    # "Optimization" section): caller frames, thread and process names
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logger = logging.getLogger(audit.log.name)
    logger.propagate = False  # audit lines are data, not diagnostics: their own stream
    logger.setLevel(logging.INFO if enabled else logging.CRITICAL)
    handler = audit.BatchedStream(sys.stdout)
    logger.addHandler(handler)
    atexit.register(handler.close)


def _granian_logging(level: str) -> dict[str, object]:
    """granian's own lines to stderr with ours: stdout carries only audit lines."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"generic": {"format": LOG_FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "generic",
                                "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": {"handlers": ["stderr"], "level": level,
                                 "propagate": False}},
    }
