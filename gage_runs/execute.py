"""Executing a staged run's command (the run phase), with nothing else loaded.

Kept apart from `lifecycle` so that the worker's run keeper, which starts
once per run, imports only what running a command needs (no config
patching, no file selection).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .meta import meta_opcmd, write_timestamp
from .phase import PhaseWatcher, run_phase_exec
from .types import Run


def exec_run(
    run: Run,
    *,
    base_env: Mapping[str, str] | None = None,
    watcher: PhaseWatcher | None = None,
    popen_options: Mapping[str, Any] | None = None,
    argv_prefix: Sequence[str] = (),
) -> None:
    """Run the run's command; raise RunExecError on a non-zero exit.

    `base_env` (default: this process's environment) is what the run
    inherits; RUN_ID, RUN_DIR, PARENT_PWD and proc/env.json go over it.
    `popen_options` go to `subprocess.Popen` (a supervisor's `pass_fds`,
    say), and `argv_prefix` before the command (see `run_phase_exec`).
    """
    cmd = meta_opcmd(run)
    env = {
        **(os.environ if base_env is None else base_env),
        "RUN_ID": run.id,
        "RUN_DIR": run.run_dir,
        "PARENT_PWD": os.getcwd(),
        **cmd.env,
    }
    write_timestamp(run, "started")
    run_phase_exec(run, "run", cmd.args, env, "40_run", watcher, popen_options, argv_prefix)
