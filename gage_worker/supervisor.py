"""The run supervisor: a `gage_runs` phase watcher for the run process.

`exec_run` starts the run command in its own session (pgid == pid) and
calls the watcher about every 0.5 s while it runs. The supervisor then
checks for a cancel request and the run's time limit, and refreshes the
heartbeat each second. Cancel and time limit send SIGTERM to the process
group, then SIGKILL after the grace period; the run ends `terminated`
(negative exit). Whatever the run leaves in its group when its command
exits is killed too, so a GPU slot is free for the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from gage_runs.meta import runner_log
from gage_runs.types import Run

from .queue_meta import cancel_requested, write_heartbeat

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
WORKER_ENV_PREFIXES = ("GAGE_", "CELERY_")
WORKER_ENV_NAMES = frozenset({"BROKER_URL", "FORKED_BY_MULTIPROCESSING"})


class Supervisor:
    """Watches one run process: cancel, time limit, heartbeat."""

    def __init__(
        self,
        run: Run,
        *,
        time_limit: float | None,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.run = run
        self.time_limit = time_limit
        self.grace = grace
        self._clock = clock
        self._start = 0.0
        self._last_heartbeat = 0.0
        self._term_sent: float | None = None
        self._kill_sent = False
        self.stop_reason: str | None = None

    def started(self, proc: subprocess.Popen) -> None:
        self._start = self._clock()
        self._heartbeat(proc)
        self.tick(proc)

    def tick(self, proc: subprocess.Popen) -> None:
        now = self._clock()
        if self._term_sent is None:
            reason = self._stop_reason(now)
            if reason:
                self.stop_reason = reason
                self._signal(proc, signal.SIGTERM, reason)
                self._term_sent = now
        elif not self._kill_sent and now - self._term_sent >= self.grace:
            self._signal(proc, signal.SIGKILL, f"still running {self.grace:g} s after SIGTERM")
            self._kill_sent = True
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._heartbeat(proc)

    def finished(self, proc: subprocess.Popen, exit_code: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _stop_reason(self, now: float) -> str | None:
        if cancel_requested(self.run):
            return "cancel requested"
        if self.time_limit is not None and now - self._start > self.time_limit:
            return f"time limit of {self.time_limit:g} s reached"
        return None

    def _signal(self, proc: subprocess.Popen, sig: signal.Signals, reason: str) -> None:
        message = f"{reason}: sending {sig.name} to process group {proc.pid}"
        log.info("run %s: %s", self.run.id, message)
        runner_log(self.run, message)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _heartbeat(self, proc: subprocess.Popen) -> None:
        self._last_heartbeat = self._clock()
        try:
            write_heartbeat(self.run, pid=proc.pid, pgid=proc.pid)
        except OSError as e:
            log.warning("run %s: cannot write heartbeat: %s", self.run.id, e)


def run_env(
    broker_url: str | None,
    gpu: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a run inherits: the worker's, without its secrets.

    Drops the worker's own settings (`GAGE_*`, `CELERY_*`, `BROKER_URL`)
    and any variable that holds the broker's password; sets
    `CUDA_VISIBLE_DEVICES` to the worker slot's GPU if it has one.
    """
    environ = os.environ if environ is None else environ
    password = _password(broker_url)
    env = {
        name: value
        for name, value in environ.items()
        if not name.startswith(WORKER_ENV_PREFIXES)
        and name not in WORKER_ENV_NAMES
        and not (password and password in value)
    }
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None
