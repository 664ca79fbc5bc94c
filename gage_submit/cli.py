"""`gage-submit`: send Gage ops to the worker pool, then watch and manage their runs.

    gage-submit OP [NAME=VALUE ...] [options]   stage and queue runs (like `gage run OP ...`)
    gage-submit submit OP [NAME=VALUE ...]      the same, for an op named like a command
    gage-submit list [filters] [--json]         runs with their status
    gage-submit show RUN [--json]               one run in full (also `status`)
    gage-submit logs RUN [-f]                   a run's output, optionally followed
    gage-submit wait RUN... [--timeout T]       wait for runs to end
    gage-submit cancel RUN... | --label L ...   stop runs, queued or running
    gage-submit rerun RUN [NAME=VALUE ...]      run a run again from its source code
    gage-submit queue RUN...                    queue runs staged by `gage run --stage`
    gage-submit priority RUN... P               change the priority of runs not yet started
    gage-submit pool [--json]                   workers, their runs and GPUs, who waits and why
    gage-submit compare [RUN...] [--sort -M]    flags and metrics of runs side by side

A RUN is a run id, id prefix, name or name prefix, or an index (`1` is the
latest run) or a slice (`1:5`) of the newest-first listing, as in Gage.
Only submit, rerun and queue talk to the broker; the others read the runs
dir, and cancel and priority write there for the workers to act on.

Each command is a module of `gage_submit.commands`, loaded only when it
runs; a plain submit (`gage-submit OP [NAME=VALUE]... [options]`) is read
without click (`submit_args`), anything else by the click group (`group`).
Exit codes are `gage_queue.exits`': 0 success; 1 a run did not complete
(error, terminated, lost), could not be staged, or something unexpected
failed; 2 bad input; 3 the broker is unreachable (the runs stay
queued and reconcile sends them); 4 `wait --timeout` expired; 130
interrupted. Errors are one line on stderr, `gage-submit: error: ...`.
Only `cancel` with a filter asks, and only on a terminal (`--yes` skips
the question).
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from gage_submit import PROG

from .commands import COMMANDS

__all__ = ["COMMANDS", "main", "run"]


def main(argv: list[str] | None = None) -> None:
    """The `gage-submit` console script."""
    code = run(argv)
    gc.freeze()  # the interpreter's last collection, at exit, skips all there is by now
    sys.exit(code)


def run(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code (`gage_queue.exits`). Errors are printed as one line."""
    from gage_queue.exits import run_command

    return run_command(PROG, lambda: _invoke(argv))


def _invoke(argv: list[str] | None) -> Any:
    """A plain submit without click (`submit_args`), anything else through the click group."""
    from .submit_args import parse

    params = parse(sys.argv[1:] if argv is None else list(argv))
    if params is None:
        from .group import invoke

        return invoke(argv)
    pause_gc = not (params["wait"] or params["follow"]) and gc.isenabled()
    if pause_gc:  # it ends once its runs are queued: what it makes lives until then
        gc.disable()
    try:
        from gage_runs.fsmode import check_shared_mode

        from .submit_command import submit_command

        check_shared_mode()
        params.pop("yes")
        return submit_command(params.pop("args"), **params)
    finally:
        if pause_gc:
            gc.enable()


def __getattr__(name: str) -> Any:
    if name == "cli":  # the click group, loaded when asked for
        from .group import cli

        return cli
    if name == "STATUSES":  # every state's name, as `list --status` offers them
        from .commands.common import STATUSES

        return STATUSES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
