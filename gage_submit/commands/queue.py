"""`gage-submit queue RUN...`: hand runs staged by `gage run --stage` to the queue."""

from __future__ import annotations

import click

from ..completion import complete_runs
from .common import settings_for
from .options import broker_option, gpus_option, json_option, priority_option, project_options


@click.command("queue", short_help="Queue runs staged by `gage run --stage`.")
@click.argument("specs", nargs=-1, required=True, metavar="RUN...", shell_complete=complete_runs)
@project_options
@click.option("-q", "--queue", "queue_name", metavar="NAME",
              help="Queue to send to (default: GAGE_QUEUE or gage).")
@click.option("--time-limit", metavar="DURATION", help="Stop a run after this long: 90, 30m, 2h.")
@gpus_option
@priority_option
@json_option
@broker_option
def command(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None,
    queue_name: str | None, time_limit: str | None, gpus: int | None, priority: int | None,
    as_json: bool, broker: str | None,
) -> int:
    """Queue staged runs for the workers: from now on they are the queue's.

    Each RUN must be staged and not yet queued or started (as `gage run
    --stage` leaves it). All are checked before any is queued. A run whose
    op has `run-files` or `runs-summary` dependencies waits for the runs
    they select now, as one `gage-submit` would.
    """
    from gage_queue.broker.send import Submitter
    from gage_queue.depends import resolve_depends, write_depends
    from gage_queue.durations import parse_duration
    from gage_queue.errors import BrokerUnavailable
    from gage_queue.requests import RunRequest
    from gage_queue.settings import check_queue_name
    from gage_runs.meta import meta_opdef
    from gage_runs.runs_dir import select_runs

    from ..progress import run_line
    from ..project import current_namespace, runs_dir_for_reading
    from ..queue_staged import check_queueable
    from .common import print_runs_json

    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs))
    check_queueable(runs)
    settings = settings_for(resolved, broker)
    limit = parse_duration(time_limit) if time_limit is not None else None
    if queue_name is not None:
        check_queue_name(queue_name)  # `--queue ""` too: an error, not the default
    unsent = 0
    request = RunRequest(gpus, priority or 0)
    depends = {run.id: resolve_depends(meta_opdef(run), run.opref, resolved, None)
               for run in runs}
    with Submitter(queue=queue_name, time_limit=limit, settings=settings,
                   request=request) as submitter:
        for run in runs:
            write_depends(run, depends[run.id].resolved)
            waits = depends[run.id].applied_to(request)
            sent = submitter.submit(run, waits)
            unsent += not sent
            if not as_json:
                print(run_line(waits.first_state, run, "" if sent else "not sent: waits for reconcile"),
                      flush=True)
    if as_json:
        print_runs_json(runs, current_namespace(project_dir))
    if submitter.error is not None:
        raise BrokerUnavailable(
            f"{submitter.error}; {unsent} of {len(runs)} runs stay queued in {resolved}"
            " and reconcile sends them when the broker is back"
        )
    return 0
