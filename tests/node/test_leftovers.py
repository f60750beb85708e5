"""A node run killed before it could clean up (SIGKILL): the next run removes what it
left (its mounts, its network namespace, its state directory), and nothing of a run
that is still alive."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

from keywright.dev import controlplane, node
from keywright.kits import processes


def dead_identity() -> str:
    child = subprocess.Popen(["sleep", "30"])
    recorded = processes.identity(child.pid) or ""
    child.kill()
    child.wait()
    return recorded


def left_behind(owner: str) -> tuple[Path, str]:
    """A state directory as a killed run leaves it: owner file, a mount, a namespace."""
    path = Path(tempfile.mkdtemp(prefix=node.WORKDIR_PREFIX))
    (path / controlplane.OWNER_FILE).write_text(owner)
    netns = f"kw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    (path / node.NETNS_FILE).write_text(netns)
    (path / "kubelet" / "pods" / "x").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path / "kubelet" / "pods" / "x")],
                   check=True)
    return path, netns


def test_the_next_run_removes_what_a_killed_run_left() -> None:
    host = node.HostState.observe()  # /run/netns among it: `ip netns add` makes it
    dead, dead_netns = left_behind(dead_identity())
    alive, alive_netns = left_behind(processes.identity(os.getpid()) or "")
    try:
        removed = node.remove_leftovers(print)
        assert dead in removed
        assert not dead.exists()
        assert not (Path("/run/netns") / dead_netns).exists()
        assert str(dead) not in Path("/proc/self/mountinfo").read_text()
        assert alive.exists()  # its run is alive: not ours to touch
        assert (Path("/run/netns") / alive_netns).exists()
    finally:
        subprocess.run(["umount", str(alive / "kubelet" / "pods" / "x")], check=False)
        subprocess.run(["ip", "netns", "delete", alive_netns], check=False)
        subprocess.run(["rm", "-rf", str(alive)], check=False)
        host.restore()
    assert node.HostState.observe() == host
