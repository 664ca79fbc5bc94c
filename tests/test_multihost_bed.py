"""The multi-host bed itself: locks across mounts, host death, workers on two hosts."""

from __future__ import annotations

import fcntl
import os
import struct
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.multihost import MultihostBed
from support.workers import wait_for

from gage_queue.locks import read_record

pytestmark = pytest.mark.system  # GlusterFS hosts in namespaces, workers, a redis-server

F_OFD_GETLK, F_OFD_SETLK = 36, 37
LOCK_KINDS = {"posix": (fcntl.F_GETLK, fcntl.F_SETLK), "ofd": (F_OFD_GETLK, F_OFD_SETLK)}

HOLD_PY = """\
import fcntl, os, struct, sys, time
path, setlk = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.fcntl(fd, setlk, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
print("locked", flush=True)
time.sleep(600)
"""


def flock_struct(lock_type: int) -> bytes:
    """A struct flock for the whole file; l_pid 0, as OFD locks require."""
    return struct.pack("hhqqi4x", lock_type, os.SEEK_SET, 0, 0, 0)


def lock_holder_type(path: Path, getlk: int) -> int:
    """F_GETLK / F_OFD_GETLK for a write lock on `path`: the conflicting lock's type."""
    fd = os.open(path, os.O_RDWR)
    try:
        result = fcntl.fcntl(fd, getlk, flock_struct(fcntl.F_WRLCK))
    finally:
        os.close(fd)
    return struct.unpack("hhqqi4x", result)[0]


def can_lock(path: Path, setlk: int) -> bool:
    """Whether a write lock on `path` can be taken now (released again at once)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, setlk, flock_struct(fcntl.F_WRLCK))
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def hold_lock(bed: MultihostBed, host: str, name: str, setlk: int):
    """A process in `host` holding a write lock on `name` through the host's mount."""
    path = bed.runs_dir_for(host).parent / name
    log = bed.logs_dir / f"hold-{name}.log"
    proc = bed.hosts[host].spawn([sys.executable, "-c", HOLD_PY, str(path), str(setlk)], log_path=log)
    wait_for(lambda: "locked" in log.read_text(), 10, f"{host} to lock {name}")
    return proc, bed.runs_dir_for("laptop").parent / name


@pytest.mark.parametrize("kind", sorted(LOCK_KINDS))
def test_lock_through_one_mount_is_seen_through_another(multihost_bed: MultihostBed, kind: str):
    getlk, setlk = LOCK_KINDS[kind]
    holder, laptop_path = hold_lock(multihost_bed, "host-a", f"{kind}.lock", setlk)

    assert lock_holder_type(laptop_path, getlk) == fcntl.F_WRLCK
    assert not can_lock(laptop_path, setlk)

    holder.kill()
    holder.wait(10)
    wait_for(lambda: can_lock(laptop_path, setlk), 5, "the lock to be released")
    assert lock_holder_type(laptop_path, getlk) == fcntl.F_UNLCK


def test_host_kill_kills_every_process_and_releases_its_locks(multihost_bed: MultihostBed):
    host = multihost_bed.hosts["host-a"]
    _, ofd_path = hold_lock(multihost_bed, "host-a", "ofd.lock", F_OFD_SETLK)
    _, posix_path = hold_lock(multihost_bed, "host-a", "posix.lock", fcntl.F_SETLK)
    processes = host.processes()
    names = {proc.name() for proc in processes}
    assert "glusterfs" in names and len(processes) >= 4, names
    assert not can_lock(ofd_path, F_OFD_SETLK) and not can_lock(posix_path, fcntl.F_SETLK)

    started = time.monotonic()
    host.kill()

    assert not host.alive()
    assert not [proc for proc in processes if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE]
    wait_for(lambda: can_lock(ofd_path, F_OFD_SETLK) and can_lock(posix_path, fcntl.F_SETLK),
             5, "host-a's locks to be released")
    assert time.monotonic() - started < 5
    assert multihost_bed.hosts["host-b"].alive()


def test_a_host_has_its_own_hostname_processes_and_mount(multihost_bed: MultihostBed):
    host = multihost_bed.hosts["host-b"]
    out = multihost_bed.logs_dir / "inside.log"
    probe = "import os, socket; print(socket.gethostname(), os.getpid(), len(os.listdir('/proc')))"
    proc = host.spawn([sys.executable, "-c", probe], log_path=out)
    assert proc.wait(10) == 0
    hostname, ns_pid, _ = out.read_text().split()
    assert hostname == "host-b"
    assert int(ns_pid) < 100  # a fresh PID namespace
    assert not os.path.ismount(host.mountpoint)  # the mount is inside the host only
    assert os.path.ismount(host.view(host.mountpoint))
    (multihost_bed.runs_dir_for("laptop") / "hello").write_text("from the laptop")
    inside = host.view(multihost_bed.runs_dir_for(host) / "hello")
    assert inside.read_text() == "from the laptop"


def test_workers_on_two_hosts_run_each_run_once(multihost_bed: MultihostBed):
    bed = multihost_bed
    bed.start_worker("host-a", "-c", "2", wait=False)
    bed.start_worker("host-b", "-c", "2", wait=False)
    for worker in bed.workers:
        worker.wait_ready()

    runs = bed.stage_and_submit(6, sleep=0.3)
    statuses = bed.wait_status(runs, timeout=25)

    assert set(statuses.values()) == {"completed"}, statuses
    for run in runs:
        executions = bed.executions(run)
        assert len(executions) == 1, (run.id, executions)
        host = executions[0]["host"]
        assert host in ("host-a", "host-b")
        assert read_record(run).host == host


def test_a_dead_client_drops_its_locks_while_the_holder_lives(multihost_bed: MultihostBed):
    holder, laptop_path = hold_lock(multihost_bed, "host-b", "client.lock", F_OFD_SETLK)
    client = multihost_bed.hosts["host-b"].client_process()
    assert client is not None and not can_lock(laptop_path, F_OFD_SETLK)

    client.kill()

    wait_for(lambda: can_lock(laptop_path, F_OFD_SETLK), 5, "the brick to drop the dead client's lock")
    assert holder.poll() is None


def test_host_workers_are_killed_and_stopped_by_pid(multihost_bed: MultihostBed):
    killed = multihost_bed.start_worker("host-a", "-c", "2", wait=False)
    stopped = multihost_bed.start_worker("host-b", "-c", "1", wait=False)
    killed.wait_ready()
    stopped.wait_ready()
    pool = killed.pool()
    assert len(pool) == 2

    killed.kill()
    stopped.stop()

    assert killed.proc.returncode == -9 and stopped.proc.returncode == 0
    wait_for(lambda: not any(proc.is_running() for proc in pool), 5, "the pool to be reaped")
    assert all(host.alive() for host in multihost_bed.hosts.values())
