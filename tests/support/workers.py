"""Real `gage-worker` processes and real runs for the worker tests.

`worker_bed` (embedded broker) and `redis_bed` (a throwaway redis-server)
give a `Bed`: a runs dir, a project whose run appends one line to a
counts file outside the run dir each time it executes, helpers to stage
and submit runs, and `start_worker()`. Workers run in their own session
and are stopped by pid; run processes left behind under this runs dir
are killed at teardown.

A worker is ready when it answers a ping on its control channel, by its
node name, through the broker it serves (`Worker.wait_ready`): its
consumer is up. `reconcile_passes` waits for reconcile passes of the
workers of a runs dir, read from the reconcile lease's stamp: the event
that proves something a pass would do (re-send, finalize, find a run lost)
had its chance, where a test checks that it did not happen.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from gage_queue.broker.send import submit_run
from gage_queue.layout import reconcile_lease
from gage_queue.settings import Settings
from gage_queue.snapshots import run_state
from gage_runs import OpCmd, OpDef, OpRef, Run, init_run_meta, make_run, stage_run

# Short intervals so every fault is recovered within seconds.
TEST_ENV = {
    "GAGE_VISIBILITY_TIMEOUT": "4",
    "GAGE_RECONCILE_INTERVAL": "1",
    "GAGE_RECONCILE_THRESHOLD": "2",
    "GAGE_CANCEL_GRACE": "1",
}

COUNT_PY = """\
import json, os, signal, sys, time
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
record = {
    "pid": os.getpid(),
    "time": time.time(),
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "worker_env": sorted(k for k in os.environ if k.startswith(("GAGE_", "CELERY_"))),
}
with open(os.path.join(os.environ["COUNT_DIR"], os.environ["RUN_ID"]), "a") as f:
    f.write(json.dumps(record) + "\\n")
print("started", flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
print("done", flush=True)
"""

FINAL = ("completed", "error", "terminated")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05):
    """Poll until `predicate()` is truthy; its value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def node_name(argv: list[str], host: str | None = None) -> str | None:
    """The node name of a worker started with `argv` (its last --hostname), `%h` filled in.

    `host` is the hostname the worker sees (default: this one's).
    """
    from celery.utils.nodenames import host_format

    name = None
    for i, arg in enumerate(argv):
        if arg == "--hostname" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--hostname="):
            name = arg.partition("=")[2]
    return host_format(name, host=host) if name else None


def last_reconcile_pass(runs_dir: str | Path) -> float:
    """When the last reconcile pass over `runs_dir` ended (epoch s); 0 if none or unreadable.

    Read from the reconcile lease's stamp without taking the lease, so no
    worker skips a pass for it.
    """
    from gage_worker.lease import ReconcileLease

    try:
        fd = os.open(reconcile_lease(str(runs_dir)), os.O_RDONLY)
    except FileNotFoundError:
        return 0.0
    with ReconcileLease(fd) as lease:
        return lease.stamp().last_pass


def reconcile_passes(runs_dir: str | Path, after: float, count: int = 2,
                     timeout: float = 15) -> None:
    """Wait for `count` reconcile passes that end after `after` (epoch s), one after another.

    The second of two such passes started after `after`: whatever it would
    do about the state at `after`, it has done.
    """
    for n in range(count):
        last = wait_for(lambda since=after: (t := last_reconcile_pass(runs_dir)) > since and t,
                        timeout, f"reconcile pass {n + 1} of {count}")
        after = last


def worker_command() -> list[str]:
    script = shutil.which("gage-worker")
    if script:
        return [script]
    return [sys.executable, "-c", "from gage_worker.cli import main; main()"]


class Worker:
    """A `gage-worker` process started by a test.

    `node` is its Celery node name (None: the default name it claims at
    start, read from the node lock it holds) and `settings` those it was
    started with (its broker): `wait_ready()` pings it there.
    """

    def __init__(self, proc: subprocess.Popen, log_path: Path, node: str | None = None,
                 settings: Settings | None = None):
        self.proc = proc
        self.log_path = log_path
        self.node = node
        self.settings = settings
        self._children: list[psutil.Process] = []
        self._terminated = False
        self._control: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool(self) -> list[psutil.Process]:
        """The pool child processes (psutil checks identity before a kill)."""
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def held_node_name(self) -> str | None:
        """The default node name the worker claimed: the node lock it holds open, if any."""
        try:
            paths = [f.path for f in psutil.Process(self.pid).open_files()]
        except psutil.Error:
            return None
        held = [Path(p) for p in paths if Path(p).parent.name == "nodes" and p.endswith(".lock")]
        return held[0].stem if held else None

    def answers_ping(self, timeout: float = 0.2) -> bool:
        """Whether the worker's consumer answers a ping (`celery inspect ping`) within `timeout`."""
        assert self.settings, "a Worker needs the settings it was started with to ping it"
        self.node = self.node or self.held_node_name()
        if self.node is None:
            return False  # it has not claimed its name yet
        if self._control is None:
            from gage_worker.celery_app import make_app

            self._control = make_app(self.settings)
        try:
            with self._control.connection_for_write() as conn:
                replies = self._control.control.ping([self.node], timeout=timeout,
                                                     connection=conn)
        except Exception:  # the broker is not (yet) reachable: not ready
            return False
        return any(self.node in reply for reply in replies)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until the worker answers a ping: its consumer takes messages."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            return self.answers_ping()

        wait_for(ready, timeout, f"the worker {self.node} to answer a ping", interval=0.02)

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once."""
        children = [*self.pool(), *self._children]  # (those of a warm shutdown under way too)
        self.proc.kill()
        _kill_all(children)
        self.proc.wait(10)

    def terminate(self) -> None:
        """Start a warm shutdown: one SIGTERM to the main process only."""
        if self.proc.poll() is None and not self._terminated:
            self._children = self.pool()
            self._terminated = True
            self.proc.terminate()

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown by SIGTERM to the main process; SIGKILL if stuck."""
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        _kill_all(self._children)


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue


class Watching:
    """Waiting for runs' states, and the logs of `self.workers` when it times out."""

    workers: list[Worker]

    def wait_status(self, runs: list[Run], statuses: tuple[str, ...] = FINAL,
                    timeout: float = 30) -> dict[str, str]:
        """Wait until every run has one of `statuses`; id -> status."""

        def all_done() -> dict[str, str] | None:
            found = {run.id: run_state(run) for run in runs}
            return found if all(s in statuses for s in found.values()) else None

        try:
            return wait_for(all_done, timeout, f"runs to be {'/'.join(statuses)}", 0.1)
        except AssertionError:
            states = {run.id[:8]: run_state(run) for run in runs}
            raise AssertionError(f"timed out; states: {states}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-4000:]}" for w in self.workers)


@dataclass
class Bed(Watching):
    """A runs dir, a project, a broker, and the workers of one test."""

    root: Path
    broker_url: str | None = None
    redis: Any = None
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runs_dir = self.root / "runs"
        self.counts_dir = self.root / "counts"
        self.project_dir = self.root / "project"
        for path in (self.runs_dir, self.counts_dir, self.project_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.project_dir / "count.py").write_text(COUNT_PY)
        self.opdef = OpDef("count", {"exec": "python count.py"})

    def settings(self, **overrides: Any) -> Settings:
        env = {**TEST_ENV, "GAGE_RUNS": str(self.runs_dir)}
        if self.broker_url:
            env["GAGE_BROKER_URL"] = self.broker_url
        return Settings.from_env(env).with_overrides(**overrides)

    def stage(
        self, *, sleep: float = 0.0, ignore_term: bool = False, runs_dir: Path | None = None
    ) -> Run:
        """Stage a counting run that sleeps `sleep` s after counting."""
        run = make_run(OpRef("project", "count"), str(runs_dir or self.runs_dir))
        env = {"COUNT_DIR": str(self.counts_dir), "SLEEP": str(sleep)}
        if ignore_term:
            env["IGNORE_TERM"] = "1"
        init_run_meta(run, self.opdef, {}, OpCmd(["python", "count.py"], env))
        stage_run(run, str(self.project_dir))
        return run

    def stage_script(
        self, script: str, *, cmd: str | list[str] = "python script.py",
        finalize: str | None = None, env: dict[str, str] | None = None,
    ) -> Run:
        """Stage a run of `script` (as script.py) run by `cmd`, a shell string by default."""
        project = self.root / f"project-{len(list(self.root.glob('project-*')))}"
        project.mkdir()
        (project / "script.py").write_text(script)
        exec_ = {"run": cmd, **({"finalize": finalize} if finalize else {})}
        opdef = OpDef("script", {"exec": exec_})
        run = make_run(OpRef("project", "script"), str(self.runs_dir))
        run_env = {"COUNT_DIR": str(self.counts_dir), **(env or {})}
        init_run_meta(run, opdef, {}, OpCmd(cmd, run_env))
        stage_run(run, str(project))
        return run

    def submit(self, run: Run, **kwargs: Any) -> Run:
        submit_run(run, settings=self.settings(), **kwargs)
        return run

    def stage_and_submit(self, count: int, **kwargs: Any) -> list[Run]:
        sleep = kwargs.pop("sleep", 0.0)
        return [self.submit(self.stage(sleep=sleep), **kwargs) for _ in range(count)]

    def executions(self, run: Run) -> list[dict[str, Any]]:
        """One record per time the run's command started."""
        path = self.counts_dir / run.id
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
        env.update(TEST_ENV)
        env["GAGE_RUNS"] = str(self.runs_dir)
        if self.broker_url:
            env["GAGE_BROKER_URL"] = self.broker_url
        env.update(extra)
        return env

    def start_worker(
        self, *args: str, env: dict[str, str] | None = None, wait: bool = True,
        command: list[str] | None = None,
    ) -> Worker:
        """Start `gage-worker ARGS` (or `command ARGS`) as node `w<n>@<host>`."""
        n = len(self.workers)
        log_path = self.root / f"worker-{n}.log"
        argv = [*(command or worker_command()), "--hostname", f"w{n}@%h", *args]
        env = env or self.worker_env()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        worker = Worker(proc, log_path, node_name(argv), Settings.from_env(env))
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        """Kill every worker (main process and pool, by pid) and what their runs left behind.

        At teardown, not a warm shutdown: nothing is checked after it, and an
        idle worker's warm shutdown takes about 2 s on Redis and 7 s on the
        embedded broker, per test. A test that checks a warm shutdown calls
        `Worker.stop()` itself.
        """
        for worker in self.workers:
            worker.kill()
        kill_runs_under(self.root)


def kill_runs_under(root: Path) -> None:
    """Kill run processes left behind whose RUN_DIR is under `root`."""
    prefix = str(root)
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RUN_DIR", "").startswith(prefix):
                proc.kill()
        except psutil.Error:
            continue


@pytest.fixture
def worker_bed(tmp_path: Path) -> Iterator[Bed]:
    """A bed on the embedded (filesystem) broker."""
    bed = Bed(tmp_path)
    try:
        yield bed
    finally:
        bed.close()


@pytest.fixture
def redis_bed(tmp_path: Path, redis_server) -> Iterator[Bed]:
    """A bed on a throwaway redis-server (`bed.redis` controls it)."""
    bed = Bed(tmp_path, broker_url=redis_server.url, redis=redis_server)
    try:
        yield bed
    finally:
        bed.close()
