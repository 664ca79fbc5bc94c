"""`gage-submit cancel`: ask runs to stop, before they start or while they run.

Cancelling writes the request and nothing else (`gage_queue.cancel`); the
workers act on it. A running run's keeper stops it within about half a
second. A run waiting to start is ended without running by any worker
that shares the runs dir (its cancel sweep, about once a second), or by
the keeper its message reaches. So where a worker is there to do it,
`cancel` waits a few seconds for such runs to end and says which did;
without one it says the run stays queued until a worker comes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from gage_queue.states import CANCELLABLE, RunState

from ..completion import complete_ops, complete_runs
from .options import json_option, project_options

if TYPE_CHECKING:
    from gage_queue.snapshots import QueueState
    from gage_runs.types import Run

CANCEL_STATUSES = [state.value for state in RunState if state in CANCELLABLE]
WAIT_SECONDS = 5.0
"""How long `cancel` waits, in all, for runs waiting to start to be ended by a worker."""
POLL_SECONDS = 0.1


@click.command("cancel", short_help="Cancel queued or running runs.")
@click.argument("specs", nargs=-1, metavar="[RUN]...", shell_complete=complete_runs)
@project_options
@click.option("-o", "--op", "ops", multiple=True, metavar="OP", shell_complete=complete_ops,
              help="Cancel the queued and running runs of this op (repeatable).")
@click.option("-l", "--label", metavar="TEXT",
              help="Cancel the queued and running runs whose label contains TEXT.")
@click.option(
    "-s", "--status", "statuses", multiple=True, type=click.Choice(CANCEL_STATUSES),
    help="Cancel the runs with this status (repeatable).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask on a terminal.")
@json_option
@click.option("--broker", hidden=True)  # cancel sends nothing; accepted as before
def command(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None,
    ops: tuple[str, ...], label: str | None, statuses: tuple[str, ...], yes: bool,
    as_json: bool, broker: str | None,
) -> int:
    """Cancel runs: a queued run is ended before it starts, a running one is stopped.

    A worker does either: the command writes the requests, then waits up
    to 5 s for queued runs to end where a worker shares the runs dir.
    Name the runs, or select them with --op, --label and --status (all
    must match; with RUNs, among those). Selected runs are the queue's
    pending, queued and running ones. A selection prints its count; on a
    terminal it lists the runs and asks first unless --yes. --json prints
    each run as it is after the cancel, with what the cancel did.
    """
    from gage_runs.runs_dir import list_runs, select_runs

    from ..filters import RunFilter
    from ..progress import run_line
    from ..project import current_namespace, runs_dir_for_reading
    from ..render import print_json
    from .common import run_json

    selection = RunFilter(statuses=statuses, ops=ops, label=label)
    if not specs and not selection:
        raise click.UsageError("name the runs to cancel, or select them with --op, --label or --status")
    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs)) if specs else list_runs(resolved)
    if selection:
        active = RunFilter(statuses=statuses or CANCEL_STATUSES, ops=ops, label=label)
        runs = [run for run in runs if active.keeps(run) and _is_the_queues(run)]
        if not _confirm_cancel(runs, active.describe(), yes, current_namespace(project_dir)):
            if as_json:
                print_json([], sys.stdout)
            return 0
    requests = [_request(run) for run in runs]  # every request first: workers act on them
    deadline = time.monotonic() + WAIT_SECONDS  # meanwhile, in one wait for all
    reported = []
    for request in requests:
        state, detail = request.outcome(deadline)
        if as_json:
            reported.append({
                **run_json(request.run, current_namespace(project_dir)),
                "cancel": {"requested": request.asked, "detail": detail},
            })
        else:
            print(run_line(state, request.run, detail), flush=True)
    if as_json:
        print_json(reported, sys.stdout)
    return 0


def _is_the_queues(run: Run) -> bool:
    from gage_queue.snapshots import read_queue_state

    return read_queue_state(run).record is not None


@dataclass(frozen=True)
class _Request:
    """A run and its state when the cancel was asked for (`asked`: a request was written)."""

    run: Run
    before: RunState
    asked: bool

    def outcome(self, deadline: float) -> tuple[RunState, str]:
        """The run's state and what the cancel did, for its run line."""
        from gage_queue.states import WAIT_DONE

        before = self.before
        if not self.asked:
            if before is RunState.FINALIZING:
                return before, "already ran: being finalized"
            if before in WAIT_DONE:
                return before, f"already {before}: nothing to cancel"
            return before, "not the queue's run (Gage's own): nothing to cancel"
        if before is RunState.RUNNING:
            return before, "cancel requested: its worker stops it within seconds"
        return self._before_start(deadline)  # pending or queued

    def _before_start(self, deadline: float) -> tuple[RunState, str]:
        """A run that was waiting to start: wait for a worker to end it, if one can."""
        from gage_queue.states import WAITING_TO_START, EndReason, before_start_words
        from gage_queue.text import shown

        from ..watch import run_queue

        queue = run_queue(self.run)
        worker = _worker_there(self.run.runs_dir, queue)
        after = _settled(self.run, deadline if worker else 0.0)
        if after.state in WAITING_TO_START:
            why = "" if worker else f" (no worker consumes queue '{shown(queue, 100)}' now)"
            return after.state, f"cancel requested: a worker ends it before it starts{why}"
        if after.state is RunState.RUNNING:  # a keeper started it just before the request
            return after.state, "cancel requested: it started; its worker stops it within seconds"
        record = after.record
        if record is not None and record.reason is EndReason.CANCELLED and record.started is None:
            return after.state, before_start_words("cancelled")
        return after.state, shown(after.reason or "")


def _request(run: Run) -> _Request:
    """Ask the queue's run to stop if it may still run (`CANCELLABLE`); what it was.

    A run the queue does not own (Gage's own) is left alone: no worker
    would act on a request.
    """
    from gage_queue.cancel import request_cancel
    from gage_queue.snapshots import read_queue_state

    state = read_queue_state(run)
    if state.record is None or state.state not in CANCELLABLE:
        return _Request(run, state.state, asked=False)
    before = request_cancel(run)
    return _Request(run, before, asked=before in CANCELLABLE)


def _worker_there(runs_dir: str, queue: str) -> bool:
    """True if a worker can end a run of `queue` waiting to start: one consumes the
    queue, or shares the runs dir at all (every worker sweeps its cancel requests)."""
    from gage_queue.consumers import queue_has_consumer, runs_dir_has_worker

    return queue_has_consumer(runs_dir, queue) or runs_dir_has_worker(runs_dir)


def _settled(run: Run, deadline: float) -> QueueState:
    """The run's state once it is neither waiting to start nor being finalized, or at
    `deadline` (a `time.monotonic()` time), whichever comes first."""
    from gage_queue.snapshots import read_queue_state
    from gage_queue.states import WAITING_TO_START

    waiting = WAITING_TO_START | {RunState.FINALIZING}
    while True:
        state = read_queue_state(run)
        if state.state not in waiting or time.monotonic() >= deadline:
            return state
        time.sleep(POLL_SECONDS)


LISTED_AT_MOST = 20
"""How many runs the question before a cancel lists; the rest are counted."""


def _confirm_cancel(runs: list[Run], selection: str, yes: bool, namespace: str | None) -> bool:
    """Say how many runs the selection cancels; on a terminal, list them and ask unless
    `yes`."""
    count = len(runs)
    what = f"{count} run{'s' if count != 1 else ''} ({selection})"
    if count == 0:
        print(f"no runs to cancel ({selection})", file=sys.stderr)
        return False
    if sys.stdin.isatty() and not yes:
        for line in listed_runs(runs, LISTED_AT_MOST, namespace):
            print(line, file=sys.stderr)
        if not click.confirm(f"Cancel {what}?", default=False, err=True):
            print("nothing cancelled", file=sys.stderr)
            return False
        return True
    print(f"cancelling {what}", file=sys.stderr)
    return True


def listed_runs(runs: list[Run], at_most: int, namespace: str | None) -> list[str]:
    """The runs as lines of a table (name, op, status), at most `at_most` of them, then
    `and N more`; ops as `list` shows them in `namespace`, escaped (`gage_queue.text.shown`)."""
    from gage_queue.snapshots import run_state
    from gage_queue.text import shown

    from ..render import plain_table

    def op(run: Run) -> str:
        opref = run.opref
        return opref.op_name if opref.op_ns == namespace else opref.get_full_name()

    cells = [(run.name, shown(op(run), 60), str(run_state(run))) for run in runs[:at_most]]
    lines = [f"  {line}" for line in plain_table([("name", "op", "status"), *cells])]
    if len(runs) > at_most:
        lines.append(f"  and {len(runs) - at_most} more")
    return lines
