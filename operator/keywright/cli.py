"""The `keywright` command line.

Owns: argument parsing and what each subcommand prints; the work itself lives in the
modules it calls.
Must not: hold logic that a test would have to drive through a subprocess to reach.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import types
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import kopf

from keywright import kube
from keywright.controller import metrics, pepper, reconcile, redispassword
from keywright.core import aging, crd, durations, errors, names, tokens
from keywright.scanning import files

# the gateway the verifier's end-to-end tests put in front of it (with headers-more, which
# strips every X-Keywright-* header a client sends) and Caddy, the benchmarks' load, and
# Prometheus (prometheus scrapes in the monitoring tests, promtool checks
# deploy/monitoring's rules)
TOOL_PACKAGES = ("nginx", "libnginx-mod-http-headers-more-filter", "caddy", "wrk", "age",
                 "tmux", "prometheus")
SCAN_MAX_MEGABYTES = 100  # `keywright scan` reads 20 to 25 MB/s of text (docs/scanning.md)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except errors.KeywrightError as exc:
        print(f"keywright: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keywright", description="API keys on Kubernetes.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="run Keywright on a local control plane")
    dev.add_argument("--workdir", type=Path, help="data directory (default: a fresh one)")
    dev.add_argument("--node", action="store_true",
                     help="real Pods instead: build the image, start a node (kubelet, "
                     "containerd, kube-proxy in a network namespace; needs root) and "
                     "install deploy/k8s-1.20 with kubectl")
    dev.set_defaults(run=_dev)

    cluster = commands.add_parser("cluster", help="the local control plane")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True,
                                              metavar="ACTION")
    prepare = cluster_commands.add_parser(
        "prepare", help="install Debian packages (the control plane's and the node's, "
        "buildah, nginx and wrk for tests and benchmarks) and build or reuse the cached "
        "binaries and base images")
    prepare.set_defaults(run=_prepare)

    image = commands.add_parser(
        "image", help="build the container image from deploy/Dockerfile with buildah (no "
        "engine or registry needed) into a docker-archive")
    image.add_argument("--output", type=Path, default=Path("dist"), metavar="DIR",
                       help="where keywright-VERSION.tar goes (default: dist)")
    image.add_argument("--source", type=Path, default=Path(), metavar="DIR",
                       help="the repository checkout to build (default: .)")
    image.set_defaults(run=_image)

    crd_command = commands.add_parser(
        "crd", help="print the CRDs (ApiKey, ApiKeyRole) the models generate")
    crd_command.add_argument("--write", type=Path, metavar="DIR",
                             help="write them into DIR, one file each")
    crd_command.set_defaults(run=_crd)

    scan = commands.add_parser(
        "scan", help="look for leaked Keywright keys in files",
        description="Look for Keywright keys in files, checksum and all, written out or "
        "in base64 (as a Secret's data is printed): prints FILE:LINE: and the key's "
        "preview for each, never the key. Exit 1 when one is found, 0 when none, 2 for a "
        "path that does not exist or a file that could not be read.")
    scan.add_argument("paths", nargs="+", type=_existing_path, metavar="PATH",
                      help="a file, or a directory to walk (skipping .git, symbolic links "
                      "and binary files); - for standard input")
    scan.add_argument("--max-megabytes", type=_positive, default=SCAN_MAX_MEGABYTES,
                      metavar="MB", help="skip a file larger than this, saying so "
                      f"(default: {SCAN_MAX_MEGABYTES})")
    scan.set_defaults(run=_scan)

    op = commands.add_parser("operator", help="the controller (Kopf), on the current kubeconfig")
    _common(op, "watch only this namespace (repeatable; default: all)")
    op.add_argument("--default-prefix", default=names.DEFAULT_PREFIX, type=_prefix,
                    help="key prefix when an ApiKey sets none (default: kw)")
    op.add_argument("--workers", type=_positive, default=8,
                    help="threads running reconciles (default: 8)")
    op.add_argument("--webhook-port", type=_port_or_zero, default=0, metavar="PORT",
                    help="serve the admission webhooks (ApiKey validation, Pod injection) "
                    "over TLS on this port (default: 0, off)")
    reach = op.add_mutually_exclusive_group()
    reach.add_argument("--webhook-service", metavar="NAME",
                       help="the API server reaches the webhooks through this Service in "
                       "--namespace (in a cluster)")
    reach.add_argument("--webhook-host", metavar="HOST",
                       help="the API server reaches the webhooks at https://HOST:PORT "
                       "(a local control plane); also the address listened on")
    op.add_argument("--webhook-cert-dir", type=Path, metavar="DIR",
                    help="ca.crt, tls.crt and tls.key to serve with (e.g. from "
                    "cert-manager); default: a CA and certificate made at start")
    op.add_argument("--liveness", metavar="URL",
                    help="serve Kopf's health check here, e.g. http://0.0.0.0:8081/healthz")
    op.add_argument("--metrics-port", type=_port_or_zero, default=0, metavar="PORT",
                    help="serve Prometheus metrics (one set per ApiKey: expiration, last "
                    "use, readiness, credits) on http://HOST:PORT/metrics (default: 0, off)")
    op.add_argument("--metrics-host", default="0.0.0.0",  # noqa: S104 - scraped in-cluster
                    metavar="HOST", help="address the metrics are served on (default: "
                    "0.0.0.0, every interface)")
    op.add_argument("--expiry-warnings", type=_warnings, default=aging.DEFAULT_EXPIRY_WARNINGS,
                    metavar="DURATIONS", help="before expiry, the ExpiringSoon condition "
                    "from the longest and a Warning event at each, comma-separated "
                    "<n>s|m|h|d, or none (default: 14d,1d)")
    op.add_argument("--never-used-after", type=_never_used, metavar="DURATION",
                    default=aging.DEFAULT_NEVER_USED_AFTER, help="a key unused this long "
                    "after its creation gets condition Used=False (NeverUsed) and a Warning "
                    "event; <n>s|m|h|d, or none (default: 7d)")
    op.add_argument("--redis-password-secret", metavar="NAME",
                    help="make Secret NAME in --namespace with a new Redis password (keys "
                    "password and auth.conf) if it does not exist; deploy/ runs its Redis "
                    "and verifiers with it")
    op.set_defaults(run=_operator)

    ver = commands.add_parser("verifier", help="the verification service gateways call")
    _common(ver, "index only this namespace's ApiKeys (repeatable; default: all)")
    ver.add_argument("--host", default="0.0.0.0",  # noqa: S104 - behind a Service
                     help="address to listen on (default: 0.0.0.0, every interface; "
                     "127.0.0.1 for this machine only)")
    ver.add_argument("--port", type=_port, default=8080, help="port (default: 8080)")
    ver.add_argument("--key-header", action="append", default=[], metavar="NAME",
                     type=_header_name, help="also take the key from this header, after "
                     "X-API-Key and before Authorization (repeatable)")
    ver.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                     type=_network, help="peers whose X-Forwarded-For / X-Real-IP is "
                     "believed (repeatable; default: none)")
    ver.add_argument("--max-staleness", type=float, default=0.0, metavar="SECONDS",
                     help="/readyz fails when the index has been out of touch with the API "
                     "server this long (default: 0, never: the last snapshot keeps serving)")
    ver.add_argument("--redis-url", default=os.environ.get("KEYWRIGHT_REDIS_URL"),
                     metavar="URL", help="share rate limits and quotas across replicas, "
                     "exactly, on this Redis: redis://HOST:PORT/DB, rediss:// "
                     "(TLS) or unix:///PATH for one server; "
                     "redis+sentinel://HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB] for the "
                     "master the sentinels name SERVICE (port 26379 by default; add "
                     "?sentinel_auth=yes when the sentinels want the password too); "
                     "redis+cluster://HOST[:PORT][,HOST[:PORT]...] for a Redis Cluster "
                     "(one or more of its nodes, which name the rest; port 6379 by default). "
                     "The password goes in the "
                     "URL or --redis-password-file (default: $KEYWRIGHT_REDIS_URL; none: "
                     "each replica limits on its own)")
    ver.add_argument("--redis-password-file", type=Path, metavar="FILE",
                     help="the Redis password, from a file (a mounted Secret)")
    ver.add_argument("--redis-timeout", type=_seconds, default=0.05, metavar="SECONDS",
                     help="give up on a Redis call after this long (default: 0.05)")
    ver.add_argument("--on-backend-error", choices=["open", "closed"], default=None,
                     help="while Redis is down, keys with limits are let through (open) or "
                     "refused with 429 (closed); default: open for rate limits, closed "
                     "for quotas")
    ver.add_argument("--no-audit", dest="audit", action="store_false",
                     help="do not write the audit line per decision to stdout")
    ver.set_defaults(run=_verifier)
    return parser


def _common(command: argparse.ArgumentParser, watch_help: str) -> None:
    """What the operator and the verifier both take: where the cluster is, their
    namespace, which ApiKeys, how much to log."""
    command.add_argument("--kubeconfig",
                         help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    command.add_argument("--namespace", default=os.environ.get(names.NAMESPACE_ENV,
                                                               names.DEFAULT_NAMESPACE),
                         help="the operator's namespace, where the pepper Secret "
                         f"{names.PEPPER_SECRET} lives (default: ${names.NAMESPACE_ENV}, "
                         f"else {names.DEFAULT_NAMESPACE})")
    command.add_argument("--watch-namespace", action="append", default=[], metavar="NS",
                         help=watch_help)
    command.add_argument("--log-level", default="INFO",
                         choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _positive(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _warnings(text: str) -> tuple[timedelta, ...]:
    if text == "none":
        return ()
    found = []
    for part in text.split(","):
        try:
            value = durations.parse(part.strip())
        except durations.DurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not value:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a warning must come before "
                                             "expiry, not at it")
        found.append(value)
    return tuple(sorted(set(found), reverse=True))


def _never_used(text: str) -> timedelta | None:
    if text == "none":
        return None
    try:
        value = durations.parse(text)
    except durations.DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r}: write a duration longer than 0, or none")
    return value


def _port_or_zero(text: str) -> int:
    return 0 if text == "0" else _port(text)


def _port(text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 10:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 to 10)")
    return value


def _header_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a header name")
    return text.lower()


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address or CIDR") from None


def _existing_path(text: str) -> str:
    if text != files.STDIN and not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file or directory")
    return text


def _prefix(text: str) -> str:
    if not re.fullmatch(tokens.PREFIX_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} does not match {tokens.PREFIX_PATTERN}")
    return text


def _say(line: str) -> None:
    print(line, flush=True)


def _dev_wing() -> types.ModuleType:
    """The dev wing, imported on demand: the production image ships without it."""
    try:
        return importlib.import_module("keywright.dev")
    except ModuleNotFoundError:
        raise errors.KeywrightError(
            "this installation has no local control plane (the image ships without "
            "keywright.dev); install the keywright package from source to use it") from None


def _prepare(args: argparse.Namespace) -> int:
    _dev_wing()
    from keywright.dev import apt, binaries, image, node, redis

    binaries.ensure_binaries(_say)
    binaries.ensure_binaries(_say, binaries.NODE_BINARIES)
    apt.ensure((*TOOL_PACKAGES, *node.PACKAGES, *image.PACKAGES, *redis.PACKAGES), _say)
    image.base_archive(_say)
    image.fetch_wheels(image.SOURCE, _say)
    node.pause_archive(_say)
    return 0


def _dev(args: argparse.Namespace) -> int:
    _dev_wing()
    from keywright.dev import stack

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    if args.node:
        if args.workdir:
            raise errors.KeywrightError("--workdir and --node do not go together")
        return stack.run_node(_say)
    return stack.run(args.workdir, _say)


def _image(args: argparse.Namespace) -> int:
    _dev_wing()
    from keywright.dev import image

    if not (args.source / "deploy" / "Dockerfile").is_file():
        raise errors.KeywrightError(f"{args.source / 'deploy' / 'Dockerfile'} not found; "
                                    "run from the repository root or pass --source")
    image.build(args.source.resolve(), args.output.resolve(), _say)
    return 0


def _crd(args: argparse.Namespace) -> int:
    for number, kind in enumerate(crd.KINDS):
        if args.write:
            path = args.write / kind.file_name
            path.write_text(crd.render(kind))
            _say(f"wrote {path}")
        else:
            sys.stdout.write(("---\n" if number else "") + crd.render(kind))
    return 0


def _scan(args: argparse.Namespace) -> int:
    found = unreadable = read = binary = 0
    for result in files.scan(args.paths, args.max_megabytes * 1_000_000, sys.stdin.buffer):
        for where in result.found:
            what = "Keywright key" + (f" in {where.encoding}" if where.encoding else "")
            _say(f"{result.name}:{where.line}: {where.preview} ({what}, checksum valid)")
        found += len(result.found)
        if result.skipped is None:
            read += 1
        elif result.skipped == "binary":
            binary += 1
        else:
            unreadable += result.unreadable
            print(f"keywright scan: skipped {result.name}: {result.skipped}", file=sys.stderr)
    print(f"keywright scan: {read} file{'s' * (read != 1)} read ({binary} binary skipped), "
          f"{found} key{'s' * (found != 1)} found", file=sys.stderr)
    return 1 if found else 2 if unreadable else 0


def _operator(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # Kopf's own login reads it too
    api = kube.Kube.connect(args.kubeconfig)
    peppers = pepper.load_or_create(api, args.namespace)
    if args.redis_password_secret:
        redispassword.ensure(api, args.namespace, args.redis_password_secret)
    reconciler = reconcile.Reconciler(api, reconcile.ReconcilerSettings(
        namespace=args.namespace, default_prefix=args.default_prefix, workers=args.workers,
        watch=aging.Watch(expiry_warnings=args.expiry_warnings,
                          never_used_after=args.never_used_after)),
        peppers)
    _name_for_kopf()
    importlib.import_module("keywright.controller.handlers")  # registers the Kopf handlers
    memo = kopf.Memo(reconciler=reconciler, watch_namespaces=tuple(args.watch_namespace))
    if args.metrics_port:
        memo.board = metrics.Board()
        metrics.serve(memo.board, args.metrics_host, args.metrics_port)
    if args.webhook_port:
        if not (args.webhook_service or args.webhook_host):
            raise SystemExit("keywright operator: --webhook-port needs --webhook-service "
                             "(in a cluster) or --webhook-host (a local control plane)")
        from keywright.controller import webhooks  # registers the admission handlers
        memo.webhook = webhooks.WebhookServerSettings(
            port=args.webhook_port, host=args.webhook_host, service=args.webhook_service,
            namespace=args.namespace, cert_dir=args.webhook_cert_dir)
    asked = _StopAsked()
    logging.getLogger("kopf._core.reactor.running").addHandler(asked)
    try:
        kopf.run(standalone=True, clusterwide=not args.watch_namespace,
                 namespaces=args.watch_namespace or (), memo=memo,
                 liveness_endpoint=args.liveness)
    except Exception as exc:  # a start-up step failed for good: Kopf has logged which
        logging.getLogger("keywright.operator").error(
            "the operator could not start (%s; see the errors above); exiting 1",
            type(exc).__name__)
        return 1
    if asked.seen:
        return 0
    # Kopf ends its run without raising when one of its watches fails for good (a 404
    # while a restarted API server has not yet registered the CRDs, say): exit non-zero,
    # so that the Pod is restarted and says why, rather than pass for a clean stop
    logging.getLogger("keywright.operator").error(
        "the operator stopped without being asked to (see the errors above); exiting 1")
    # now, not at interpreter exit: that joins the event loop's executor threads, and one
    # still waiting on an API server that went away would hold the process for minutes
    # (seen in the tests: a stopped operator not gone 30 s later)
    logging.shutdown()
    os._exit(1)


class _StopAsked(logging.Handler):
    """Notes Kopf saying it stops because it was asked to: a signal or the stop flag."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().endswith("Operator is stopping."):
            self.seen = True


def _name_for_kopf() -> None:
    """Kopf names the operator from $POD_ID (the Deployment sets it to the Pod's name),
    else from the user's passwd entry, which a numeric container user (65532) lacks:
    without either, Kopf would crash at start."""
    os.environ.setdefault("POD_ID", f"keywright-operator@{socket.gethostname()}/{os.getpid()}")


def _verifier(args: argparse.Namespace) -> int:
    from keywright.verifier import server  # the HTTP stack loads only for this command

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server.serve(server.Options(
        host=args.host, port=args.port, kubeconfig=args.kubeconfig,
        pepper_namespace=args.namespace, namespaces=args.watch_namespace,
        key_headers=args.key_header, trusted_proxies=args.trusted_proxy,
        max_staleness=args.max_staleness, audit=args.audit, log_level=args.log_level,
        redis_url=args.redis_url, redis_password_file=(
            str(args.redis_password_file) if args.redis_password_file else None),
        redis_timeout=args.redis_timeout, on_backend_error=args.on_backend_error))
    return 0


def _interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
