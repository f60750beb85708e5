"""A local control plane with `keywright operator` running on it, for the benchmarks
that time what the operator (or a client of the cluster) does: started, bootstrapped
with the namespaces asked for, and stopped whole afterwards. Loopback only."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from keywright import kube
from keywright.dev import binaries, controlplane, install
from keywright.kits import processes


@dataclass(frozen=True)
class OperatorPlane:
    plane: controlplane.ControlPlane
    admin: kube.Kube
    log: Path  # the operator's


@contextlib.contextmanager
def operator_plane(namespaces: Sequence[str], *flags: str) -> Iterator[OperatorPlane]:
    """The control plane, Keywright's CRDs, `namespaces`, and the operator started with
    `flags` as the admin (its log in the plane's logs directory)."""
    plane = controlplane.ControlPlane(binaries.ensure_binaries(print))
    operator = None
    try:
        plane.start()
        admin = kube.Kube.connect(str(plane.kubeconfig))
        install.bootstrap(admin, list(namespaces))
        log = plane.workdir / "logs" / "operator.log"
        operator = processes.spawn(
            [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
             str(plane.kubeconfig), *flags], log)
        yield OperatorPlane(plane, admin, log)
    finally:
        processes.terminate(operator)
        plane.stop()
