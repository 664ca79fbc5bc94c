"""`gage-submit [submit] OP [NAME=VALUE]...`: stage runs of an op and queue them."""

from __future__ import annotations

import click

from ..completion import complete_submit_args
from ..submit_command import submit_command
from .options import broker_option, json_option, project_options, run_options


@click.command("submit", short_help="Stage runs of an op and queue them (the default command).")
@click.argument("args", nargs=-1, metavar="[OP] [NAME=VALUE]...",
                shell_complete=complete_submit_args)
@project_options
@run_options(
    queue_help="Queue to send to (default: GAGE_QUEUE or gage).",
    label_help="Label for the runs (stored as Gage stores it).",
    time_limit_help="Stop a run after this long: 90, 30m, 2h.",
)
@json_option
@broker_option
@click.option("-y", "--yes", is_flag=True, hidden=True)  # `gage run -y` habit; never prompts
def command(
    args: tuple[str, ...], project_dir: str | None, runs_dir: str | None, queue: str | None,
    label: str | None, time_limit: str | None, gpus: int | None, priority: int | None,
    after: tuple[str, ...], after_any: bool, early_signal: str | None,
    preemptible: bool | None, retries: int | None,
    retry_on: str | None, max_runs: int, wait: bool, follow: bool,
    as_json: bool, broker: str | None, yes: bool,
) -> int:
    """Stage runs of OP with flags NAME=VALUE and queue them for the workers.

    OP defaults to the project's default op. A list value, lr=[0.1,0.01],
    submits one run per combination of all list values. Prints one line
    per run: `queued NAME ID FLAGS`.
    """
    return submit_command(
        args, project_dir=project_dir, runs_dir=runs_dir, queue=queue, label=label,
        time_limit=time_limit, gpus=gpus, priority=priority, after=after, after_any=after_any,
        early_signal=early_signal, preemptible=preemptible, retries=retries, retry_on=retry_on,
        max_runs=max_runs, wait=wait, follow=follow, as_json=as_json, broker=broker,
    )
