"""`gage-submit [submit] OP [NAME=VALUE]...`: stage runs of an op and queue them."""

from __future__ import annotations

from typing import Any

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
def command(args: tuple[str, ...], yes: bool, **options: Any) -> int:
    """Stage runs of OP with flags NAME=VALUE and queue them for the workers.

    OP defaults to the project's default op. A list value, lr=[0.1,0.01],
    submits one run per combination of all list values. Prints one line
    per run: `queued NAME ID FLAGS`.
    """
    return submit_command(args, **options)
