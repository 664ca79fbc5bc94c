"""`gage-submit wait RUN...`: wait for runs to end; the exit code says whether all completed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..completion import complete_runs
from .common import no_worker_notice, state_exit_code
from .options import json_option, project_options

if TYPE_CHECKING:
    from gage_queue.states import RunState
    from gage_runs.types import Run


@click.command("wait", short_help="Wait for runs to end.")
@click.argument("specs", nargs=-1, required=True, metavar="RUN...", shell_complete=complete_runs)
@project_options
@click.option("--timeout", metavar="DURATION", help="Give up after this long (exit 4): 90, 30m, 2h.")
@json_option
def command(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None, timeout: str | None,
    as_json: bool,
) -> int:
    """Wait for runs to end; exit 0 if all completed, 1 if any did not.

    The runs are resolved once, at the start: `wait 1:4` waits for the four
    latest runs of that moment, whatever is submitted meanwhile. --json
    prints the runs as they ended (on a timeout too, before the error).
    """
    from gage_queue.durations import parse_duration
    from gage_runs.runs_dir import select_runs

    from ..errors import WaitTimeout
    from ..project import current_namespace, runs_dir_for_reading
    from .common import print_runs_json

    seconds = parse_duration(timeout) if timeout is not None else None
    runs = select_runs(runs_dir_for_reading(project_dir, runs_dir), list(specs))
    _check_waitable(runs)
    if not as_json:
        return wait_runs(runs, seconds)
    try:
        code = wait_runs(runs, seconds, quiet=True)
    except WaitTimeout:
        print_runs_json(runs, current_namespace(project_dir))
        raise
    print_runs_json(runs, current_namespace(project_dir))
    return code


def _check_waitable(runs: list[Run]) -> None:
    """SubmitError for a run that nothing will move on: staged outside the queue, or pending."""
    from gage_queue.snapshots import run_state
    from gage_queue.states import NOT_YET_RUN

    from ..errors import SubmitError
    from ..progress import run_ref

    for run in runs:
        state = run_state(run)
        if state in NOT_YET_RUN:
            raise SubmitError(
                f"run {run_ref(run)} is {state} and not queued, so it will not end"
                " on its own: submit it, or start it with `gage run --start`"
            )


def wait_runs(runs: list[Run], timeout: float | None, *, quiet: bool = False,
              notice_after: float | None = None) -> int:
    """Wait with run lines and a bar; the exit code for the runs' states.

    `notice_after` is GAGE_NO_WORKER_NOTICE from settings the caller loaded
    (else they are loaded here, before waiting).
    """
    from gage_queue.durations import format_duration

    from ..errors import WaitTimeout
    from ..progress import RunLines, status_counts, waiting_description
    from ..render import end_detail
    from ..watch import wait_for_runs

    finished: list[Run] = []
    by_id = {run.id: run for run in runs}
    with RunLines(sys.stdout, len(runs), "Waiting", quiet=quiet) as lines:

        def on_finished(run: Run, state: RunState) -> None:
            finished.append(run)
            lines.line(state, run, end_detail(run)[1])

        states = wait_for_runs(
            runs,
            timeout=timeout,
            on_finished=on_finished,
            notice=no_worker_notice(lines.notice, after=notice_after),
            on_status=lambda states: lines.update(
                len(finished), waiting_description(states, by_id)),
        )
    if len(finished) < len(runs):
        assert timeout is not None
        raise WaitTimeout(
            f"timed out after {format_duration(timeout)}:"
            f" {len(runs) - len(finished)} of {len(runs)} runs have not ended"
        )
    if not quiet and len(runs) > 1:
        print(f"{len(runs)} runs: {status_counts(states)}", file=sys.stderr)
    return max(state_exit_code(state) for state in states.values())
