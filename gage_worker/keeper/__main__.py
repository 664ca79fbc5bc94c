"""`python -m gage_worker.keeper JOB_JSON`: detach, keep one run, answer on a pipe.

The launcher (`gage_worker.launch`) waits for this process, which forks
the real keeper and exits at once: the keeper is then nobody's child, so
no worker process is its ancestor (nor the run's), and a worker's death
touches neither. The keeper writes one `Outcome` line to the job's
result pipe when it is done with the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from .job import KeeperJob, Outcome, Verdict


def main(argv: list[str]) -> int:
    job = KeeperJob.decode(argv[1])
    if os.fork():
        return 0
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # the launcher may be gone
    base_env = dict(os.environ)
    if job.shared_mode:
        os.environ["GAGE_SHARED_MODE"] = job.shared_mode
    outcome = _keep(job, base_env)
    if job.result_fd is not None:
        with contextlib.suppress(OSError):
            os.write(job.result_fd, outcome.encode())
    return 0


def _keep(job: KeeperJob, base_env: dict[str, str]) -> Outcome:
    from . import procs
    from .keeper import Keeper

    try:
        procs.become_subreaper()
        procs.not_dumpable()
        return Keeper(job, base_env).keep()
    except Exception as e:  # one line for the worker log, never a traceback
        return Outcome(Verdict.CANNOT_START, f"keeper failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
