"""Benchmark: gage-queue next to its peers, the same runs on the same machine.

    python bench/peers.py [--runs 50] [--sleep-runs 20] [--rounds 3] [--peers a,b]
                          [--gage REV] [--scratch DIR] [--dir DIR] [--python PY]

Two workloads, both with 2 slots everywhere: `--runs` runs of a trivial
program (it prints a line) and `--sleep-runs` runs of one that sleeps 1 s.
Each run gets a number x and, as it ends, writes a marker file
`<x>.<pid>` (written, then renamed into place) holding the time it
started. The bench counts them, so every batch is checked: each run once,
none twice, none missing, none from another batch; and by the peer's own
account (its status of every run: completed).

Peers:

- `floor`: a plain Python loop (a thread pool of 2) spawning the program:
  what the runs cost with no queue at all.
- `celery`: a bare Celery task that runs the program with `subprocess`
  (`acks_late`, prefetch 1, `-c 2` prefork) on a private redis-server; a
  new process sends the tasks and joins their results.
- `gage-redis`, `gage-embedded`: gage-queue, one `gage-worker -c 2`, one
  grid command (`gage-submit say x=[1,2,...,N]`), on the private Redis and
  on the embedded broker (a folder in the runs dir). A batch ends when the
  queue owes nothing more for any run (`<runs>/.gage-queue/active/` is
  empty: every run finalized).
- `gage-redis-n`: the same worker and Redis as `gage-redis`, N separate
  `gage-submit say x=I` commands one after the other (a shell loop).
- `guild`: Guild AI, `guild run say x=[...] --stage-trials`, then two
  `guild run queue run-once=yes poll-interval=1` (its way to run staged
  trials in parallel); a batch ends when both queues have exited.
- `dvc`: DVC, `dvc exp run --queue say -S 'x=range(...)'` (one sweep), then
  `dvc queue start -j 2`; a batch ends when every experiment is committed
  (its `refs/exps` ref). Analytics and the update check are off
  (`DVC_NO_ANALYTICS=1`, `core.analytics false`, `core.check_update false`).
  Its workers are stopped after each batch (`dvc queue stop`, not timed).

The run programs and the floor are the same file run by a bare interpreter
with nothing installed (`--python`, default: the interpreter this venv was
made from, started `-I -S`: no site-packages, no environment), never a
venv's `python`. Each peer is in its own venv under `--scratch` (celery,
guildai and dvc from PyPI, made once and reused), gage-queue too: `--gage
REV` installs that commit of this checkout from `git archive` (default
HEAD, so edits in progress in the work tree do not get in the way), or
`--gage worktree` uses this venv's commands; it is driven through
`gage-submit` and `gage-worker` only. Bytecode caching is on for all
(`PYTHONPYCACHEPREFIX` in the scratch dir), warmed by one unmeasured
batch per peer.

Rounds are interleaved (each round runs every peer once per workload, in
a rotated order, then one single run per peer). A batch's wall time runs
from its first command to the peer's end of it. Its CPU is counted two
ways, per run: the whole machine's busy time (/proc/stat: every process,
the kernel, and whatever else the machine ran meanwhile), and that of the
bench's own processes, from a cgroup the bench moves itself into at start
(cgroup v1 cpuacct or v2; every process it starts inherits it, daemons
too; left and removed at the end; where none can be made, only the
machine's). Before each measured batch, the bench waits up to
`--quiet-wait` s for other users' load (machine less own) to drop under
`--max-foreign` cores, and it reports how much there was. The first table
gives the median and min wall time over the rounds and the ratio to the
floor's (median to median, min to min), and the median time from a new
process's submit of one run to that run's first line; the second CPU per
run and what a peer adds beyond the floor's (the run's own cost), and
for gage-queue how much of that is its submit command (`wait4`'s
rusage). A peer that cannot be installed, does not start, or fails a
batch is skipped from then on, with a one-line reason. Every process the
bench starts carries `PEERS_BENCH_TAG` in its environment and is killed
at the end (a failed peer's at once); redis-server is stopped by pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SLOTS = 2
TAG_VAR = "PEERS_BENCH_TAG"
TARGET_BEYOND_MS = 22.0
POLL = 0.005

PROGRAM = """\
import os
import sys
import time

t = time.time()
x = 0
if len(sys.argv) > 1:
    x = sys.argv[1]
print("run", x, flush=True)
{sleep}
name = "%s.%d" % (x, os.getpid())
fd = os.open(os.path.join({markers!r}, "." + name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, repr(t).encode())
os.close(fd)
os.rename(os.path.join({markers!r}, "." + name), os.path.join({markers!r}, name))
"""


@dataclass(frozen=True)
class Workload:
    key: str  # "trivial" or "sleep"
    op: str  # the op / program name: say, nap
    sleep: float

    @property
    def prog(self) -> str:
        return self.op + ".py"


TRIVIAL = Workload("trivial", "say", 0.0)
SLEEP = Workload("sleep", "nap", 1.0)
WORKLOADS = (TRIVIAL, SLEEP)


class Skip(Exception):
    """A peer cannot be measured: one line saying why."""


# ---------------------------------------------------------------------
# machine


def busy_seconds() -> float:
    """CPU seconds this machine has spent not idle since boot (every process, the kernel)."""
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        kb = int(f.readline().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return (f"{os.cpu_count()} CPUs ({model}), {mem} RAM, Linux {platform.release()},"
            f" {platform.python_implementation()} {platform.python_version()}")


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class OwnCpu:
    """CPU time of this process and of every process it starts, exited ones too.

    From a cgroup of its own (v1 `cpuacct`, else v2 `cpu.stat`) that this
    process moves itself into at start (children inherit it, daemonized or
    not) and out of at the end; None where no cgroup can be made. Unlike
    /proc/stat it leaves out what other users of the machine do.
    """

    def __init__(self, tag: str):
        self.path: Path | None = None
        self.back: Path | None = None
        self.file = ""
        for fstype, point, opts in self._mounts():
            if fstype == "cgroup" and "cpuacct" in opts.split(","):
                controller, file = "cpuacct", "cpuacct.usage"
            elif fstype == "cgroup2":
                controller, file = "", "cpu.stat"
            else:
                continue
            here = self._current(controller)
            if here is None:
                continue
            path = Path(point) / here.lstrip("/") / f"gage-peers-{tag}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "cgroup.procs").write_text(str(os.getpid()))
                self.path, self.back, self.file = path, path.parent, file
                if self.seconds() is not None:
                    return
                self.close()
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()

    @staticmethod
    def _mounts() -> list[tuple[str, str, str]]:
        with open("/proc/mounts") as f:
            rows = [line.split()[:4] for line in f]
        v1 = [(r[2], r[1], r[3]) for r in rows if r[2] == "cgroup"]
        v2 = [(r[2], r[1], r[3]) for r in rows if r[2] == "cgroup2"]
        return v1 + v2

    @staticmethod
    def _current(controller: str) -> str | None:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if (controller and controller in controllers.split(",")) or (
                        not controller and controllers == ""):
                    return path
        return None

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "none"

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        try:
            text = (self.path / self.file).read_text()
        except OSError:
            return None
        if self.file == "cpuacct.usage":
            return int(text) / 1e9
        for line in text.splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
        return None

    def close(self) -> None:
        if self.path is None or self.back is None:
            return
        with contextlib.suppress(OSError):
            (self.back / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(20):
            try:
                self.path.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        self.path = None


def tagged_pids(tag: str) -> list[int]:
    """Processes whose environment holds `TAG_VAR=<tag>...` (ours), but this one."""
    needle = f"{TAG_VAR}={tag}".encode()
    prefix = needle + b":"
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if any(item == needle or item.startswith(prefix) for item in env.split(b"\0")):
            pids.append(int(name))
    return pids


def kill_tagged(tag: str, grace: float = 3.0) -> int:
    """SIGTERM, then SIGKILL after `grace` s, every process tagged `tag`; how many there were."""
    pids = tagged_pids(tag)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and tagged_pids(tag):
        time.sleep(0.05)
    for _ in range(10):
        left = tagged_pids(tag)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return len(pids)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[-400:]


def one_line(text: str) -> str:
    return " ".join(text.split())[:300]


# ---------------------------------------------------------------------
# environment shared by every peer


@dataclass
class Env:
    """Paths, the bare interpreter and the base environment of this invocation."""

    scratch: Path  # venvs, pycache: kept between invocations
    work: Path  # projects, runs, markers, logs: this invocation's
    bare: list[str]  # the run programs' interpreter: [python, -I, -S]
    tag: str
    timeout_scale: float = 1.0
    base: dict[str, str] = field(default_factory=dict)
    max_foreign: float = 0.3  # cores others may use before a batch (`wait_quiet`)
    quiet_wait: float = 10.0

    def environ(self, peer: str, path_first: Path | None = None, **extra: str) -> dict[str, str]:
        env = dict(self.base)
        env[TAG_VAR] = f"{self.tag}:{peer}"
        if path_first is not None:
            env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env


def base_environ(scratch: Path) -> dict[str, str]:
    """This process's environment less the settings of Python, the peers and venvs."""
    drop = ("GAGE_", "CELERY_", "GUILD_", "DVC_", "PYTHON", "VIRTUAL_ENV", "RUNS_DIR",
            "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    env["LC_ALL"] = env["LANG"] = "C.UTF-8"
    env["TERM"] = "dumb"
    env["COLUMNS"] = "200"
    return env


@contextlib.contextmanager
def bench_env(scratch_dir: str, work_dir: str | None,
              prefix: str) -> Iterator[tuple[Env, str, RedisServer]]:
    """A bench's `Env` (a fresh tag, its work dir under `work_dir`), the venv's base
    interpreter and a (not yet started) private redis-server. This process is tagged so
    that anything it starts is found; on the way out all of it is stopped and the work
    dir removed."""
    tag = uuid.uuid4().hex[:12]
    scratch = Path(scratch_dir).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=work_dir))
    env = Env(scratch, work, bare_python(None), tag, 1.0, base_environ(scratch))
    os.environ[TAG_VAR] = f"{tag}:bench"
    redis = RedisServer(env, work / "redis")
    try:
        yield env, os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable), redis
    finally:
        redis.stop()
        kill_tagged(env.tag)
        shutil.rmtree(env.work, ignore_errors=True)


def bare_python(choice: str | None) -> list[str]:
    """The run programs' interpreter: `choice`, else this venv's base interpreter, with -I -S."""
    exe = choice or getattr(sys, "_base_executable", None) or sys.executable
    exe = os.path.realpath(shutil.which(exe) or exe)
    cmd = [exe, "-I", "-S"]
    probe = "import sys; print(any('-packages' in p for p in sys.path))"
    out = subprocess.run([*cmd, "-c", probe], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or out.stdout.strip() != "False":
        raise SystemExit(f"{exe} -I -S is not a bare interpreter: {out.stdout}{out.stderr}")
    return cmd


def make_venv(env: Env, name: str, requirements: list[str], python: str) -> Path:
    """`<scratch>/venvs/<name>` with `requirements` installed (once: a stamp says so)."""
    venv = env.scratch / "venvs" / name
    stamp = venv / ".peers-bench-ok"
    want = json.dumps({"python": python, "requirements": requirements})
    if stamp.exists() and stamp.read_text() == want and (venv / "bin" / "python").exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = env.scratch / "venvs" / f"{name}.install.log"
    penv = {k: v for k, v in env.base.items() if k != "PYTHONPYCACHEPREFIX"}
    penv[TAG_VAR] = f"{env.tag}:install"
    print(f"  installing {' '.join(requirements)} into {venv} ...", flush=True)
    with log.open("wb") as out:
        for cmd in ([python, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                     "--disable-pip-version-check", *requirements]):
            try:
                code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=penv,
                                      timeout=900).returncode
            except subprocess.TimeoutExpired:
                raise Skip(f"`{' '.join(cmd[2:])}` took over 900 s") from None
            if code != 0:
                raise Skip(f"`{' '.join(cmd[2:5])} ...` failed: {tail(log, 2)}")
    stamp.write_text(want)
    return venv


def pip_version(venv: Path, dist: str) -> str:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          f"import importlib.metadata as m; print(m.version({dist!r}))"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "?"


class Markers:
    """The marker files of one peer's runs: `<x>.<pid>`, holding the run's start time."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._mtime = -1
        self._count = 0

    def clear(self) -> None:
        for name in os.listdir(self.path):
            os.unlink(self.path / name)
        self._mtime, self._count = -1, 0

    def count(self) -> int:
        """How many markers there are: a stat, and a listing only when the dir changed."""
        mtime = os.stat(self.path).st_mtime_ns
        if mtime != self._mtime:
            self._mtime = mtime
            self._count = sum(not name.startswith(".") for name in os.listdir(self.path))
        return self._count

    def check(self, xs: list[int]) -> tuple[list[str], list[float]]:
        """Problems with the markers of a batch of runs `xs`, and the runs' start times."""
        seen: dict[str, list[float]] = {}
        for name in os.listdir(self.path):
            if name.startswith("."):
                continue
            x = name.split(".")[0]
            try:
                t = float((self.path / name).read_text())
            except (OSError, ValueError):
                t = float("nan")
            seen.setdefault(x, []).append(t)
        want = {str(x) for x in xs}
        problems = []
        missing = sorted(want - seen.keys(), key=int)
        twice = sorted((x for x in want if len(seen.get(x, [])) > 1), key=int)
        stray = sorted(seen.keys() - want)
        if missing:
            problems.append(f"{len(missing)} runs missing (x={','.join(missing[:5])})")
        if twice:
            problems.append(f"{len(twice)} runs ran twice (x={','.join(twice[:5])})")
        if stray:
            problems.append(f"{len(stray)} runs not of this batch (x={','.join(stray[:5])})")
        return problems, [t for ts in seen.values() for t in ts]


def wait_for(predicate: Callable[[], bool], deadline: float, what: str,
             alive: Callable[[], bool] = lambda: True) -> float:
    """Poll `predicate` every POLL s until true (its time) or the deadline."""
    while not predicate():
        if time.monotonic() > deadline:
            raise Skip(f"timed out waiting for {what}")
        if not alive():
            if predicate():
                break
            raise Skip(f"gave up waiting for {what}: the peer stopped")
        time.sleep(POLL)
    return time.perf_counter()


def run_cmd(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float,
            what: str | None = None) -> float:
    """Run `cmd` to its end, its output appended to `log`; its CPU seconds. Skip if it fails.

    The CPU is the command's and its waited-for children's (`wait4`'s rusage).
    """
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(max(0.1, timeout), proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code == -signal.SIGKILL and timeout > 0:
        raise Skip(f"`{what or cmd[0]}` took over {timeout:.0f} s")
    if code != 0:
        raise Skip(f"`{what or os.path.basename(cmd[0])}` exited {code}: {tail(log)}")
    return usage.ru_utime + usage.ru_stime


def capture(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise Skip(f"`{' '.join(os.path.basename(c) for c in cmd[:3])}` exited "
                   f"{proc.returncode}: {one_line(proc.stderr)[-200:]}")
    return proc.stdout


# ---------------------------------------------------------------------
# peers


class Peer:
    """One way of running the batches. Subclasses set `key`, `label` and the hooks."""

    key = ""
    label = ""
    version = ""
    submit_cpu = 0.0  # CPU seconds of the batch's submit commands (`run_cmd`)

    def __init__(self, env: Env):
        self.env = env
        self.dir = env.work / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "peer.log"
        self.markers = Markers(self.dir / "markers")
        self.project = self.dir / "project"
        self.project.mkdir(exist_ok=True)
        for w in WORKLOADS:
            sleep = f"time.sleep({w.sleep})" if w.sleep else ""
            (self.project / w.prog).write_text(
                PROGRAM.format(sleep=sleep, markers=str(self.markers.path)))

    @property
    def program_cmd(self) -> str:
        return shlex.join(self.env.bare)

    def environ(self, **extra: str) -> dict[str, str]:
        return self.env.environ(self.key, **extra)

    def setup(self) -> None:
        """Install and start what the peer needs, once (Skip if it cannot)."""

    def run(self, w: Workload, xs: list[int], deadline: float) -> float:
        """Submit the runs `xs` of `w` and return when the peer has done them (perf_counter)."""
        raise NotImplementedError

    def verify(self, w: Workload, xs: list[int]) -> list[str]:
        """Problems with the batch by the peer's own account (not timed)."""
        return []

    def after(self) -> None:
        """Untimed tidying after a batch."""

    def stop(self) -> None:
        """Stop what `setup` started."""
        kill_tagged(f"{self.env.tag}:{self.key}")


class Floor(Peer):
    key = "floor"
    label = "plain loop, 2 at a time (floor)"

    def run(self, w: Workload, xs: list[int], deadline: float) -> float:
        def one(x: int) -> int:
            return subprocess.run([*self.env.bare, w.prog, str(x)], cwd=self.project,
                                  stdout=subprocess.DEVNULL,
                                  timeout=max(1.0, deadline - time.monotonic())).returncode

        with ThreadPoolExecutor(SLOTS) as pool:
            codes = list(pool.map(one, xs))
        done = time.perf_counter()
        if any(codes):
            raise Skip(f"the program exited {max(codes)}")
        return done


class RedisServer:
    """A private redis-server on a free loopback port, no persistence, stopped by pid."""

    def __init__(self, env: Env, workdir: Path):
        self.env = env
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(exe, os.X_OK):
            raise Skip("no redis-server on the PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             "--logfile", str(self.workdir / "redis.log"), "--daemonize", "no"],
            env=self.env.environ("redis"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Skip(f"redis-server did not start: {tail(self.workdir / 'redis.log')}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


CELERY_TASKS = """\
import os
import subprocess

from celery import Celery

HERE = os.path.dirname(os.path.abspath(__file__))
BARE = {bare!r}
URL = os.environ["PEER_REDIS"]

app = Celery("peer", broker=URL, backend=URL)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="peer.run")
def run(prog, x):
    with open(os.path.join(HERE, "out", "%s.out" % x), "wb") as out:
        return subprocess.run([*BARE, prog, str(x)], cwd=HERE, stdout=out,
                              stderr=subprocess.STDOUT).returncode
"""

CELERY_SUBMIT = """\
import os
import sys

from celery.result import ResultSet

from tasks import run

prog, xs = sys.argv[1], sys.argv[2:]
results = ResultSet([run.delay(prog, x) for x in xs])
codes = results.join(timeout=float(os.environ.get("PEER_TIMEOUT", "600")))
sys.exit(0 if all(code == 0 for code in codes) else 1)
"""


class CeleryPeer(Peer):
    key = "celery"
    label = "Celery task + subprocess (Redis)"

    def __init__(self, env: Env, redis: RedisServer, python: str):
        super().__init__(env)
        self.redis = redis
        self.python = python

    def setup(self) -> None:
        self.venv = make_venv(self.env, "celery", ["celery[redis]"], self.python)
        self.version = f"celery {pip_version(self.venv, 'celery')}"
        (self.project / "out").mkdir(exist_ok=True)
        (self.project / "tasks.py").write_text(CELERY_TASKS.format(bare=self.env.bare))
        (self.project / "submit.py").write_text(CELERY_SUBMIT)
        self.penv = self.environ(PEER_REDIS=self.redis.url(1))
        worker_log = self.dir / "worker.log"
        self.worker = subprocess.Popen(
            [str(self.venv / "bin" / "celery"), "-A", "tasks", "worker", "-c", str(SLOTS),
             "--prefetch-multiplier", "1", "-n", "peer@%h", "-l", "info"],
            cwd=self.project, env=self.penv, stdout=worker_log.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while " ready." not in worker_log.read_text(errors="replace"):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise Skip(f"the celery worker did not start: {tail(worker_log)}")
            time.sleep(0.05)

    def run(self, w: Workload, xs: list[int], deadline: float) -> float:
        timeout = deadline - time.monotonic()
        env = dict(self.penv, PEER_TIMEOUT=str(timeout))
        self.submit_cpu += run_cmd(
            [str(self.venv / "bin" / "python"), "submit.py", w.prog, *map(str, xs)], env,
            self.project, self.log, timeout, "python submit.py")
        return time.perf_counter()


GAGE_TOML = """\
[say]
exec = "{py} say.py"
config = "say.py"

[nap]
exec = "{py} nap.py"
config = "nap.py"
"""


@dataclass
class GageInstall:
    bindir: Path  # where its gage-submit and gage-worker are
    version: str  # what it is, for the report
    src: Path  # its source tree (bench/, tests/ of the same commit)


def gage_install(env: Env, rev: str, python: str) -> GageInstall:
    """The gage-queue to measure: its commands, what it is, and its source.

    `rev` "worktree": this checkout as it is, through this venv's commands
    (`make install`). Any other: that commit of this checkout, from `git
    archive`, installed (not editable) in its own venv under the scratch dir,
    so edits in progress in the work tree do not get in the way.
    """
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise Skip(f"git {' '.join(args)}: {one_line(out.stderr)}")
        return out.stdout.strip()

    if rev == "worktree":
        bindir = Path(sys.executable).parent
        if not (bindir / "gage-submit").exists():
            raise Skip(f"no gage-submit next to {sys.executable} (make install)")
        return GageInstall(bindir, f"gage-queue work tree ({git('describe', '--always', '--dirty')})",
                           REPO)
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    name = f"gage-{sha[:12]}"
    src = env.scratch / "gage-src" / sha[:12]
    if not (src / "pyproject.toml").exists():
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha],
                                 capture_output=True)
        if archive.returncode != 0:
            raise Skip(f"git archive {sha[:12]}: {one_line(archive.stderr.decode())}")
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    venv = make_venv(env, name, [str(src)], python)
    for old in (env.scratch / "venvs").glob("gage-*"):  # older commits' installs
        if old.name not in (name, f"{name}.install.log"):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    for old in (env.scratch / "gage-src").glob("*"):
        if old.name != sha[:12]:
            shutil.rmtree(old, ignore_errors=True)
    return GageInstall(venv / "bin", f"gage-queue {sha[:8]} ({rev}, installed from git archive)",
                       src)


class GageWorker:
    """One `gage-worker -c 2` on a runs dir and a broker (None: the embedded one)."""

    def __init__(self, env: Env, key: str, root: Path, broker: str | None, bindir: Path):
        self.env = env
        self.key = key
        self.bindir = bindir
        self.runs = root / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.broker = broker
        extra = {"GAGE_RUNS": str(self.runs), "GAGE_NO_WORKER_NOTICE": "3600"}
        if broker:
            extra["GAGE_BROKER_URL"] = broker
        self.penv = env.environ(key, path_first=bindir, **extra)
        self.proc: subprocess.Popen | None = None

    def command(self, name: str) -> str:
        return str(self.bindir / name)

    def worker_args(self) -> list[str]:
        """What `gage-worker worker` gets besides its node name."""
        return ["-c", str(SLOTS)]

    def start(self) -> None:
        log = self.root / "worker.log"
        self.proc = subprocess.Popen(
            [self.command("gage-worker"), "worker", *self.worker_args(), "-n", f"{self.key}@%h"],
            env=self.penv, cwd=self.root, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise Skip(f"gage-worker did not start: {tail(log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(30)
            self.proc = None


class GagePeer(Peer):
    """gage-queue: one grid command (or `separate` submits) to a `GageWorker`."""

    def __init__(self, env: Env, key: str, label: str, worker: GageWorker, separate: bool):
        self.key, self.label = key, label
        super().__init__(env)
        self.worker = worker
        self.separate = separate
        (self.project / "gage.toml").write_text(GAGE_TOML.format(py=self.program_cmd))
        self.active = worker.runs / ".gage-queue" / "active"

    def setup(self) -> None:
        out = subprocess.run([self.worker.command("gage-submit"), "--help"],
                             capture_output=True, text=True, env=self.worker.penv, timeout=60)
        if out.returncode != 0:
            raise Skip(f"gage-submit --help exited {out.returncode}: {one_line(out.stderr)}")
        if self.worker.proc is None:
            self.worker.start()

    def _idle(self) -> bool:
        """True when the queue owes nothing for any run (the active index is empty)."""
        with os.scandir(self.active) as entries:
            return next(entries, None) is None

    def run(self, w: Workload, xs: list[int], deadline: float) -> float:
        submit = self.worker.command("gage-submit")
        timeout = deadline - time.monotonic()
        if self.separate:
            for x in xs:
                self.submit_cpu += run_cmd([submit, w.op, f"x={x}"], self.worker.penv,
                                           self.project, self.log, timeout, "gage-submit")
        else:
            grid = "x=[" + ",".join(map(str, xs)) + "]"
            self.submit_cpu += run_cmd([submit, w.op, grid, "--max-runs", str(len(xs))],
                                       self.worker.penv, self.project, self.log, timeout,
                                       "gage-submit")
        if not self.active.is_dir():
            raise Skip(f"no active index at {self.active} (has the runs dir layout changed?)")
        return wait_for(self._idle, deadline, "the runs to be finalized",
                        lambda: self.worker.proc is not None and self.worker.proc.poll() is None)

    def verify(self, w: Workload, xs: list[int]) -> list[str]:
        out = capture([self.worker.command("gage-submit"), "list", "-a", "--op", w.op, "--json"],
                      self.worker.penv, self.project)
        want = {str(x) for x in xs}
        rows = [r for r in json.loads(out) if str((r.get("config") or {}).get("x")) in want]
        problems = []
        if len(rows) != len(xs):
            problems.append(f"gage-submit list shows {len(rows)} runs of {len(xs)}")
        bad = [r for r in rows if r.get("status") != "completed"]
        if bad:
            problems.append(f"{len(bad)} runs not completed ({bad[0].get('status')}:"
                            f" {bad[0].get('reason')})")
        return problems

    def stop(self) -> None:
        self.worker.stop()
        super().stop()


GUILD_YML = """\
say:
  exec: {py} say.py ${{x}}
  flags:
    x: 0
nap:
  exec: {py} nap.py ${{x}}
  flags:
    x: 0
"""


class GuildPeer(Peer):
    key = "guild"
    label = "Guild AI (--stage-trials, 2 queues)"

    def __init__(self, env: Env, python: str):
        super().__init__(env)
        self.python = python

    def setup(self) -> None:
        self.venv = make_venv(self.env, "guildai", ["guildai"], self.python)
        self.version = f"guildai {pip_version(self.venv, 'guildai')}"
        (self.project / "guild.yml").write_text(GUILD_YML.format(py=self.program_cmd))
        home = self.dir / "guild-home"
        home.mkdir(exist_ok=True)
        self.penv = self.environ(GUILD_HOME=str(home))
        self.penv["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{self.penv['PATH']}"
        self.guild = str(self.venv / "bin" / "guild")
        capture([self.guild, "check", "--offline"], self.penv, self.project, timeout=300)

    def run(self, w: Workload, xs: list[int], deadline: float) -> float:
        grid = "x=[" + ",".join(map(str, xs)) + "]"
        self.submit_cpu += run_cmd([self.guild, "run", w.op, grid, "--stage-trials", "-y"],
                                   self.penv, self.project, self.log,
                                   deadline - time.monotonic(), "guild run --stage-trials")
        queues = []
        with self.log.open("ab") as out:
            for _ in range(SLOTS):
                queues.append(subprocess.Popen(
                    [self.guild, "run", "queue", "run-once=yes", "poll-interval=1", "-y"],
                    env=self.penv, cwd=self.project, stdout=out, stderr=subprocess.STDOUT))
        for q in queues:
            try:
                q.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise Skip("guild queues did not finish in time") from None
        done = time.perf_counter()
        if any(q.returncode for q in queues):
            raise Skip(f"a guild queue exited {max(q.returncode for q in queues)}: {tail(self.log)}")
        return done

    def verify(self, w: Workload, xs: list[int]) -> list[str]:
        runs = json.loads(capture([self.guild, "api", "runs"], self.penv, self.project))
        want = {str(x) for x in xs}
        rows = [r for r in runs if r.get("operation") == w.op
                and str((r.get("flags") or {}).get("x")) in want]
        problems = []
        if len(rows) != len(xs):
            problems.append(f"guild shows {len(rows)} runs of {len(xs)}")
        bad = [r for r in rows if r.get("status") != "completed"]
        if bad:
            problems.append(f"{len(bad)} runs not completed ({bad[0].get('status')})")
        return problems


DVC_YAML = """\
stages:
  say:
    cmd: {py} say.py ${{x}}
    params:
      - x
  nap:
    cmd: {py} nap.py ${{x}}
    params:
      - x
"""


class DvcPeer(Peer):
    key = "dvc"
    label = "DVC (exp run --queue, queue start -j 2)"
    hung_workers = 0  # workers that had to be stopped after a batch (`after`), in all

    def __init__(self, env: Env, python: str):
        super().__init__(env)
        self.python = python

    def setup(self) -> None:
        self.venv = make_venv(self.env, "dvc", ["dvc"], self.python)
        self.version = f"dvc {pip_version(self.venv, 'dvc')}"
        if not shutil.which("git"):
            raise Skip("no git on the PATH (dvc needs a git repo)")
        cfg = self.dir / "dvc-config"
        for sub in ("global", "system", "site-cache"):
            (cfg / sub).mkdir(parents=True, exist_ok=True)
        self.penv = self.environ(
            DVC_NO_ANALYTICS="1", DVC_STUDIO_OFFLINE="1",
            DVC_GLOBAL_CONFIG_DIR=str(cfg / "global"), DVC_SYSTEM_CONFIG_DIR=str(cfg / "system"),
            DVC_SITE_CACHE_DIR=str(cfg / "site-cache"), GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
            GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
        self.penv["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{self.penv['PATH']}"
        self.dvc = str(self.venv / "bin" / "dvc")
        p = self.project
        (p / "dvc.yaml").write_text(DVC_YAML.format(py=self.program_cmd))
        (p / "params.yaml").write_text("x: 0\n")
        for cmd in (["git", "init", "-q"], [self.dvc, "init", "-q"],
                    [self.dvc, "config", "core.analytics", "false"],
                    [self.dvc, "config", "core.check_update", "false"],
                    ["git", "add", "-A"], ["git", "commit", "-qm", "bench project"]):
            capture(cmd, self.penv, p)
        self._success = self._status().get("Success", 0)

    def _exp_refs(self) -> int:
        """How many experiments are committed: refs/exps/<xx>/<baseline>/<name>, loose or packed."""
        git = self.project / ".git"
        count = 0
        root = git / "refs" / "exps"
        for dirpath, _dirs, files in os.walk(root):
            rel = os.path.relpath(dirpath, root).split(os.sep)
            if len(rel) == 2 and rel[0] != "celery":
                count += len(files)
        with contextlib.suppress(FileNotFoundError), open(git / "packed-refs") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].startswith("refs/exps/"):
                    rel = parts[1].split("/")[2:]
                    count += len(rel) == 3 and rel[0] != "celery"
        return count

    def _status(self) -> dict[str, int]:
        out = capture([self.dvc, "queue", "status"], self.penv, self.project)
        counts: dict[str, int] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] not in ("Task", "Worker"):
                counts[parts[-1]] = counts.get(parts[-1], 0) + 1
        return counts

    def run(self, w: Workload, xs: list[int], deadline: float) -> float:
        before = self._exp_refs()
        sweep = f"x=range({xs[0]},{xs[-1] + 1})"
        if xs != list(range(xs[0], xs[-1] + 1)):
            raise Skip("the dvc sweep needs consecutive x")
        self.submit_cpu += run_cmd([self.dvc, "exp", "run", "--queue", w.op, "-S", sweep],
                                   self.penv, self.project, self.log,
                                   deadline - time.monotonic(), "dvc exp run --queue")
        run_cmd([self.dvc, "queue", "start", "-j", str(SLOTS)], self.penv, self.project,
                self.log, deadline - time.monotonic(), "dvc queue start")
        failed = self._failed()

        def done() -> bool:
            if self._failed() > failed:
                raise Skip(f"an experiment failed: {tail(self.log)}")
            return self._exp_refs() >= before + len(xs)

        try:
            return wait_for(done, deadline, "dvc experiments to be committed")
        except Skip as e:
            try:
                out = capture([self.dvc, "queue", "status"], self.penv, self.project, timeout=60)
                status = " ".join(out.split()[-5:])
            except (Skip, subprocess.TimeoutExpired) as why:
                status = str(why)
            raise Skip(f"{e} ({self._exp_refs() - before} of {len(xs)};"
                       f" dvc queue status: ...{status}; {len(self._workers())} workers;"
                       f" log: {tail(self.log, 2)})") from None

    def _failed(self) -> int:
        """How many experiments failed: the reflog of refs/exps/celery/failed (dvc's failed stash)."""
        log = self.project / ".git" / "logs" / "refs" / "exps" / "celery" / "failed"
        try:
            with open(log, "rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def _workers(self) -> list[int]:
        mine = set(tagged_pids(f"{self.env.tag}:{self.key}"))
        workers = []
        for pid in mine:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"queue-worker" in f.read():
                    workers.append(pid)
        return workers

    def verify(self, w: Workload, xs: list[int]) -> list[str]:
        deadline = time.monotonic() + 60
        while True:
            status = self._status()
            if not (status.get("Running") or status.get("Queued")) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        success = status.get("Success", 0)
        problems = []
        if success - self._success != len(xs):
            problems.append(f"dvc queue status shows {success - self._success} new successes"
                            f" of {len(xs)} ({status})")
        self._success = success
        if status.get("Failed"):
            problems.append(f"{status['Failed']} experiments failed")
        return problems

    def after(self) -> None:
        """Let the queue's workers exit (they do after 10 s idle), so every batch starts alike.

        Now and then one of the two logs "shutting down due to empty queue"
        and hangs there (seen with dvc 3.67.1 and celery 5.7.0); after 30 s
        it gets SIGTERM, a Celery worker's warm shutdown, as a user would
        stop it. Killing one (SIGKILL) can leave the next `dvc queue start`
        thinking it runs, and the queue stuck.
        """
        deadline = time.monotonic() + 30
        while self._workers() and time.monotonic() < deadline:
            time.sleep(0.2)
        for signum in (signal.SIGTERM, signal.SIGKILL):
            workers = self._workers()
            if not workers:
                return
            self.hung_workers += len(workers) if signum == signal.SIGTERM else 0
            for pid in workers:
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)
            deadline = time.monotonic() + 30
            while self._workers() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self._workers():
            raise Skip("dvc's queue workers did not exit after a batch")


# ---------------------------------------------------------------------
# measuring


@dataclass
class Sample:
    wall: float
    cpu: float  # busy CPU seconds of the whole machine over the batch
    own_cpu: float | None  # CPU seconds of the bench's processes over the batch (`OwnCpu`)
    runs: int
    first_line: float  # submit to the earliest run's first line, s
    submit_cpu: float = 0.0  # CPU seconds of the submit commands (see `Peer.submit_cpu`)

    @property
    def foreign(self) -> float | None:
        """Cores busy with what is not this bench's over the batch (other users' work)."""
        return None if self.own_cpu is None else max(0.0, self.cpu - self.own_cpu) / self.wall


@dataclass
class Results:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    waited: float = 0.0  # seconds spent waiting for a quiet machine


def wait_quiet(own: OwnCpu, max_load: float, max_wait: float) -> float:
    """Wait (up to `max_wait` s) until what others run keeps under `max_load` cores for 1 s."""
    if own.seconds() is None or max_wait <= 0:
        return 0.0
    start = time.monotonic()
    while True:
        b0, o0 = busy_seconds(), own.seconds() or 0.0
        time.sleep(1.0)
        load = max(0.0, (busy_seconds() - b0) - ((own.seconds() or 0.0) - o0))
        if load < max_load or time.monotonic() - start > max_wait:
            return time.monotonic() - start - 1.0


def batch(peer: Peer, w: Workload, xs: list[int], timeout: float, own: OwnCpu) -> Sample:
    """One batch: submit `xs`, wait for every marker and for the peer to be done, check."""
    peer.markers.clear()
    peer.submit_cpu = 0.0
    deadline = time.monotonic() + timeout
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["done"] = peer.run(w, xs, deadline)
        except BaseException as e:  # noqa: BLE001 - carried to the main thread
            box["error"] = e

    own0 = own.seconds()
    cpu0 = busy_seconds()
    t0_wall = time.time()
    t0 = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    with contextlib.suppress(Skip):  # the thread says why, if it failed
        wait_for(lambda: peer.markers.count() >= len(xs), deadline, "the runs' markers",
                 alive=thread.is_alive)
    thread.join(max(0.1, deadline - time.monotonic() + 5))
    cpu1 = busy_seconds()
    own1 = own.seconds()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    if thread.is_alive() or "done" not in box:
        raise Skip(f"a batch of {len(xs)} {w.key} runs did not end within {timeout:.0f} s")
    problems, starts = peer.markers.check(xs)
    problems += peer.verify(w, xs)
    peer.after()
    if problems:
        raise Skip("; ".join(problems))
    wall = float(box["done"]) - t0  # type: ignore[arg-type]
    own_cpu = None if own0 is None or own1 is None else own1 - own0
    return Sample(wall, cpu1 - cpu0, own_cpu, len(xs), min(starts) - t0_wall, peer.submit_cpu)


def batch_timeout(w: Workload, n: int, scale: float) -> float:
    return (120 + n * (4 + w.sleep)) * scale


class Bench:
    def __init__(self, peers: list[Peer], results: Results, env: Env, own: OwnCpu):
        self.own = own
        self.peers = peers
        self.results = results
        self.env = env
        self.next_x = 1

    def alive(self) -> list[Peer]:
        return [p for p in self.peers if p.key not in self.results.skipped]

    def skip(self, peer: Peer, reason: str) -> None:
        self.results.skipped[peer.key] = one_line(reason)
        print(f"  {peer.key}: skipped: {one_line(reason)}", flush=True)
        with contextlib.suppress(Exception):
            peer.stop()

    def xs(self, n: int) -> list[int]:
        first = self.next_x
        self.next_x += n
        return list(range(first, first + n))

    def one(self, peer: Peer, w: Workload, n: int, record: bool = True) -> Sample | None:
        if record or n == 1:
            self.results.waited += wait_quiet(self.own, self.env.max_foreign, self.env.quiet_wait)
        try:
            sample = batch(peer, w, self.xs(n), batch_timeout(w, n, self.env.timeout_scale),
                           self.own)
        except Skip as e:
            self.skip(peer, f"{n} {w.key} runs: {e}")
            return None
        except Exception as e:  # noqa: BLE001 - a peer's failure is reported, not fatal
            self.skip(peer, f"{n} {w.key} runs: {type(e).__name__}: {e}")
            return None
        self.results.checked[peer.key] = self.results.checked.get(peer.key, 0) + n
        if record:
            self.results.samples.setdefault((peer.key, w.key), []).append(sample)
        return sample


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(results: Results, rows: list[tuple[str, str]], args: argparse.Namespace) -> None:
    floor = {w.key: results.samples.get(("floor", w.key), []) for w in WORKLOADS}

    def wall_cell(key: str, w: Workload) -> str:
        s = results.samples.get((key, w.key))
        if not s:
            return "skipped"
        walls = [x.wall for x in s]
        fl = [x.wall for x in floor[w.key]]
        med, low = median(walls), min(walls)
        if not fl:
            return f"{med:.2f} s (min {low:.2f} s)"
        return (f"{med:.2f} s / {med / median(fl):.2f}x"
                f" (min {low:.2f} s / {low / min(fl):.2f}x)")

    def cpu_ms(key: str, w: Workload, own: bool = False) -> float | None:
        s = results.samples.get((key, w.key)) or []
        values = [(x.own_cpu if own else x.cpu) for x in s]
        if not values or any(v is None for v in values):
            return None
        return median([v / x.runs for v, x in zip(values, s, strict=True)]) * 1000

    def cpu_cell(key: str, w: Workload, own: bool) -> str:
        ms, fl = cpu_ms(key, w, own), cpu_ms("floor", w, own)
        if ms is None:
            return "skipped" if not results.samples.get((key, w.key)) else "n/a"
        if key == "floor" or fl is None:
            return f"{ms:.1f} ms"
        return f"{ms:.1f} ms ({ms - fl:+.1f})"

    print()
    print(f"| peer | {args.runs} trivial runs: wall / x floor | {args.sleep_runs} runs of 1 s:"
          f" wall / x floor | one run: submit to first line |")
    print("|---|---|---|---|")
    for key, label in rows:
        lat = results.latency.get(key)
        lat_cell = (f"{median(lat) * 1000:.0f} ms" if lat and median(lat) < 1 else
                    f"{median(lat):.2f} s" if lat else "skipped")
        print(f"| {label} | {wall_cell(key, TRIVIAL)} | {wall_cell(key, SLEEP)} | {lat_cell} |")
    print()
    print("Wall: median over the rounds / its ratio to the floor's median (min / min in"
          " brackets). One run: median over the reps, from just before a new process submits it"
          " to the time the program prints its first line.")
    own_seen = any(x.own_cpu is not None for s in results.samples.values() for x in s)
    print()
    head = "| peer | CPU per trivial run, machine | CPU per 1 s run, machine |"
    if own_seen:
        head += " CPU per trivial run, bench's processes | CPU per 1 s run, bench's processes |"
    print(head + " runs checked |")
    print("|---" * (head.count("|") - 1 + 1) + "|")
    for key, label in rows:
        cells = [cpu_cell(key, w, False) for w in WORKLOADS]
        if own_seen:
            cells += [cpu_cell(key, w, True) for w in WORKLOADS]
        checked = results.checked.get(key, 0)
        status = f"{checked}: each ran once, completed" if checked else "-"
        if key in results.skipped:
            status += "; then skipped" if checked else "; skipped"
        print(f"| {label} | " + " | ".join(cells) + f" | {status} |")
    print()
    print("CPU per run, median over the rounds: the whole machine's busy time over each batch"
          " (/proc/stat: every process, the kernel, and anything else the machine ran then)"
          + (", and that of the bench's own processes (a cgroup: this bench and all it started,"
             " idle peers' daemons included)" if own_seen else "")
          + "; (+N): less the floor's for the same workload, what the peer adds around each run.")
    foreign = [x.foreign for s in results.samples.values() for x in s if x.foreign is not None]
    if foreign:
        print()
        print(f"Other load on the machine during the batches (machine less the bench's):"
              f" median {median(foreign):.2f} cores, max {max(foreign):.2f}"
              f" (waited {results.waited:.0f} s in all for it to drop under"
              f" {args.max_foreign:g} before batches).")
    gage = [k for k in ("gage-redis", "gage-embedded") if results.samples.get((k, SLEEP.key))]
    if gage and floor[SLEEP.key]:
        fl_wall = median([x.wall for x in floor[SLEEP.key]])
        parts, lines = [], []
        for k in gage:
            name = "Redis" if k == "gage-redis" else "embedded"
            walls = [x.wall for x in results.samples[(k, SLEEP.key)]]
            parts.append(f"{name} {median(walls) / fl_wall:.3f}x floor"
                         f" ({median(walls):.2f} s vs {fl_wall:.2f} s)")
            cells = []
            for w in (SLEEP, TRIVIAL):
                if not (results.samples.get((k, w.key)) and floor[w.key]):
                    continue
                own_ms, own_fl = cpu_ms(k, w, True), cpu_ms("floor", w, True)
                mach = (cpu_ms(k, w) or 0) - (cpu_ms("floor", w) or 0)
                sub = median([x.submit_cpu / x.runs for x in results.samples[(k, w.key)]]) * 1000
                if own_ms is not None and own_fl is not None:
                    extra = own_ms - own_fl
                    text = f"{extra:+.1f} ms (machine: {mach:+.1f} ms)"
                else:
                    extra, text = mach, f"{mach:+.1f} ms"
                verdict = "OK" if extra <= TARGET_BEYOND_MS else "MISSED"
                cells.append(f"{'1 s' if w is SLEEP else 'trivial'} runs {text} {verdict},"
                             f" of which the gage-submit command {sub:.1f} ms and"
                             f" the rest {extra - sub:.1f} ms")
            lines.append(f"  {name}: " + "; ".join(cells))
        print()
        print(f"1 s workload, {args.sleep_runs} runs on {SLOTS} slots: gage-queue "
              + ", ".join(parts))
        print(f"per-run CPU beyond the run's own, gage-queue (target <= {TARGET_BEYOND_MS:g} ms;"
              " the bench's processes, else the machine):")
        print("\n".join(lines))
    if results.notes:
        print()
        for note in results.notes:
            print(note)
    if results.skipped:
        print()
        for key, reason in results.skipped.items():
            print(f"skipped {key}: {reason}")


def at_least_one(text: str) -> int:
    """A run count: both workloads are measured, so each needs one run or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1 (both workloads run)")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=at_least_one, default=50, help="trivial runs per batch")
    parser.add_argument("--sleep-runs", type=at_least_one, default=20,
                        help="1 s runs per batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-reps", type=int, default=1, help="single runs per round")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="which peers, comma-separated (the floor is always measured)")
    parser.add_argument("--gage", default="HEAD", metavar="REV",
                        help="the gage-queue to measure: a commit of this checkout, installed in"
                        " its own venv (default HEAD), or `worktree` for this venv's commands")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--scratch", default=str(cache / "gage-queue-bench"),
                        help="venvs and caches, kept between invocations")
    parser.add_argument("--dir", help="where this invocation's runs go (default: the system's"
                        " temp dir)")
    parser.add_argument("--python", help="the bare interpreter for the run programs (default:"
                        " this venv's base interpreter), run with -I -S")
    parser.add_argument("--timeout-scale", type=float, default=1.0)
    parser.add_argument("--quiet-wait", type=float, default=10.0, metavar="S",
                        help="before each batch, wait up to S s for other users' load on the"
                        " machine to drop under --max-foreign cores (needs the cgroup)")
    parser.add_argument("--max-foreign", type=float, default=0.3, metavar="CORES")
    parser.add_argument("--keep", action="store_true", help="keep this invocation's work dir")
    args = parser.parse_args()
    wanted = ["floor", *[k for k in args.peers.split(",") if k and k != "floor"]]
    unknown = [k for k in wanted if k not in PEERS]
    if unknown:
        parser.error(f"unknown peer {unknown[0]!r}; known: {', '.join(PEERS)}")

    tag = uuid.uuid4().hex[:12]
    own = OwnCpu(tag)  # first, so that every process started from here on is in it
    scratch = Path(args.scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gage-peers-", dir=args.dir))
    bare = bare_python(args.python)
    env = Env(scratch, work, bare, tag, args.timeout_scale, base_environ(scratch),
              args.max_foreign, args.quiet_wait)
    os.environ[TAG_VAR] = f"{tag}:bench"  # so that anything this process starts is found
    venv_python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    print(f"machine: {machine()}; load average {load_average()} at start")
    print(f"run programs: {shlex.join(bare)} (bare); scratch {scratch}; runs in {work};"
          f" own CPU from cgroup {own.where}")
    print(f"{args.runs} trivial runs and {args.sleep_runs} runs of 1 s per batch, {SLOTS} slots,"
          f" {args.rounds} rounds", flush=True)

    redis = RedisServer(env, work / "redis")
    results = Results()
    peers: list[Peer] = []
    try:
        print("setting up ...", flush=True)
        shared_error: dict[str, str] = {}
        if {"celery", "gage-redis", "gage-redis-n"} & set(wanted):
            try:
                redis.start()
            except Skip as e:
                for key in ("celery", "gage-redis", "gage-redis-n"):
                    shared_error[key] = str(e)
        gage_keys = [k for k in wanted if k.startswith("gage-")]
        bindir, gage_version = Path(), ""
        if gage_keys:
            try:
                install = gage_install(env, args.gage, venv_python)
                bindir, gage_version = install.bindir, install.version
            except Skip as e:
                for key in gage_keys:
                    shared_error.setdefault(key, str(e))
        workers: dict[str, GageWorker] = {}
        for key in wanted:
            if key in shared_error:
                results.skipped[key] = one_line(shared_error[key])
                print(f"  {key}: skipped: {results.skipped[key]}")
                continue
            if key == "floor":
                peer: Peer = Floor(env)
            elif key == "celery":
                peer = CeleryPeer(env, redis, venv_python)
            elif key.startswith("gage-"):
                broker_key = "gage-embedded" if key == "gage-embedded" else "gage-redis"
                if broker_key not in workers:
                    workers[broker_key] = GageWorker(
                        env, broker_key, work / f"{broker_key}-worker",
                        None if broker_key == "gage-embedded" else redis.url(0), bindir)
                label = {"gage-redis": "gage-queue, Redis, one grid command",
                         "gage-embedded": "gage-queue, embedded broker, one grid command",
                         "gage-redis-n": f"gage-queue, Redis, {args.runs} (or {args.sleep_runs})"
                                         " separate gage-submit"}[key]
                peer = GagePeer(env, key, label, workers[broker_key], key == "gage-redis-n")
                peer.version = gage_version
            elif key == "guild":
                peer = GuildPeer(env, venv_python)
            else:
                peer = DvcPeer(env, venv_python)
            peers.append(peer)
        bench = Bench(peers, results, env, own)
        for peer in peers:
            try:
                peer.setup()
            except Skip as e:
                bench.skip(peer, str(e))
            except Exception as e:  # noqa: BLE001 - a peer's failure is reported, not fatal
                bench.skip(peer, f"{type(e).__name__}: {e}")
        for peer in bench.alive():  # warm caches: one unmeasured batch each
            bench.one(peer, TRIVIAL, 2, record=False)
        versions = sorted({p.version for p in bench.alive() if p.version})
        print(f"versions: {', '.join(versions)}", flush=True)
        for r in range(args.rounds):
            alive = bench.alive()
            order = alive[r % len(alive):] + alive[:r % len(alive)] if alive else []
            for w, n in ((TRIVIAL, args.runs), (SLEEP, args.sleep_runs)):
                for peer in order:
                    if peer.key in results.skipped:
                        continue
                    s = bench.one(peer, w, n)
                    if s:
                        own_ms = ("" if s.own_cpu is None else
                                  f", own {s.own_cpu / s.runs * 1000:6.1f} ms")
                        print(f"  round {r + 1} {peer.key:14} {n:3} {w.key:7} {s.wall:7.2f} s,"
                              f" CPU/run machine {s.cpu / s.runs * 1000:6.1f} ms{own_ms}",
                              flush=True)
            for peer in order:
                for _ in range(args.latency_reps):
                    if peer.key in results.skipped:
                        continue
                    s = bench.one(peer, TRIVIAL, 1, record=False)
                    if s:
                        results.latency.setdefault(peer.key, []).append(s.first_line)
                        print(f"  round {r + 1} {peer.key:14} one run: first line after"
                              f" {s.first_line * 1000:.0f} ms", flush=True)
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                peer.stop()
        redis.stop()
        left = kill_tagged(tag)
        if left:
            print(f"(killed {left} leftover processes of this bench)")
        own.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for peer in peers:
        if isinstance(peer, DvcPeer) and peer.hung_workers:
            results.notes.append(
                f"dvc: {peer.hung_workers} queue workers hung after \"shutting down due to empty"
                " queue\" (after their batch, not timed) and were stopped with SIGTERM.")
    labels = {p.key: p.label for p in peers}
    report(results, [(k, labels.get(k, k)) for k in wanted], args)
    print(f"\nload average {load_average()} at the end")
    return 0


PEERS = ("floor", "celery", "gage-redis", "gage-embedded", "gage-redis-n", "guild", "dvc")


if __name__ == "__main__":
    sys.exit(main())
