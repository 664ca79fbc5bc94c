"""`gage-submit show RUN` (also `status`): one run in full."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..completion import complete_runs
from .common import json_option, project_options, select_run

if TYPE_CHECKING:
    from gage_queue.states import RunState
    from gage_runs.types import Run


TAIL_LINES = 10
"""How many of an ended run's last output lines `show` prints."""


@click.command("show", short_help="Show one run in full: status, host, times, config.")
@click.argument("spec", metavar="[RUN]", default="1", shell_complete=complete_runs)
@project_options
@json_option
def command(spec: str, project_dir: str | None, runs_dir: str | None, as_json: bool) -> int:
    """Show one run in full: status, host, queue, times, exit code, config (default: the latest).

    A queued run says whether a worker consumes its queue; an ended run
    ends with the last lines of its output.
    """
    from gage_queue.states import FINISHED

    from ..info import output_tail, run_info
    from ..project import current_namespace
    from ..render import print_json, print_output_tail, print_run_detail

    run = select_run(spec, project_dir, runs_dir)
    info = run_info(run, namespace=current_namespace(project_dir), detail=True)
    if as_json:
        print_json(info.as_json(), sys.stdout)
        return 0
    print_run_detail(info, sys.stdout, notes=_waiting(run, info.status))
    if info.status in FINISHED:
        tail = output_tail(run, TAIL_LINES)
        if tail:
            print_output_tail(f"output (last {len(tail)} lines)", tail, sys.stdout)
    return 0


def _waiting(run: Run, state: RunState) -> list[tuple[str, str]]:
    """For a queued run, whether a worker consumes its queue (`gage_queue.consumers`)."""
    from gage_queue.consumers import queue_has_consumer
    from gage_queue.states import RunState
    from gage_queue.text import shown

    from ..watch import run_queue

    if state is not RunState.QUEUED:
        return []
    queue = run_queue(run)
    if queue_has_consumer(run.runs_dir, queue):
        return [("waiting", f"for a free slot of a worker of queue '{shown(queue)}'")]
    return [("waiting", f"no worker consumes queue '{shown(queue)}'"
             f" (start one: gage-worker -Q {shown(queue)})")]
