"""Starting a run's keeper from the exec task, and waiting for its answer.

Keepers are never forked from Celery. Each worker pool process starts one
`KeeperLauncher`: a fresh interpreter (`python -m gage_worker.keeper
--serve`) in its own session, with the run's environment (the worker's
with its settings and secrets removed, `runenv.run_env`), that forks a
detached keeper per job in about a millisecond. Should the launcher be
unusable, the task starts a one-shot keeper interpreter instead. The task
then blocks on a pipe until the keeper writes its outcome; if the worker
dies meanwhile, the keeper and its run go on.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

from gage_queue.settings import Settings
from gage_worker.keeper.job import KeeperJob, Outcome, Verdict
from gage_worker.runenv import run_env

log = logging.getLogger(__name__)


class KeeperLauncher:
    """One pool process's keeper server, started on first use."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def send(self, job: KeeperJob, result_fd: int, env: Callable[[], dict[str, str]]) -> bool:
        """Hand `job` and its result pipe to the server; False if that failed.

        `env()` is the environment of a server started for it (the first
        job, or after a server died).
        """
        with self._lock:
            for _ in range(2):
                try:
                    socket.send_fds(self._server(env), [job.encode().encode()], [result_fd])
                    return True
                except OSError as e:
                    log.warning("keeper launcher unusable (%s); starting a new one", e)
                    self.close()
            return False

    def _server(self, env: Callable[[], dict[str, str]]) -> socket.socket:
        """The server's socket; a dead server shows as a failed send (EPIPE), then a new one."""
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            starter = subprocess.Popen(
                [sys.executable, "-m", "gage_worker.keeper", "--serve", str(theirs.fileno())],
                env=env(), stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        finally:
            theirs.close()
        starter.wait()  # it detaches at once: the server is init's child, not ours
        self._sock = ours
        return ours

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the server exits when its socket closes
            self._sock = None


_launcher = KeeperLauncher()
os.register_at_fork(after_in_child=lambda: globals().update(_launcher=KeeperLauncher()))


def run_keeper(run_id: str, settings: Settings, *, node: str | None,
               slots: int | None) -> Outcome:
    """Keep `run_id` (a checked run id) under the settings' runs dir; its outcome.

    A keeper that ends without an answer (killed, or a launcher that died
    with the job unread) is followed by one fresh one-shot keeper: it
    decides from the run record alone, under the run lock, so it never
    starts a run twice. It starts a queued run now instead of leaving it
    to reconcile, and finds a run whose keeper was killed lost.
    """
    job = KeeperJob(
        runs_dir=settings.require_runs_dir(), run_id=run_id, node=node, slots=slots,
        gpus=settings.gpus, grace=settings.cancel_grace,
        shared_mode=os.environ.get("GAGE_SHARED_MODE"),
    )
    env = functools.partial(run_env, settings.broker_url)

    def launched(result_fd: int) -> None:
        if not _launcher.send(job, result_fd, env):
            one_shot(result_fd)

    def one_shot(result_fd: int) -> None:
        _start_one_shot(KeeperJob(**{**job.__dict__, "result_fd": result_fd}), env())

    outcome = _ask(launched)
    if outcome is None:
        log.warning("run %s: its keeper ended without an answer; asking a fresh keeper", run_id)
        outcome = _ask(one_shot)
    return outcome or Outcome(Verdict.NOTHING, "its keeper ended without an answer (killed?)")


def _ask(start: Callable[[int], None]) -> Outcome | None:
    """Start a keeper with `start(result_fd)` and read its answer; None if it gave none."""
    read_fd, write_fd = os.pipe()
    try:
        start(write_fd)
    except OSError as e:
        os.close(read_fd)
        return Outcome(Verdict.CANNOT_START, f"cannot start a keeper: {e}")
    finally:
        os.close(write_fd)
    try:
        return Outcome.decode(_read_all(read_fd))
    finally:
        os.close(read_fd)


def _start_one_shot(job: KeeperJob, env: dict[str, str]) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-m", "gage_worker.keeper", job.encode()],
        env=env, stdin=subprocess.DEVNULL, pass_fds=(job.result_fd,), start_new_session=True,
    )
    starter.wait()


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
