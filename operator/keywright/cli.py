"""The `keywright` command line.

Owns: argument parsing and what each subcommand prints; the work itself lives in the
modules it calls.
Must not: hold logic that a test would have to drive through a subprocess to reach.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from keywright import debian, devcluster, kubebuild


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except (devcluster.ControlPlaneError, kubebuild.BuildError, debian.DebianError) as exc:
        print(f"keywright: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keywright", description="API keys on Kubernetes.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="run Keywright on a local control plane")
    dev.add_argument("--workdir", type=Path, help="data directory (default: a fresh one)")
    dev.set_defaults(run=_dev)

    cluster = commands.add_parser("cluster", help="the local control plane")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True,
                                              metavar="ACTION")
    prepare = cluster_commands.add_parser(
        "prepare", help="install Debian packages and build or reuse the cached binaries")
    prepare.set_defaults(run=_prepare)

    for name, text in (("operator", "the controller"), ("verifier", "the verification service")):
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(run=_not_yet(name))
    return parser


def _say(line: str) -> None:
    print(line, flush=True)


def _prepare(args: argparse.Namespace) -> int:
    kubebuild.ensure_binaries(_say)
    return 0


def _dev(args: argparse.Namespace) -> int:
    bin_dir = kubebuild.ensure_binaries(_say)
    signal.signal(signal.SIGTERM, _interrupt)
    plane = devcluster.ControlPlane(bin_dir, workdir=args.workdir, say=_say)
    try:
        _say("starting etcd, kube-apiserver and kube-controller-manager ...")
        plane.start()
        _say(f"local control plane ready at {plane.server} (data in {plane.workdir})")
        _say("")
        _say(f"  export KUBECONFIG={plane.kubeconfig}")
        _say("  kubectl get namespaces")
        _say("  kubectl get serviceaccounts -A")
        _say("")
        _say("Press Ctrl-C to stop and clean up.")
        while True:
            plane.check_running()
            time.sleep(1)
    except KeyboardInterrupt:
        _say("stopping ...")
        return 0
    finally:
        plane.stop()
        _say("stopped; nothing left running")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _not_yet(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"keywright {name}: not implemented yet", file=sys.stderr)
        return 2
    return run


if __name__ == "__main__":
    sys.exit(main())
