"""`gage-submit compare [RUN]...`: runs' flags and metrics side by side."""

from __future__ import annotations

import sys

import click

from ..completion import complete_ops, complete_runs
from .common import STATUSES
from .options import json_option, project_options


@click.command("compare", short_help="Compare runs' flags and metrics side by side.")
@click.argument("specs", nargs=-1, metavar="[RUN]...", shell_complete=complete_runs)
@project_options
@click.option("-o", "--op", "ops", multiple=True, metavar="OP", shell_complete=complete_ops,
              help="Only runs of this op (repeatable).")
@click.option("-l", "--label", metavar="TEXT", help="Only runs whose label contains TEXT.")
@click.option(
    "-s", "--status", "statuses", multiple=True, type=click.Choice(STATUSES),
    help="Only runs with this status (repeatable).",
)
@click.option("--sort", "sort_key", metavar="[-]COLUMN",
              help="Sort by a flag or metric; -COLUMN sorts descending.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@json_option
def command(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None, ops: tuple[str, ...],
    label: str | None, statuses: tuple[str, ...], sort_key: str | None, as_csv: bool,
    as_json: bool,
) -> int:
    """Runs (default: all, newest first) with their flags and summary metrics side by side.

    Metrics are the run's summary.json `metrics`, as Gage records them.
    """
    from gage_runs.runs_dir import list_runs, select_runs

    from ..compare import compared, make_table, sort_table, write_csv, write_json, write_plain
    from ..filters import RunFilter
    from ..project import current_namespace, runs_dir_for_reading

    if as_csv and as_json:
        raise click.UsageError("choose one of --csv and --json")
    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs)) if specs else list_runs(resolved)
    keep = RunFilter(statuses=statuses, ops=ops, label=label)
    namespace = current_namespace(project_dir)
    table = make_table([compared(run, namespace) for run in runs if keep.keeps(run)])
    if sort_key:
        table = sort_table(table, sort_key)
    write = write_json if as_json else write_csv if as_csv else write_plain
    write(table, sys.stdout)
    return 0
