"""What the commands share: options, the status choices, settings, run lookup, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from gage_queue.requests import RETRY_ON
from gage_queue.states import FAILED, RunState
from gage_submit import PROG

if TYPE_CHECKING:
    from gage_queue.settings import Settings
    from gage_runs.types import Run

    from ..watch import NoWorkerNotice

DEFAULT_MAX_RUNS = 100
STATUSES = [state.value for state in RunState]
"""`--status` choices: every state a run can be in."""


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
            click.option("--retries", type=click.IntRange(0, 100), metavar="N",
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
    "--gpus", metavar="N", type=click.IntRange(0, 64),
    help="GPUs each run takes, all of one host (default: one on a GPU worker).")
priority_option = click.option(
    "--priority", metavar="P", type=click.IntRange(-1000, 1000),
    help="Higher starts first (default 0); `gage-submit priority` changes it later.")
broker_option = click.option("--broker", metavar="URL", callback=not_empty,
                             help="Broker URL (else GAGE_BROKER_URL).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def settings_for(runs_dir: str | None, broker: str | None) -> Settings:
    """The settings from the environment, with the command line's runs dir and broker."""
    from gage_queue.settings import Settings, check_broker_url

    return Settings.from_env().with_overrides(
        runs_dir=runs_dir, broker_url=check_broker_url(broker) if broker is not None else None
    )


def select_run(spec: str, project_dir: str | None, runs_dir: str | None) -> Run:
    """The one run `spec` names (an index, id or name, or a prefix of one)."""
    from gage_runs.runs_dir import find_run

    from ..project import runs_dir_for_reading

    return find_run(runs_dir_for_reading(project_dir, runs_dir), spec)


def state_exit_code(state: RunState) -> int:
    """The exit code of `--follow`, `logs -f` and `wait` for a run that ended so: 0 or 1."""
    from gage_queue import exits

    return exits.FAILED if state in FAILED else exits.OK


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def no_worker_notice(say: Callable[[str], None] | None = None, *,
                     after: float | None = None) -> NoWorkerNotice:
    """A notice when runs wait on a queue no worker consumes: on stderr, or through `say`
    (a bar's `RunLines.notice`, which prints it above the bar). It comes `after` seconds
    (default: the settings' GAGE_NO_WORKER_NOTICE, checked as settings load)."""
    from ..watch import NoWorkerNotice

    return NoWorkerNotice(say or (lambda message: print(f"{PROG}: {message}", file=sys.stderr)),
                          after)


def run_json(run: Run, namespace: str | None) -> dict[str, Any]:
    """The JSON object of a run, as every `--json` prints it (README "Scripting"); its op
    without the namespace when that is `namespace`, the current project's."""
    from ..info import run_info

    return run_info(run, namespace=namespace, detail=True).as_json()


def print_runs_json(runs: list[Run], namespace: str | None) -> None:
    """The `--json` document of a command that reports on runs: an array of run objects."""
    from ..render import print_json

    print_json([run_json(run, namespace) for run in runs], sys.stdout)
