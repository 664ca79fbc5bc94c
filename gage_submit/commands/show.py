"""`gage-submit show RUN` (also `status`): one run in full."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from ..completion import complete_runs
from .common import select_run
from .options import json_option, project_options

if TYPE_CHECKING:
    from gage_queue.states import RunState
    from gage_runs.types import Run

    from ..info import RunInfo


TAIL_LINES = 10
"""How many of an ended run's last output lines `show` prints."""


@click.command("show", short_help="Show one run in full: status, host, times, config.")
@click.argument("spec", metavar="[RUN]", default="1", shell_complete=complete_runs)
@project_options
@json_option
def command(spec: str, project_dir: str | None, runs_dir: str | None, as_json: bool) -> int:
    """Show one run in full: status, host, queue, times, exit code, config (default: the latest).

    A queued run says why it waits, as `gage-submit pool` does; an ended
    run ends with the last lines of its output.
    """
    from gage_queue.states import FINISHED

    from ..info import output_tail, run_info
    from ..project import current_namespace
    from ..render import print_json, print_output_tail, print_run_detail

    run = select_run(spec, project_dir, runs_dir)
    info = run_info(run, namespace=current_namespace(project_dir), detail=True)
    info.waiting_reason = _waiting_reason(run, info.status)
    if as_json:
        print_json(info.as_json(), sys.stdout)
        return 0
    print_run_detail(info, sys.stdout, notes=_notes(info) + _depends_notes(run))
    if info.status in FINISHED:
        tail = output_tail(run, TAIL_LINES)
        if tail:
            print_output_tail(f"output (last {len(tail)} lines)", tail, sys.stdout)
    return 0


def _notes(info: RunInfo) -> list[tuple[str, str]]:
    """A queue run's priority and GPUs; for a queued run, why it waits. Escaped."""
    from gage_queue.text import shown
    from gage_runs.names import run_name_for_id

    from ..pool_view import gpu_request_words

    notes = []
    if info.priority is not None:
        notes.append(("priority", str(info.priority)))
        notes.append(("gpus", gpu_request_words(info.gpus)))
    if info.waiting_reason is not None:
        notes.append(("waiting", shown(info.waiting_reason)))
    if info.attempt is not None:
        retries = f" (retries {run_name_for_id(info.retry_of)})" if info.retry_of else ""
        notes.append(("attempt", info.attempt + retries))
    return notes


def _depends_notes(run: Run) -> list[tuple[str, str]]:
    """The runs the op's `depends` selected at submit: "run-files prepare: NAME". Escaped."""
    from gage_queue.depends import read_depends
    from gage_queue.text import shown
    from gage_runs.depends import RUN_FILES
    from gage_runs.names import run_name_for_id

    try:
        resolved = read_depends(run)
    except ValueError as e:
        return [("depends", shown(str(e)))]
    return [("depends", shown(
        f"{dep.type} {dep.select}: "
        + (run_name_for_id(dep.runs[0]) if dep.type == RUN_FILES else f"{len(dep.runs)} runs")))
        for dep in resolved]


def _waiting_reason(run: Run, state: RunState) -> str | None:
    """Why a queued run waits, as `gage-submit pool` says it (`pool_view`): one plan of
    the waiting index now. Where no live node consumes its queue, whether any worker
    does (`gage_queue.consumers`)."""
    from gage_queue.consumers import queue_has_consumer
    from gage_queue.layout import cancel_marker
    from gage_queue.states import RunState

    from ..pool_view import Waits
    from ..watch import run_queue

    if state is not RunState.QUEUED:
        return None
    if os.path.exists(cancel_marker(run.runs_dir, run.id)):
        return "cancel requested: a worker ends it before it starts"
    queue = run_queue(run)
    waits = Waits(run.runs_dir)
    if waits.serves(queue):
        reason = waits.reason_for(run.id)
        if reason is not None:
            return reason
    if queue_has_consumer(run.runs_dir, queue):
        return f"for a free slot of a worker of queue '{queue}'"
    return f"no worker consumes queue '{queue}' (start one: gage-worker -Q {queue})"
