"""`gage-submit priority RUN... P`: change the priority of runs waiting to start."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..completion import complete_runs
from .options import json_option, project_options

if TYPE_CHECKING:
    from gage_runs.types import Run


@click.command("priority", short_help="Change the priority of queued runs not yet started.",
               context_settings={"ignore_unknown_options": True})
@click.argument("specs", nargs=-1, required=True, metavar="RUN...",
                shell_complete=complete_runs)
@click.argument("value", metavar="P")
@project_options
@json_option
def command(specs: tuple[str, ...], value: str, project_dir: str | None,
            runs_dir: str | None, as_json: bool) -> int:
    """Set the priority of queued runs that have not started to P, an integer from
    -1000 to 1000: higher starts first, then the earlier submit (default 0).

    Every RUN must be queued and not started: all are checked before any
    is changed. The next placement pass, within about a second, orders by
    the new priority; a run already sent to a worker starts there. --json
    prints the runs with their new priority.
    """
    from gage_queue.requests import check_priority
    from gage_queue.waiting import set_priority
    from gage_runs.runs_dir import select_runs

    from ..project import current_namespace, runs_dir_for_reading
    from .common import print_runs_json

    priority = check_priority(value)
    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs))
    before = _check_waiting(runs)  # all first: nothing changes if one is refused
    missed = []
    for run in runs:
        if not set_priority(resolved, run.id, priority):  # it started since the check
            missed.append(run)
        elif not as_json:
            print(_line(run, priority, before[run.id]), flush=True)
    if as_json:
        print_runs_json(runs, current_namespace(project_dir))
    if missed:
        from gage_queue.errors import CommandFailed

        from ..progress import run_ref

        names = ", ".join(run_ref(run) for run in missed)
        raise CommandFailed(f"{names}: started meanwhile, priority unchanged")
    return 0


def _check_waiting(runs: list[Run]) -> dict[str, int]:
    """Each run's priority now, by id; SubmitError (exit 2) naming the runs that are not
    waiting to start."""
    from gage_queue.snapshots import read_queue_state
    from gage_queue.states import WAITING_TO_START
    from gage_queue.waiting import read_waiting_entry

    from ..errors import SubmitError
    from ..progress import run_ref

    priorities, refused = {}, []
    for run in runs:
        state = read_queue_state(run)
        entry = read_waiting_entry(run.runs_dir, run.id)
        if state.record is None:
            refused.append(f"{run_ref(run)} is {state.state}, not the queue's")
        elif state.state not in WAITING_TO_START:
            refused.append(f"{run_ref(run)} is {state.state}")
        elif entry is None:  # between its submit and its waiting entry, or lost: reconcile adds it
            refused.append(f"{run_ref(run)} is {state.state} but not in the waiting index yet"
                           " (try again shortly)")
        else:
            priorities[run.id] = entry.priority
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise SubmitError(f"run {refused[0]}{more}: priority changes only queued runs that"
                          " have not started; nothing changed")
    return priorities


def _line(run: Run, priority: int, before: int) -> str:
    """`priority 10 gidik-livih 1a2b...  (was 0)`, the name escaped."""
    from gage_queue.text import shown

    was = f"  (was {before})" if before != priority else "  (unchanged)"
    return f"priority {priority} {shown(run.name)}  {run.id}{was}"
