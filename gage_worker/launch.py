"""Starting a run's keeper from the exec task, and waiting for its answer.

The keeper is a fresh interpreter (`python -m gage_worker.keeper`), not a
fork of the Celery pool process, started in its own session with the
run's environment: the worker's with its secrets removed
(`runenv.run_env`), so neither the keeper nor the run ever holds the
broker URL. It detaches at once; the task then blocks on a pipe until the
keeper writes its outcome. If the worker dies meanwhile, the keeper and
its run go on.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .keeper.job import KeeperJob, Outcome, Verdict
from .runenv import run_env
from .settings import Settings


def run_keeper(run_id: str, settings: Settings, *, node: str | None,
               slots: int | None) -> Outcome:
    """Keep `run_id` (a checked run id) under the settings' runs dir; its outcome."""
    read_fd, write_fd = os.pipe()
    job = KeeperJob(
        runs_dir=settings.require_runs_dir(), run_id=run_id, node=node, slots=slots,
        gpus=settings.gpus, grace=settings.cancel_grace,
        shared_mode=os.environ.get("GAGE_SHARED_MODE"), result_fd=write_fd,
    )
    try:
        starter = subprocess.Popen(
            [sys.executable, "-m", "gage_worker.keeper", job.encode()],
            env=run_env(settings.broker_url), stdin=subprocess.DEVNULL,
            pass_fds=(write_fd,), start_new_session=True, cwd="/",
        )
    except OSError as e:
        os.close(read_fd)
        return Outcome(Verdict.CANNOT_START, f"cannot start a keeper: {e}")
    finally:
        os.close(write_fd)
    try:
        starter.wait()
        return Outcome.decode(_read_all(read_fd)) or Outcome(
            Verdict.NOTHING, "its keeper ended without an answer (killed?)"
        )
    finally:
        os.close(read_fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
