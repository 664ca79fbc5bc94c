"""`gage-submit rerun RUN [NAME=VALUE]...`: run a run again from its staged source code."""

from __future__ import annotations

from typing import Any

import click

from ..completion import complete_runs
from .common import select_run, settings_for
from .options import broker_option, json_option, project_options, run_options


@click.command("rerun", short_help="Run a run again from its staged source code, flags changed.")
@click.argument("spec", metavar="RUN", shell_complete=complete_runs)
@click.argument("flag_args", nargs=-1, metavar="[NAME=VALUE]...")
@project_options
@run_options(
    queue_help="Queue to send to (default: the run's).",
    label_help="Label for the new runs (default: the run's).",
    time_limit_help="Stop a run after this long (default: the run's; GPUs and priority too).",
)
@json_option
@broker_option
def command(
    spec: str, flag_args: tuple[str, ...], project_dir: str | None, runs_dir: str | None,
    wait: bool, follow: bool, as_json: bool, broker: str | None, **run_options: Any,
) -> int:
    """Queue new runs of RUN's op from RUN's source code, with its config overlaid by flags.

    The code is what RUN staged, not the project's current code. A list
    value, lr=[0.1,0.01], makes one run per combination. Each new run
    records RUN as the run it reruns (`show` prints it).
    """
    from ..project import current_namespace
    from ..rerun import rerun_source
    from ..submit import plan_rerun
    from ..submit_command import check_output_options, submit_options, submit_plan

    check_output_options(follow=follow, as_json=as_json)
    source = rerun_source(select_run(spec, project_dir, runs_dir))
    settings = settings_for(None, broker)
    plan = plan_rerun(source, submit_options(None, list(flag_args), **run_options), settings)
    return submit_plan(plan, settings, wait=wait, follow=follow, as_json=as_json,
                       namespace=current_namespace(project_dir))
