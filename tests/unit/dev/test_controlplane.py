"""The local control plane refuses to start on bad ground, before starting anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keywright.dev import controlplane
from keywright.kits import processes
from tests.support.waiting import eventually


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def full_bin_dir(tmp_path: Path) -> Path:
    for name in ("kube-apiserver", "kube-controller-manager"):
        (tmp_path / name).write_text("#!/bin/sh\nexit 3\n")
        (tmp_path / name).chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("which", ["etcd_client", "etcd_peer", "apiserver"])
def test_a_busy_port_is_refused_with_its_role_and_number(
    which: str, busy_port: int, full_bin_dir: Path, tmp_path: Path
) -> None:
    ports = {"etcd_client": processes.free_port(), "etcd_peer": processes.free_port(),
             "apiserver": processes.free_port(), which: busy_port}
    workdir = tmp_path / "work"
    plane = controlplane.ControlPlane(full_bin_dir, workdir=workdir,
                                      ports=controlplane.Ports(**ports))
    with pytest.raises(controlplane.ControlPlaneError) as caught:
        plane.start()
    role = {"etcd_client": "etcd client", "etcd_peer": "etcd peer",
            "apiserver": "kube-apiserver"}[which]
    assert f"{role} port {busy_port} on 127.0.0.1 is already in use" in str(caught.value)
    assert plane.pids == {}
    assert not workdir.exists()


@pytest.mark.parametrize(
    ("present", "named"),
    [
        ((), "kube-apiserver and kube-controller-manager not found"),
        (("kube-apiserver",), "kube-controller-manager not found"),
        (("kube-controller-manager",), "kube-apiserver not found"),
    ],
)
def test_a_missing_binary_is_named_with_the_command_that_builds_it(
    present: tuple[str, ...], named: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in present:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    plane = controlplane.ControlPlane(bin_dir, workdir=tmp_path / "work")
    with pytest.raises(controlplane.ControlPlaneError) as caught:
        plane.start()
    assert str(caught.value).startswith(named)
    assert "keywright cluster prepare" in str(caught.value)
    assert plane.pids == {}


def test_a_binary_that_dies_at_start_is_reported_with_its_log(
    full_bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake etcd that exits at once stands in for a crash a real etcd cannot be made
    # to have on demand.
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "etcd").write_text("#!/bin/sh\necho 'etcd: cannot open data dir' >&2\nexit 7\n")
    (fake / "etcd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    plane = controlplane.ControlPlane(full_bin_dir, workdir=tmp_path / "work")
    with pytest.raises(controlplane.ControlPlaneError) as caught:
        plane.start(timeout=10)
    assert "etcd exited with code 7 while starting" in str(caught.value)
    assert "cannot open data dir" in str(caught.value)
    assert plane.pids == {}


def test_token_file_lists_every_user_with_quoted_groups(tmp_path: Path) -> None:
    plane = controlplane.ControlPlane(tmp_path, workdir=tmp_path)
    (tmp_path / "pki").mkdir()
    plane.add_token_user("viewer", ["team-a", "team-b"])
    plane.add_token_user("nobody")
    plane._write_token_file()
    lines = (tmp_path / "pki" / "tokens.csv").read_text().splitlines()
    admin, viewer, nobody = plane.users["admin"], plane.users["viewer"], plane.users["nobody"]
    assert lines == [
        f'{admin.token},admin,admin-uid,"system:masters"',
        f'{viewer.token},viewer,viewer-uid,"team-a,team-b"',
        f"{nobody.token},nobody,nobody-uid",
    ]
    with pytest.raises(controlplane.ControlPlaneError, match="'viewer' already exists"):
        plane.add_token_user("viewer")


def test_children_are_killed_when_the_process_that_started_them_is_killed() -> None:
    # The parent is SIGKILLed, so no Python cleanup can run: only the kernel's
    # parent-death signal can stop the child.
    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, time\n"
         "from keywright.kits import processes\n"
         "p = subprocess.Popen(['sleep', '600'], preexec_fn=processes.die_with_parent)\n"
         "print(p.pid, flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    assert processes.alive(child)
    starter.send_signal(signal.SIGKILL)
    starter.wait()
    eventually(lambda: not processes.alive(child), timeout=5, interval=0.05,
               what="the orphaned child's death")
    assert not processes.alive(child)


def test_a_killed_runs_data_directory_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone_owner = f"{dead.pid} 1"  # that process has exited: no such identity now
    orphan = subprocess.Popen(["sleep", "600"])  # a child that outlived its killed parent
    orphan_identity = processes.identity(orphan.pid)
    assert orphan_identity is not None
    try:
        killed = tmp_path / f"{controlplane.WORKDIR_PREFIX}killed"
        (killed / "etcd").mkdir(parents=True)
        (killed / "etcd" / "db").write_bytes(b"x" * 1000)
        (killed / controlplane.OWNER_FILE).write_text(gone_owner)
        (killed / controlplane.CHILDREN_FILE).write_text(f"etcd {orphan_identity}\n")
        live = controlplane.default_workdir(tmp_path)  # owned by this process
        old_unowned = tmp_path / f"{controlplane.WORKDIR_PREFIX}older-version"
        old_unowned.mkdir()
        os.utime(old_unowned, (time.time() - 3600, time.time() - 3600))
        new_unowned = tmp_path / f"{controlplane.WORKDIR_PREFIX}being-made"
        new_unowned.mkdir()
        other = tmp_path / "not-ours"
        other.mkdir()
        said: list[str] = []

        removed = controlplane.remove_leftovers(said.append, tmp_path)

        assert sorted(p.name for p in removed) == sorted([killed.name, old_unowned.name])
        assert not killed.exists()
        assert not old_unowned.exists()
        assert live.exists()
        assert new_unowned.exists()
        assert other.exists()
        assert orphan.wait(5) == -9  # killed by its recorded identity
        assert any("left by an earlier run that was killed" in line for line in said)
    finally:
        orphan.kill()
        orphan.wait()


def test_a_recorded_pid_now_used_by_another_process_is_not_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        killed = tmp_path / f"{controlplane.WORKDIR_PREFIX}killed"
        killed.mkdir()
        (killed / controlplane.OWNER_FILE).write_text("1 0")  # pid 1, another start time
        (killed / controlplane.CHILDREN_FILE).write_text(f"etcd {bystander.pid} 0\n")
        controlplane.remove_leftovers(lambda line: None, tmp_path)
        assert not killed.exists()
        assert bystander.poll() is None  # same PID, other start time: left alone
    finally:
        bystander.kill()
        bystander.wait()


def test_a_link_or_a_file_of_that_name_is_never_touched(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious").write_text("x")
    (tmp_path / f"{controlplane.WORKDIR_PREFIX}link").symlink_to(target)
    (tmp_path / f"{controlplane.WORKDIR_PREFIX}file").write_text("not a directory")
    assert controlplane.remove_leftovers(lambda line: None, tmp_path) == []
    assert (target / "precious").exists()
    assert (tmp_path / f"{controlplane.WORKDIR_PREFIX}file").exists()
