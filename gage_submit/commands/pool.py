"""`gage-submit pool`: the live workers, who holds their slots and GPUs, and who waits."""

from __future__ import annotations

import sys

import click

from .options import json_option, project_options


@click.command("pool", short_help="Show the workers, their runs and GPUs, and who waits.")
@project_options
@click.option("-n", "--limit", "listed", type=click.IntRange(min=0), default=5,
              show_default=True, metavar="N",
              help="List this many waiting runs per queue, the first in line first.")
@json_option
def command(project_dir: str | None, runs_dir: str | None, listed: int, as_json: bool) -> int:
    """Show the pool: per host its live workers (queues, slots used, draining) and
    each GPU with the run holding it; per queue how many runs wait, the oldest
    wait, and the first in line (priority, GPUs asked) with why each waits.

    Read from the runs dir alone (no broker): the files and locks workers
    and their runs keep there. A run waits in order of priority (higher
    first), then of submit. --json prints the same as one object.
    """
    from ..pool_view import pool_json, pool_lines, read_view
    from ..project import runs_dir_for_reading
    from ..render import print_json

    view = read_view(runs_dir_for_reading(project_dir, runs_dir), listed=listed)
    if as_json:
        print_json(pool_json(view), sys.stdout)
        return 0
    for line in pool_lines(view):
        print(line)
    return 0
