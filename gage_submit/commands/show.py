"""`gage-submit show RUN` (also `status`): one run in full."""

from __future__ import annotations

import sys

import click

from .common import json_option, project_options, select_run


@click.command("show", short_help="Show one run in full: status, host, times, config.")
@click.argument("spec", metavar="[RUN]", default="1")
@project_options
@json_option
def command(spec: str, project_dir: str | None, runs_dir: str | None, as_json: bool) -> int:
    """Show one run in full: status, host, queue, times, exit code, config (default: the latest)."""
    from ..info import run_info
    from ..project import current_namespace
    from ..render import print_json, print_run_detail

    run = select_run(spec, project_dir, runs_dir)
    info = run_info(run, namespace=current_namespace(project_dir), detail=True)
    if as_json:
        print_json(info.as_json(), sys.stdout)
    else:
        print_run_detail(info, sys.stdout)
    return 0
