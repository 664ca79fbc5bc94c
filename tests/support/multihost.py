"""A multi-host test bed on one machine: a real GlusterFS volume, hosts in namespaces, Redis.

Real hosts do not fit on CI; their parts do. The bed gives:

- **A shared file system**: one GlusterFS volume per test session (name
  `gq-<pid>-<hex>`, one brick in the session's tmp dir), served by a
  `glusterd` on `LOOPBACK` (127.0.0.2). The gluster CLI refuses bricks on
  `127.0.0.1`/`localhost` even with `force`; any 127/8 address is loopback
  on Linux, so glusterd, the brick and every client use 127.0.0.2 and
  nothing listens beyond loopback. A glusterd that is already running is
  used and left alone; one the bed starts (private working dir, no hook
  scripts) is stopped by pid when the last session using it ends.
- **Mounts**: every mount is its own `glusterfs` FUSE client process with
  its own caches, with the glusterfs and volume defaults (`MOUNT_OPTIONS`):
  kernel attribute and entry cache 1 s, no negative cache, and the
  client-side translators write-behind, open-behind, quick-read and
  md-cache (1 s) on. So a file written through one mount can look stale
  through another for about a second, as on a real shared file system.
  POSIX record locks (F_SETLK) and OFD locks (F_OFD_SETLK) go to the
  brick's locks translator, so they hold across mounts (F_GETLK through
  another mount reports them; F_OFD_GETLK reports l_pid -1), and so does
  flock(). A holder's death releases its locks within milliseconds, and
  so does the death of its glusterfs client (the brick sees the TCP
  connection close; no ping-timeout wait), as seen from another mount.
- **Hosts**: a `Host` is a PID + UTS + mount namespace (`unshare -p -u -m
  -f --mount-proc`) with its own hostname. Its init (pid 1 inside, a tiny
  Python reaper) mounts the volume inside the host's mount namespace, so
  the host's glusterfs client lives in the host's PID namespace and dies
  with it; the mount exists only inside that host. Processes are started
  into the host with `nsenter`. `Host.kill()` SIGKILLs the init: the kernel
  kills every process of the host at once, its client included, and the
  brick drops the locks taken through its mount. The network namespace is
  shared, so every host reaches the brick and the broker on loopback.
  Pids are per host: two hosts' processes often have the same pid, as on
  real machines. If the test process dies, each host's init sees its
  stdin pipe close and exits, so hosts never outlive a crashed session; a
  later session removes a killed session's volumes and client mounts.
- **A broker**: one private redis-server per test on a unix socket in the
  test's tmp dir (outside the volume, at the same path in every host),
  URL `redis+socket:///path/redis.sock`.

Fixtures: `gluster_volume` (session), `laptop_mount` (session: the
submitter's mount, in the test process's own namespace) and
`multihost_bed` (per test). They skip with a one-line reason when root,
/dev/fuse, unshare/nsenter, gluster or redis-server are missing.

`multihost_bed` API (a `MultihostBed`):

- `bed.laptop`: the laptop's mount path; `bed.hosts`: {name: Host} for
  `HOSTS` ("host-a", "host-b"), started and mounted; `bed.redis`: the
  `RedisServer`; `bed.broker_url`.
- `bed.runs_dir_for(host_or_name)`: the runs dir of this test as that host
  (or "laptop") sees it, `<mount>/<test dir>/runs`. Each host mounts at a
  different path, so nothing may depend on absolute paths being equal.
- `bed.stage(sleep=0)` stages a recording run in the laptop's runs dir;
  `bed.submit(run)` / `bed.stage_and_submit(n)` queue it from the laptop.
  A run appends one JSON line (host, pid, time, gpus, resume) to `bed.executions(run)`'s
  file in `bed.records_dir` (outside the volume), and its end time (`bed.ended`).
- `bed.start_worker(host, *args, env=None, wait=True)`: `gage-worker ARGS`
  inside that host with GAGE_RUNS = its runs dir and the Redis broker, as
  node `w<n>@<hostname>`; returns a `workers.Worker` (`.log()`, `.pool()`,
  `.kill()` = SIGKILL main + pool children, `.stop()`, `.pid` as seen from
  the test). `bed.wait_status(runs)` as in `workers.Bed`.
- `bed.host_view(host, path)`: a path inside the host seen from the test
  (`/proc/<init>/root/...`), e.g. to read a host's mount directly.

`Host` API: `.name`, `.mountpoint` (inside the host), `.spawn(argv, env,
log_path, cwd) -> HostProcess`, `.processes()` (psutil processes in its
PID namespace), `.client_process()` (its glusterfs), `.alive()`, `.kill()`,
`.view(path)`. `HostProcess` is
Popen-like (`pid` is the real pid as seen from outside, `ns_pid` the pid
inside, `poll/wait/kill/terminate`).

Teardown, also when a test fails: hosts are SIGKILLed (their mounts go with
their namespaces), workers and redis stopped by pid; at session end the
laptop's client is killed and the mount unmounted (lazily if busy), the
volume stopped and deleted, the brick dir and brick log removed, and a
glusterd the bed started stopped by pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from gage_queue.broker.send import submit_run
from gage_queue.settings import Settings
from gage_runs import OpCmd, OpDef, OpRef, Run, init_run_meta, make_run, stage_run

from .redis_server import REDIS_SERVER, RedisServer
from .workers import TEST_ENV, Watching, Worker, node_name, worker_command

LOOPBACK = "127.0.0.2"
HOSTS = ("host-a", "host-b")
# The glusterfs defaults, spelled out: kernel attribute/entry cache 1 s, no negative cache.
MOUNT_OPTIONS = ("--attribute-timeout=1", "--entry-timeout=1", "--negative-timeout=0")
VOLUME_PREFIX = "gq-"
# What deploy/NFS.md asks of a GlusterFS volume for a runs dir: quick-read
# serves a small file's content from what a lookup cached, even to a reader
# that holds a lock and reads with O_DIRECT, so decisions would see stale
# run records. Every other client cache stays at its default.
VOLUME_OPTIONS = (("performance.quick-read", "off"),)
# Shared by every session on this machine: a glusterd the bed starts outlives the
# session that started it while another session still uses it.
GLUSTERD_DIR = Path("/tmp/gage-queue-glusterd")
GLUSTERD_LOCK = Path("/run/lock/gage-queue-glusterd.lock")
GLUSTERD_START_LOCK = Path("/run/lock/gage-queue-glusterd.start.lock")
GLUSTER_LOG_DIR = Path("/var/log/glusterfs")
GLUSTER_RUN_DIR = Path("/var/run/gluster")
TOOLS = ("gluster", "glusterd", "glusterfs", "unshare", "nsenter", "umount")

GLUSTERD_VOL = f"""\
volume management
    type mgmt/glusterd
    option working-directory {GLUSTERD_DIR}/state
    option transport-type socket
    option transport.address-family inet
    option transport.socket.bind-address {LOOPBACK}
    option transport.socket.listen-port 24007
    option transport.socket.keepalive-time 10
    option transport.socket.keepalive-interval 2
    option transport.socket.read-fail-log off
    option ping-timeout 0
    option event-threads 1
    option base-port 49152
    option max-port 60999
end-volume
"""

# pid 1 of a host: set the hostname, mount the volume, say "ready", reap orphans.
# Its stdin is a pipe only the test process writes to: EOF means the test process
# is gone, and the init exits, so the kernel kills the host.
HOST_INIT_PY = """\
import os, select, socket, subprocess, sys, time
name, mountpoint, log, *client = sys.argv[1:]
socket.sethostname(name)
proc = subprocess.Popen([*client, "-l", log, mountpoint], stdout=2)
deadline = time.monotonic() + 20
while not os.path.ismount(mountpoint):
    if proc.poll() is not None or time.monotonic() > deadline:
        sys.exit(f"glusterfs did not mount {mountpoint}; see {log}")
    time.sleep(0.005)
os.listdir(mountpoint)
print("ready", flush=True)
while not (select.select([0], [], [], 0.2)[0] and not os.read(0, 1)):
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
"""

RECORD_PY = """\
import json, os, socket, time
record = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
          "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
          "resume": os.environ.get("GAGE_RESUME_RUN_DIR")}
path = os.path.join(os.environ["RECORDS_DIR"], os.environ["RUN_ID"])
with open(path, "a") as f:
    f.write(json.dumps(record) + "\\n")
print("host", record["host"], flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
with open(path + ".end", "w") as f:
    f.write(str(time.time()))
print("done", flush=True)
"""


def multihost_unavailable() -> str | None:
    """Why the bed cannot run here (one line), or None."""
    if os.geteuid() != 0:
        return "multi-host bed needs root (namespaces, FUSE mounts)"
    if not os.path.exists("/dev/fuse"):
        return "multi-host bed needs /dev/fuse"
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=_sbin_path())]
    if missing:
        return f"multi-host bed needs {', '.join(missing)} (apt-get install glusterfs-server glusterfs-client util-linux)"
    if not os.access(REDIS_SERVER, os.X_OK):
        return f"multi-host bed needs redis-server (none at {REDIS_SERVER})"
    probe = subprocess.run(
        [_tool("unshare"), "--pid", "--uts", "--mount", "--fork", "--mount-proc", "true"],
        capture_output=True, text=True, timeout=10,
    )
    if probe.returncode:
        return f"multi-host bed cannot make namespaces: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def _sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _tool(name: str) -> str:
    return shutil.which(name, path=_sbin_path()) or name


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"(no {path})"


def _kill_wait(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGKILL a child by pid (if still running) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout)


# --- gluster ---------------------------------------------------------------


def gluster(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `gluster --mode=script ARGS`; RuntimeError with its output if it fails."""
    GLUSTERD_DIR.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [_tool("gluster"), "--mode=script", f"--log-file={GLUSTERD_DIR / 'cli.log'}", *args],
        capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"gluster {' '.join(args)}: {(result.stdout + result.stderr).strip()}")
    return result


def glusterd_reachable() -> bool:
    return gluster("volume", "list", check=False, timeout=10).returncode == 0


class Glusterd:
    """The machine's glusterd: used if running, else started by the bed.

    Every session holds a shared lock on GLUSTERD_LOCK while it uses
    glusterd; starting one is serialized by GLUSTERD_START_LOCK. A glusterd
    the bed started writes its pid to GLUSTERD_DIR; the last session to
    leave (it gets GLUSTERD_LOCK exclusively) stops it, and a session that
    arrives meanwhile waits for its shared lock until glusterd is gone.
    """

    pidfile = GLUSTERD_DIR / "glusterd.pid"

    def __init__(self) -> None:
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        GLUSTERD_LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(GLUSTERD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        start_fd = os.open(GLUSTERD_START_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(start_fd, fcntl.LOCK_EX)
            if not glusterd_reachable():
                self._start()
        finally:
            os.close(start_fd)

    def _start(self) -> None:
        shutil.rmtree(GLUSTERD_DIR / "state", ignore_errors=True)
        (GLUSTERD_DIR / "state").mkdir(parents=True)
        volfile = GLUSTERD_DIR / "glusterd.vol"
        volfile.write_text(GLUSTERD_VOL)
        log = GLUSTERD_DIR / "glusterd.log"
        # Daemonized, so it can outlive this session while another one uses it.
        subprocess.run(
            [_tool("glusterd"), "-f", str(volfile), "-l", str(log), "-p", str(self.pidfile)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True, timeout=30,
        )
        deadline = time.monotonic() + 30
        while not glusterd_reachable():
            if time.monotonic() > deadline:
                self._stop_owned()
                raise RuntimeError(f"glusterd did not start:\n{_tail(log)}")
            time.sleep(0.05)

    def release(self) -> None:
        """Leave; the last session out stops a glusterd the bed started."""
        if self._lock_fd is None:
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another session still uses glusterd
        else:
            self._stop_owned()
            shutil.rmtree(GLUSTERD_DIR, ignore_errors=True)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _stop_owned(self) -> None:
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return  # not started by the bed: leave it
        try:
            proc = psutil.Process(pid)
            if proc.name() == "glusterd":
                proc.terminate()
                try:
                    proc.wait(10)
                except psutil.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        except psutil.NoSuchProcess:
            pass
        self.pidfile.unlink(missing_ok=True)


class GlusterVolume:
    """One single-brick volume with its brick in `root`; unique name per session."""

    def __init__(self, root: Path) -> None:
        self.name = f"{VOLUME_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.brick = root / "brick"
        self.created = False

    @classmethod
    def existing(cls, name: str) -> GlusterVolume:
        """A volume another (killed) session created, with the brick gluster names."""
        info = gluster("volume", "info", name, check=False).stdout
        brick = next((line for line in info.splitlines() if line.startswith("Brick1:")), "")
        volume = cls(Path(brick.partition(f"{LOOPBACK}:")[2].strip() or "/nonexistent").parent)
        volume.name, volume.created = name, True
        return volume

    def create(self) -> None:
        self.brick.mkdir(parents=True)
        # `force`: the brick is on the root file system and its host is loopback.
        gluster("volume", "create", self.name, f"{LOOPBACK}:{self.brick}", "force")
        self.created = True
        for option, value in VOLUME_OPTIONS:
            gluster("volume", "set", self.name, option, value)
        gluster("volume", "start", self.name)

    def client_command(self) -> list[str]:
        """A foreground (`-N`) glusterfs client of this volume; add `-l LOG MOUNTPOINT`."""
        return [
            _tool("glusterfs"), "-N", f"--volfile-server={LOOPBACK}",
            f"--volfile-id={self.name}", *MOUNT_OPTIONS,
        ]

    def brick_socket(self) -> Path | None:
        """The unix socket glusterd gave the brick process (`-S`); glusterd leaves it behind."""
        for proc in psutil.process_iter(["name", "cmdline"]):
            argv = proc.info["cmdline"] or []
            if proc.info["name"] == "glusterfsd" and f"{self.name}.{LOOPBACK}." in " ".join(argv):
                return Path(argv[argv.index("-S") + 1]) if "-S" in argv else None
        return None

    def destroy(self) -> None:
        """Stop and delete the volume; remove the brick dir and what glusterd left of the brick."""
        if self.created:
            socket_path = self.brick_socket()
            gluster("volume", "stop", self.name, "force", check=False)
            gluster("volume", "delete", self.name, check=False)
            self.created = False
            if socket_path and socket_path.parent == GLUSTER_RUN_DIR:
                socket_path.unlink(missing_ok=True)
            for leftover in (GLUSTER_RUN_DIR / "vols", GLUSTER_LOG_DIR / "gfproxy", GLUSTER_LOG_DIR / "snaps"):
                shutil.rmtree(leftover / self.name, ignore_errors=True)
        shutil.rmtree(self.brick, ignore_errors=True)
        brick_log = GLUSTER_LOG_DIR / "bricks" / (str(self.brick).strip("/").replace("/", "-") + ".log")
        brick_log.unlink(missing_ok=True)


def sweep_stale_volumes() -> None:
    """Remove what a killed session left: its `gq-<pid>-*` volumes and their clients."""
    listed = gluster("volume", "list", check=False).stdout.split()
    stale = [name for name in listed if _is_stale(name)]
    for proc in psutil.process_iter(["name", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if proc.info["name"] == "glusterfs" and any(f"--volfile-id={name}" in argv for name in stale):
            subprocess.run([_tool("umount"), "-l", argv[-1]], capture_output=True)
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    for name in stale:
        GlusterVolume.existing(name).destroy()


def _is_stale(name: str) -> bool:
    pid = name[len(VOLUME_PREFIX):].partition("-")[0]
    return name.startswith(VOLUME_PREFIX) and pid.isdigit() and not psutil.pid_exists(int(pid))


class GlusterMount:
    """A FUSE mount of the volume in the test's own namespace (its own client process)."""

    def __init__(self, volume: GlusterVolume, path: Path, log: Path) -> None:
        self.path = path
        self.log = log
        path.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*volume.client_command(), "-l", str(log), str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not os.path.ismount(path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                raise RuntimeError(f"glusterfs did not mount {path}:\n{_tail(log)}")
            time.sleep(0.005)
        os.listdir(path)

    def unmount(self) -> None:
        """Unmount (lazily if busy); the client then exits, else it is killed by pid."""
        if is_mounted(self.path):
            umount = _tool("umount")
            if subprocess.run([umount, str(self.path)], capture_output=True).returncode:
                subprocess.run([umount, "-l", str(self.path)], capture_output=True)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            _kill_wait(self.proc)


def is_mounted(path: Path) -> bool:
    """Whether `path` is a mount point in this mount namespace (a dead FUSE mount too)."""
    target = str(path).encode()
    with open("/proc/self/mountinfo", "rb") as mountinfo:
        return any(line.split()[4] == target for line in mountinfo)


# --- hosts -----------------------------------------------------------------


class HostProcess:
    """A process started in a host by `nsenter` (Popen-like).

    `proc` is the nsenter process (outside the host's PID namespace); it
    waits for the real process and exits with its status (-N if killed by
    signal N). `pid` is the real process as seen from the test.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid: int | None = self._find_child()

    def _find_child(self) -> int | None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                children = psutil.Process(self.proc.pid).children()
            except psutil.NoSuchProcess:
                return None
            if children:
                return children[0].pid
            if self.proc.poll() is not None:
                return None
            time.sleep(0.002)
        raise RuntimeError(f"nsenter {self.proc.pid} started no process")

    @property
    def ns_pid(self) -> int | None:
        """The pid inside the host's PID namespace (NSpid's last field)."""
        if self.pid is None:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        line = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        return int(line.split()[-1])

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def send_signal(self, sig: int) -> None:
        if self.pid is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(self.pid).send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Host:
    """A PID + UTS + mount namespace with its own hostname and its own mount of the volume."""

    def __init__(self, name: str, volume: GlusterVolume, mountpoint: Path, log_dir: Path) -> None:
        self.name = name
        self.volume = volume
        self.mountpoint = mountpoint
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.init_pid: int | None = None
        self.pidns: str | None = None
        self.spawned: list[HostProcess] = []

    def start(self) -> None:
        """Start the namespace's init; `wait_ready()` waits for its mount."""
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{self.name}-init.log", "wb") as err:
            self.proc = subprocess.Popen(
                [
                    _tool("unshare"), "--pid", "--uts", "--mount", "--fork", "--mount-proc",
                    "--propagation", "private", "--kill-child",
                    sys.executable, "-c", HOST_INIT_PY, self.name, str(self.mountpoint),
                    str(self.log_dir / f"{self.name}-glusterfs.log"),
                    *self.volume.client_command(),
                ],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if readable else b""
        if line.strip() != b"ready":
            self.kill()
            raise RuntimeError(
                f"host {self.name} did not come up:\n{_tail(self.log_dir / f'{self.name}-init.log')}"
                f"\n{_tail(self.log_dir / f'{self.name}-glusterfs.log')}"
            )
        self.init_pid = psutil.Process(self.proc.pid).children()[0].pid
        self.pidns = os.readlink(f"/proc/{self.init_pid}/ns/pid")

    def spawn(
        self, argv: list[str], *, env: dict[str, str] | None = None,
        log_path: Path | None = None, cwd: str = "/",
    ) -> HostProcess:
        """Start `argv` inside the host (output to `log_path`, else discarded)."""
        if not self.alive():
            raise RuntimeError(f"host {self.name} is not running")
        command = [
            _tool("nsenter"), "-t", str(self.init_pid), "-p", "-u", "-m", f"--wd={cwd}", "--", *argv,
        ]
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            if log_path:
                out.close()
        process = HostProcess(proc)
        self.spawned.append(process)
        return process

    def processes(self) -> list[psutil.Process]:
        """Every process in the host's PID namespace (its init and glusterfs client included)."""
        if self.pidns is None:
            return []
        found = []
        for proc in psutil.process_iter():
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/pid") == self.pidns:
                    found.append(proc)
            except OSError:
                continue
        return found

    def client_process(self) -> psutil.Process | None:
        """The host's glusterfs client (kill it alone to lose the mount but keep the host)."""
        return next((proc for proc in self.processes() if proc.name() == "glusterfs"), None)

    def alive(self) -> bool:
        return self.proc is not None and self.init_pid is not None and self.proc.poll() is None

    def view(self, path: str | Path) -> Path:
        """`path` inside this host, as the test process can reach it."""
        return Path(f"/proc/{self.init_pid}/root") / Path(path).relative_to("/")

    def kill(self) -> None:
        """Host death: SIGKILL the init, so the kernel kills every process of the host at once."""
        if self.proc is None:
            return
        if self.init_pid is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        # unshare exits once the init is reaped, which is after every process of
        # the namespace is gone; if the init never came up, --kill-child kills it.
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            _kill_wait(self.proc)
        for process in self.spawned:
            process.proc.wait(10)  # nsenter exits once its process is dead
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe:
                pipe.close()


# --- the bed ----------------------------------------------------------------


class MultihostBed(Watching):
    """A laptop mount, hosts with their own mounts, a unix-socket Redis (see module doc)."""

    def __init__(
        self, root: Path, volume: GlusterVolume, laptop: Path, redis: RedisServer,
        host_names: Iterable[str] = HOSTS,
    ) -> None:
        self.root = root
        self.volume = volume
        self.laptop = laptop
        self.redis = redis
        self.broker_url = redis.url
        self.test_dir = root.name
        self.records_dir = root / "records"
        self.project_dir = root / "project"
        self.logs_dir = root / "logs"
        for path in (self.records_dir, self.project_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.project_dir / "record.py").write_text(RECORD_PY)
        self.opdef = OpDef("record", {"exec": "python record.py"})
        self.runs_dir_for("laptop").mkdir(parents=True)
        self.hosts: dict[str, Host] = {
            name: Host(name, volume, root / "mnt" / name, self.logs_dir) for name in host_names
        }
        self.workers: list[Worker] = []

    def start_hosts(self) -> None:
        for host in self.hosts.values():
            host.start()
        for host in self.hosts.values():
            host.wait_ready()

    def _host(self, host: Host | str) -> Host:
        return self.hosts[host] if isinstance(host, str) else host

    def runs_dir_for(self, host: Host | str) -> Path:
        """This test's runs dir as `host` (a Host, its name, or "laptop") sees it."""
        mount = self.laptop if host == "laptop" else self._host(host).mountpoint
        return mount / self.test_dir / "runs"

    def host_view(self, host: Host | str, path: str | Path) -> Path:
        return self._host(host).view(path)

    def worker_env(self, host: Host | str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
        env.update(TEST_ENV)
        env["GAGE_RUNS"] = str(self.runs_dir_for(host))
        env["GAGE_BROKER_URL"] = self.broker_url
        env.update(extra)
        return env

    def start_worker(
        self, host: Host | str, *args: str, env: dict[str, str] | None = None, wait: bool = True,
    ) -> Worker:
        """Start `gage-worker ARGS` in `host` as node `w<n>@<hostname>`."""
        host = self._host(host)
        n = len(self.workers)
        log_path = self.logs_dir / f"worker-{n}-{host.name}.log"
        argv = [*worker_command(), "--hostname", f"w{n}@%h", *args]
        env = env or self.worker_env(host)
        proc = host.spawn(argv, env=env, log_path=log_path)
        # Pinged from here through the broker (a unix socket at the same path in every host).
        worker = Worker(proc, log_path, node_name(argv, host=host.name),  # type: ignore[arg-type]
                        Settings.from_env({**env, "GAGE_RUNS": str(self.runs_dir_for("laptop"))}))
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stage(self, *, sleep: float = 0.0) -> Run:
        """Stage a recording run in the laptop's runs dir."""
        run = make_run(OpRef("project", "record"), str(self.runs_dir_for("laptop")))
        env = {"RECORDS_DIR": str(self.records_dir), "SLEEP": str(sleep)}
        init_run_meta(run, self.opdef, {}, OpCmd([sys.executable, "record.py"], env))
        stage_run(run, str(self.project_dir))
        return run

    def laptop_settings(self) -> Settings:
        env = {**TEST_ENV, "GAGE_RUNS": str(self.runs_dir_for("laptop")),
               "GAGE_BROKER_URL": self.broker_url}
        return Settings.from_env(env)

    def submit(self, run: Run, **kwargs: Any) -> Run:
        submit_run(run, settings=self.laptop_settings(), **kwargs)
        return run

    def stage_and_submit(self, count: int, *, sleep: float = 0.0, **kwargs: Any) -> list[Run]:
        return [self.submit(self.stage(sleep=sleep), **kwargs) for _ in range(count)]

    def ended(self, run: Run) -> float | None:
        """When the run's command was about to exit (epoch s), None if it never got there."""
        path = self.records_dir / f"{run.id}.end"
        return float(path.read_text()) if path.exists() else None

    def executions(self, run: Run) -> list[dict[str, Any]]:
        """One record (host, pid, time) per time the run's command started."""
        path = self.records_dir / run.id
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def close(self) -> None:
        """Kill every host: its workers, runs and glusterfs client die with it."""
        for host in self.hosts.values():
            host.kill()


# --- fixtures ----------------------------------------------------------------


def _skip_if_unavailable() -> None:
    reason = multihost_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def gluster_volume(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlusterVolume]:
    """A started GlusterFS volume for the session; stopped and deleted afterwards."""
    _skip_if_unavailable()
    glusterd = Glusterd()
    volume = GlusterVolume(tmp_path_factory.mktemp("gluster"))
    try:
        glusterd.acquire()
        sweep_stale_volumes()
        volume.create()
        yield volume
    finally:
        volume.destroy()
        glusterd.release()


@pytest.fixture(scope="session")
def laptop_mount(gluster_volume: GlusterVolume, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The laptop's mount of the volume, in the test process's namespace."""
    root = tmp_path_factory.mktemp("laptop")
    mount = GlusterMount(gluster_volume, root / "mnt", root / "glusterfs.log")
    try:
        yield mount.path
    finally:
        mount.unmount()


@pytest.fixture
def multihost_bed(
    gluster_volume: GlusterVolume, laptop_mount: Path, redis_unix_server: RedisServer,
    tmp_path: Path,
) -> Iterator[MultihostBed]:
    """Hosts `HOSTS` on their own mounts, the laptop's mount, a unix-socket Redis."""
    bed = MultihostBed(tmp_path, gluster_volume, laptop_mount, redis_unix_server)
    try:
        bed.start_hosts()
        yield bed
    finally:
        bed.close()
