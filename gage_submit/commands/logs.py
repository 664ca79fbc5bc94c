"""`gage-submit logs RUN [-f]`: a run's output, optionally followed until it ends."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..completion import complete_runs
from .common import no_worker_notice, project_options, select_run, state_exit_code, write_stdout

if TYPE_CHECKING:
    from gage_queue.states import RunState
    from gage_runs.types import Run


@click.command("logs", short_help="Print a run's output; -f follows it.")
@click.argument("spec", metavar="[RUN]", default="1", shell_complete=complete_runs)
@project_options
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the run ends.")
def command(spec: str, project_dir: str | None, runs_dir: str | None, follow: bool) -> int:
    """Print a run's output (default: the latest run's), read from the runs dir."""
    from ..info import run_output_path
    from ..watch import copy_output

    run = select_run(spec, project_dir, runs_dir)
    if follow:
        return state_exit_code(follow_run(run))
    copy_output(run_output_path(run), 0, write_stdout)
    return 0


def follow_run(run: Run) -> RunState:
    """Print the run's output until it ends, then how it ended (stderr); its state."""
    from ..progress import run_ref
    from ..render import end_line
    from ..watch import follow_output

    sys.stdout.flush()
    state = follow_output(run, write_stdout, notice=no_worker_notice())
    print(f"{run_ref(run)}: {end_line(run)}", file=sys.stderr)
    return state
