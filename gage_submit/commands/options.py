"""The click options the commands share: project and runs dir, the options of a command
that queues runs, --json and --broker.

A plain submit reads its arguments without click (`gage_submit.submit_args`), whose
table a test holds equal to these.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from gage_queue.requests import MAX_GPUS, MAX_PRIORITY, MAX_RETRIES, MIN_PRIORITY, RETRY_ON

from ..submit_args import DEFAULT_MAX_RUNS


def project_options(fn: Callable) -> Callable:
    from ..completion import complete_dirs

    fn = click.option(
        "--runs-dir", metavar="DIR", shell_complete=complete_dirs, callback=not_empty,
        help="Runs dir (else GAGE_RUNS, RUNS_DIR, $runs-dir, .gage/runs).",
    )(fn)
    return click.option(
        "-C", "--project-dir", metavar="DIR", shell_complete=complete_dirs, callback=not_empty,
        help="Project dir (default: found from the cwd up).",
    )(fn)


def run_options(*, queue_help: str, label_help: str, time_limit_help: str) -> Callable:
    """The options of a command that queues runs (`submit`, `rerun`): --queue, --label,
    --time-limit (their help given), --gpus, --priority, --max-runs, --wait and --follow."""

    def decorate(fn: Callable) -> Callable:
        for option in reversed([
            click.option("-q", "--queue", metavar="NAME", help=queue_help),
            click.option("-l", "--label", help=label_help),
            click.option("--time-limit", metavar="DURATION", help=time_limit_help),
            gpus_option,
            priority_option,
            click.option("--after", multiple=True, metavar="RUN",
                         help="Wait until RUN has completed (repeatable; label:TEXT selects"
                              " a labelled grid); if it fails, end without running."),
            click.option("--after-any", is_flag=True,
                         help="With --after: run whatever the runs waited for ended as."),
            click.option("--signal", "early_signal", metavar="SIG@SECONDS",
                         help="Send SIG to the run that long before its time limit, and"
                              " before a preemption's SIGTERM (e.g. USR1@60), so it can save"
                              " a checkpoint."),
            click.option("--preemptible", is_flag=True, default=None,
                         help="A higher-priority run may stop it (--signal's SIG, SIGTERM,"
                              " then the grace); it then runs again as a new attempt."),
            click.option("--retries", type=click.IntRange(0, MAX_RETRIES), metavar="N",
                         help="Run a lost run again, as a new linked run, up to N times."),
            click.option("--retry-on", type=click.Choice(RETRY_ON),
                         help="lost (default): its worker or host died; error: also a"
                              " non-zero exit."),
            click.option(
                "--max-runs", type=click.IntRange(min=1), default=DEFAULT_MAX_RUNS,
                show_default=True, help="Refuse a grid of more runs than this.",
            ),
            click.option("--wait", is_flag=True,
                         help="Wait for the runs; exit 1 if any does not complete."),
            click.option("--follow", is_flag=True,
                         help="Stream the run's output until it ends (implies --wait)."),
        ]):
            fn = option(fn)
        return fn

    return decorate


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option's value, refused if given empty (`--queue ""` is a mistake, not the
    default): a usage error, exit 2."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


gpus_option = click.option(
    "--gpus", metavar="N", type=click.IntRange(0, MAX_GPUS),
    help="GPUs each run takes, all of one host (default: one on a GPU worker).")
priority_option = click.option(
    "--priority", metavar="P", type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY),
    help="Higher starts first (default 0); `gage-submit priority` changes it later.")
broker_option = click.option("--broker", metavar="URL", callback=not_empty,
                             help="Broker URL (else GAGE_BROKER_URL).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
