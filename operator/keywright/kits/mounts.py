"""Mount points of this machine, and unmounting everything under a directory.

Owns: reading /proc/self/mountinfo, and unmounting a directory's mounts deepest first
(detaching what stays busy), for the dev wing's node and image builds.
Must not: unmount anything outside the directory it is given.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def points() -> set[str]:
    """Every mount point this process sees."""
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def unmount_under(directory: Path) -> None:
    """Unmount everything under `directory`, deepest first; what is still busy after a
    few rounds is detached (`umount -l`)."""
    prefix = str(directory) + "/"
    inside: list[str] = []
    for _ in range(3):
        inside = sorted((m for m in points() if (m + "/").startswith(prefix)),
                        key=lambda m: m.count("/"), reverse=True)
        if not inside:
            return
        for mount in inside:
            subprocess.run(["umount", mount], capture_output=True, check=False)
    for mount in inside:
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
