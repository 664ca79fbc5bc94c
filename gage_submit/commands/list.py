"""`gage-submit list`: runs, newest first, with their status."""

from __future__ import annotations

import sys

import click

from ..completion import complete_ops
from .common import STATUSES
from .options import json_option, project_options

DEFAULT_LIMIT = 20


@click.command("list", short_help="List runs with their status.")
@project_options
@click.option(
    "-s", "--status", "statuses", multiple=True, type=click.Choice(STATUSES),
    help="Only runs with this status (repeatable).",
)
@click.option("-o", "--op", "ops", multiple=True, metavar="OP", shell_complete=complete_ops,
              help="Only runs of this op (repeatable).")
@click.option("-l", "--label", metavar="TEXT", help="Only runs whose label contains TEXT.")
@click.option("--schedule", metavar="NAME", help="Only runs submitted by this schedule entry.")
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True,
    help="Show at most this many runs.",
)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all runs.")
@json_option
def command(
    project_dir: str | None, runs_dir: str | None, statuses: tuple[str, ...],
    ops: tuple[str, ...], label: str | None, schedule: str | None, limit: int,
    show_all: bool, as_json: bool,
) -> int:
    """List runs, newest first, with their status (queued, running on HOST, lost, ...)."""
    from ..filters import RunFilter
    from ..listing import list_rows
    from ..project import current_namespace, runs_dir_for_reading
    from ..render import print_json, print_runs_table
    from ..term import console, is_terminal

    resolved = runs_dir_for_reading(project_dir, runs_dir)
    selection = RunFilter(statuses=statuses, ops=ops, label=label, schedule=schedule)
    shown, matched = list_rows(
        resolved,
        selection,
        limit=None if show_all else limit,
        namespace=current_namespace(project_dir),
        detail=as_json,
    )
    if as_json:
        print_json([info.as_json() for _, info in shown], sys.stdout)
        return 0
    if not shown:  # no table, not even its header: say why, exit 0
        from gage_queue.text import shown as escaped

        what = f" match {selection.describe()}" if selection else ""
        print(f"no runs{what} in {escaped(resolved)}", file=sys.stderr)
        return 0
    print_runs_table(shown, sys.stdout)
    if len(shown) < matched:
        note = f"Showing {len(shown)} of {matched} runs (use -n N or -a to show more)"
        if is_terminal(sys.stdout):
            console().print(f"[dim i]{note}[/]")
        else:
            print(note, file=sys.stderr)
    return 0
