"""`python -m gage_worker.keeper JOB_JSON` keeps one run; `--serve FD` starts keepers on request.

A keeper must be nobody's child in the worker: this process forks the
real keeper and exits, so the keeper is adopted by init (or the nearest
subreaper) and no worker process is its ancestor, nor the run's; a
worker's death touches neither. The keeper writes one
`Outcome` line to the job's result pipe when it is done with the run.

`--serve FD` is the fast path (`launch.KeeperLauncher`): a fresh
interpreter, started once per worker pool process with the run
environment, that has the keeper loaded and keeps one forked *spare*
waiting on the SOCK_SEQPACKET socket FD. A spare prepares all a keeper
can know before its job (`KeeperProcess`); the spare that receives a job
(the job as JSON, the result pipe as an SCM_RIGHTS descriptor) becomes
its keeper. The launcher forks the next spare once that keeper has
started the run's command (or ended): the fork happens between jobs, and
not on the CPU a starting run needs. A pool process sends its next job
only after this one's keeper answered, so no job waits for a spare. The
launcher exits when the socket closes.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from gage_worker.keeper.job import KeeperJob, Outcome, Verdict

if TYPE_CHECKING:
    from gage_worker.keeper.keeper import KeeperProcess

MAX_JOB_BYTES = 65536


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--serve"]:
        return serve(socket.socket(fileno=int(argv[2])))
    job = KeeperJob.decode(argv[1])
    if os.fork() == 0:
        _be_keeper(job, _prepared())
    return 0


def serve(sock: socket.socket) -> int:
    """Keep a spare keeper waiting for the next job; return when the socket closes.

    The server first detaches itself (fork, the parent exits), so init
    adopts it and no worker process is its ancestor, nor its keepers': one
    fork per keeper is enough. Its keepers are reaped by the kernel
    (SIGCHLD ignored here; each keeper restores it for its own children).
    """
    from gage_worker.keeper import keeper  # noqa: F401  (loaded once here, not in every keeper)

    gc.freeze()  # a keeper's collections skip what is loaded: its pages stay shared, not copied
    if os.fork():
        return 0
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while True:
        took, told = os.pipe()
        if os.fork() == 0:
            os.close(took)
            _spare(sock, told)
        os.close(told)
        try:
            if os.read(took, 1) != b"j":  # b"j" once the spare took a job; b"" if it ended
                return 0
            os.read(took, 1)  # b"" once its keeper started the run's command, or ended
        finally:
            os.close(took)


def _spare(sock: socket.socket, told: int) -> None:
    """Wait for a job on `sock`, tell the launcher on `told`, and keep it (never returns).

    Exits when the socket closes (its worker pool process is gone), which
    the launcher sees as the end of `told`. A job it took is kept even if
    the launcher is gone by then.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    me = _prepared()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_JOB_BYTES, 1)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        try:
            job = KeeperJob.decode(data.decode())
        except ValueError:
            for fd in fds:
                os.close(fd)
            continue
        with contextlib.suppress(OSError):
            os.write(told, b"j")
        sock.close()
        _be_keeper(KeeperJob(**{**job.__dict__, "result_fd": fds[0] if fds else None}), me,
                   on_started=lambda: os.close(told))


def _prepared() -> KeeperProcess:
    """A keeper's process, made ready for any job: signals, its own facts, no dumps."""
    from gage_worker.keeper import procs
    from gage_worker.keeper.keeper import KeeperProcess

    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the launcher may be gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    procs.become_subreaper()
    procs.not_dumpable()
    return KeeperProcess.here()


def _be_keeper(job: KeeperJob, me: KeeperProcess,
               on_started: Callable[[], None] | None = None) -> None:
    """Keep the run, answer on the result pipe, and exit (never returns)."""
    if job.shared_mode:
        os.environ["GAGE_SHARED_MODE"] = job.shared_mode
    outcome = _keep(job, me, on_started)
    if job.result_fd is not None:
        with contextlib.suppress(OSError):
            os.write(job.result_fd, outcome.encode())
    os._exit(0)


def _keep(job: KeeperJob, me: KeeperProcess, on_started: Callable[[], None] | None) -> Outcome:
    from gage_worker.keeper.keeper import Keeper

    try:
        return Keeper(job, me, on_started).keep()
    except Exception as e:  # one line for the worker log, never a traceback
        return Outcome(Verdict.CANNOT_START, f"keeper failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
