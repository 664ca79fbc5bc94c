"""`gage-submit rerun RUN [NAME=VALUE]...`: run a run again from its staged source code."""

from __future__ import annotations

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
    queue: str | None, label: str | None, time_limit: str | None, gpus: int | None,
    priority: int | None, after: tuple[str, ...], after_any: bool, early_signal: str | None,
    preemptible: bool | None, retries: int | None,
    retry_on: str | None, max_runs: int, wait: bool,
    follow: bool, as_json: bool, broker: str | None,
) -> int:
    """Queue new runs of RUN's op from RUN's source code, with its config overlaid by flags.

    The code is what RUN staged, not the project's current code. A list
    value, lr=[0.1,0.01], makes one run per combination. Each new run
    records RUN as the run it reruns (`show` prints it).
    """
    from gage_queue.durations import parse_duration

    from ..project import current_namespace
    from ..rerun import rerun_source
    from ..submit import SubmitOptions, plan_rerun
    from ..submit_command import submit_plan

    if follow and as_json:
        raise click.UsageError("--follow streams output; it cannot be used with --json")
    source = rerun_source(select_run(spec, project_dir, runs_dir))
    settings = settings_for(None, broker)
    plan = plan_rerun(
        source,
        SubmitOptions(
            op_name=None, flag_args=list(flag_args), queue=queue, label=label, max_runs=max_runs,
            time_limit=parse_duration(time_limit) if time_limit is not None else None,
            gpus=gpus, priority=priority, after=after, after_any=after_any,
            retries=retries, retry_on=retry_on, early_signal=early_signal,
            preemptible=preemptible,
        ),
        settings,
    )
    return submit_plan(plan, settings, wait=wait, follow=follow, as_json=as_json,
                       namespace=current_namespace(project_dir))
