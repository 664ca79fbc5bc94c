"""`gage-submit`: send Gage ops to the worker pool, then watch and manage their runs.

    gage-submit OP [NAME=VALUE ...] [options]   stage and queue runs (like `gage run OP ...`)
    gage-submit submit OP [NAME=VALUE ...]      the same, for an op named like a command
    gage-submit list [filters] [--json]         runs with their status
    gage-submit show RUN [--json]               one run in full (also `status`)
    gage-submit logs RUN [-f]                   a run's output, optionally followed
    gage-submit wait RUN... [--timeout T]       wait for runs to end
    gage-submit cancel RUN... | --label L ...   stop runs, queued or running
    gage-submit rerun RUN [NAME=VALUE ...]      run a run again from its source code
    gage-submit queue RUN...                    queue runs staged by `gage run --stage`
    gage-submit compare [RUN...] [--sort -M]    flags and metrics of runs side by side

A RUN is a run id, id prefix, name or name prefix, or an index (`1` is the
latest run) or a slice (`1:5`) of the newest-first listing, as in Gage.
All but submit, rerun, queue and cancel only read the runs dir: no broker
needed.

Exit codes: 0 success; 1 a run did not complete (error, terminated, lost),
could not be staged, or something unexpected failed; 2 bad input; 3 the broker is unreachable
(the runs stay queued and reconcile sends them); 4 `wait --timeout`
expired; 130 interrupted. Errors are one line on stderr,
`gage-submit: error: ...`. Only `cancel` with a filter asks, and only on
a terminal (`--yes` skips the question).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from gage_runs.errors import GageRunsError

from .errors import StagingFailed, SubmitError, WaitTimeout

if TYPE_CHECKING:  # imported where used: a submit must not pay for what list needs
    from gage_queue.errors import BrokerUnavailable
    from gage_queue.settings import Settings
    from gage_runs.types import Run

    from .submit import Plan, Submitted
    from .watch import NoWorkerNotice

PROG = "gage-submit"
DEFAULT_MAX_RUNS = 100
DEFAULT_LIMIT = 20
STATUSES = (  # every RunState (tests/test_run_state.py), spelled out: cli imports stay light
    "queued", "running", "finalizing", "finalize-failed", "completed", "error", "terminated",
    "lost", "staged", "pending", "unknown",
)
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKER = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130
# click >= 8.2 raises this for a bare `gage-submit`; older versions print the help.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _SubmitByDefault(click.Group):
    """A group whose first word, when it is not a command, is an op to submit."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["submit", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(PROG, "OP [NAME=VALUE]... [OPTIONS]\n       gage-submit COMMAND ...")


def _project_options(fn: Callable) -> Callable:
    fn = click.option(
        "--runs-dir", metavar="DIR", help="Runs dir (else GAGE_RUNS, RUNS_DIR, $runs-dir, .gage/runs)."
    )(fn)
    return click.option(
        "-C", "--project-dir", metavar="DIR", help="Project dir (default: found from the cwd up)."
    )(fn)


_broker_option = click.option("--broker", metavar="URL", help="Broker URL (else GAGE_BROKER_URL).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(
    cls=_SubmitByDefault,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli() -> None:
    """Submit Gage ops to a pool of workers, and watch and manage their runs.

    `gage-submit train lr=0.01` stages a run of `train` as `gage run train
    lr=0.01` would, and queues it for a worker. Run `gage-submit submit -h`
    for the submit options.
    """
    from gage_runs.fsmode import check_shared_mode

    check_shared_mode()


# ---------------------------------------------------------------------
# submit


@cli.command("submit", short_help="Stage runs of an op and queue them (the default command).")
@click.argument("args", nargs=-1, metavar="[OP] [NAME=VALUE]...")
@_project_options
@click.option("-q", "--queue", metavar="NAME", help="Queue to send to (default: GAGE_QUEUE or gage).")
@click.option("-l", "--label", help="Label for the runs (stored as Gage stores it).")
@click.option("--time-limit", metavar="DURATION", help="Stop a run after this long: 90, 30m, 2h.")
@click.option(
    "--max-runs", type=click.IntRange(min=1), default=DEFAULT_MAX_RUNS, show_default=True,
    help="Refuse a grid of more runs than this.",
)
@click.option("--wait", is_flag=True, help="Wait for the runs; exit 1 if any does not complete.")
@click.option("--follow", is_flag=True, help="Stream the run's output until it ends (implies --wait).")
@_json_option
@_broker_option
@click.option("-y", "--yes", is_flag=True, hidden=True)  # `gage run -y` habit; never prompts
def submit_cmd(
    args: tuple[str, ...], project_dir: str | None, runs_dir: str | None, queue: str | None,
    label: str | None, time_limit: str | None, max_runs: int, wait: bool, follow: bool,
    as_json: bool, broker: str | None, yes: bool,
) -> int:
    """Stage runs of OP with flags NAME=VALUE and queue them for the workers.

    OP defaults to the project's default op. A list value, lr=[0.1,0.01],
    submits one run per combination of all list values. Prints one line
    per run: `queued NAME ID FLAGS`.
    """
    from .flags import parse_duration
    from .submit import SubmitOptions, plan_submit

    if follow and as_json:
        raise click.UsageError("--follow streams output; it cannot be used with --json")
    op_name, flag_args = _split_op(list(args))
    settings = _settings(None, broker)
    plan = plan_submit(
        SubmitOptions(
            op_name=op_name, flag_args=flag_args, project_dir=project_dir, runs_dir=runs_dir,
            queue=queue, label=label, max_runs=max_runs,
            time_limit=parse_duration(time_limit) if time_limit else None,
        ),
        settings,
    )
    return _submit_plan(plan, settings, wait=wait, follow=follow, as_json=as_json)


def _submit_plan(plan: Plan, settings: Settings, *, wait: bool, follow: bool, as_json: bool) -> int:
    """Stage and queue a plan's runs, then wait or follow as asked; the exit code."""
    count = len(plan.configs)
    if follow and count > 1:
        raise SubmitError(f"--follow takes a single run and the flags make {count}: use --wait")
    submitted, failure = _submit_all(plan, settings, quiet=as_json)
    runs = [s.run for s in submitted]
    if failure is not None:
        if as_json:
            _print_runs_json(runs)
        raise failure
    if follow:
        return status_exit_code(_follow(runs[0]))
    code = _wait(runs, None, quiet=as_json) if wait else 0
    if as_json:
        _print_runs_json(runs)
    return code


def _submit_all(
    plan: Plan, settings: Settings, *, quiet: bool
) -> tuple[list[Submitted], StagingFailed | BrokerUnavailable | None]:
    """Stage and queue the plan's runs with a line each; what was submitted, and any failure.

    The failure is a staging error, or the broker being unreachable (then
    the runs stay queued for reconcile).
    """
    from gage_queue.errors import BrokerUnavailable

    from .flags import format_flags
    from .progress import RunLines
    from .submit import Submission

    count = len(plan.configs)
    submitted: list[Submitted] = []
    with Submission(plan, settings) as submission, RunLines(
        sys.stdout, count, f"Submitting {count} runs", quiet=quiet
    ) as lines:
        try:
            for item in submission:
                submitted.append(item)
                lines.line("queued", item.run, format_flags(item.flags))
                lines.update(len(submitted))
        except StagingFailed as e:
            return submitted, e
    if submission.broker_error is None:
        return submitted, None
    unsent = sum(not s.sent for s in submitted)
    return submitted, BrokerUnavailable(
        f"{submission.broker_error}; {unsent} of {count} runs stay queued in {plan.runs_dir}"
        " and reconcile sends them when the broker is back (any worker on start, or"
        " `gage-worker reconcile`)"
    )


def _split_op(args: list[str]) -> tuple[str | None, list[str]]:
    """The op name and the flags; a first word with `=` is a flag (as in Gage)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def _print_runs_json(runs: list[Run]) -> None:
    from .info import run_info
    from .render import print_json

    print_json([run_info(run, detail=True).as_json() for run in runs], sys.stdout)


# ---------------------------------------------------------------------
# list


@cli.command("list", short_help="List runs with their status.")
@_project_options
@click.option(
    "-s", "--status", "statuses", multiple=True, type=click.Choice(STATUSES),
    help="Only runs with this status (repeatable).",
)
@click.option("-o", "--op", "ops", multiple=True, metavar="OP", help="Only runs of this op (repeatable).")
@click.option("-l", "--label", metavar="TEXT", help="Only runs whose label contains TEXT.")
@click.option("--schedule", metavar="NAME", help="Only runs submitted by this schedule entry.")
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True,
    help="Show at most this many runs.",
)
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all runs.")
@_json_option
def list_cmd(
    project_dir: str | None, runs_dir: str | None, statuses: tuple[str, ...],
    ops: tuple[str, ...], label: str | None, schedule: str | None, limit: int,
    show_all: bool, as_json: bool,
) -> int:
    """List runs, newest first, with their status (queued, running on HOST, lost, ...)."""
    from .listing import ListFilter, list_rows
    from .project import current_namespace, runs_dir_for_reading
    from .render import print_json, print_runs_table
    from .term import console, is_terminal

    shown, matched = list_rows(
        runs_dir_for_reading(project_dir, runs_dir),
        ListFilter(statuses, ops, label, schedule),
        limit=None if show_all else limit,
        namespace=current_namespace(project_dir),
        detail=as_json,
    )
    if as_json:
        print_json([info.as_json() for _, info in shown], sys.stdout)
        return 0
    print_runs_table(shown, sys.stdout)
    if len(shown) < matched:
        note = f"Showing {len(shown)} of {matched} runs (use -n N or -a to show more)"
        if is_terminal(sys.stdout):
            console().print(f"[dim i]{note}[/]")
        else:
            print(note, file=sys.stderr)
    return 0


# ---------------------------------------------------------------------
# show / status


@cli.command("show", short_help="Show one run in full: status, host, times, config.")
@click.argument("spec", metavar="[RUN]", default="1")
@_project_options
@_json_option
def show_cmd(spec: str, project_dir: str | None, runs_dir: str | None, as_json: bool) -> int:
    """Show one run in full: status, host, queue, times, exit code, config (default: the latest)."""
    from .info import run_info
    from .project import current_namespace
    from .render import print_json, print_run_detail

    run = _select_run(spec, project_dir, runs_dir)
    info = run_info(run, namespace=current_namespace(project_dir), detail=True)
    if as_json:
        print_json(info.as_json(), sys.stdout)
    else:
        print_run_detail(info, sys.stdout)
    return 0


cli.add_command(show_cmd, "status")


# ---------------------------------------------------------------------
# logs


@cli.command("logs", short_help="Print a run's output; -f follows it.")
@click.argument("spec", metavar="[RUN]", default="1")
@_project_options
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the run ends.")
def logs_cmd(spec: str, project_dir: str | None, runs_dir: str | None, follow: bool) -> int:
    """Print a run's output (default: the latest run's), read from the runs dir."""
    from .info import run_output_path
    from .watch import copy_output

    run = _select_run(spec, project_dir, runs_dir)
    if follow:
        return status_exit_code(_follow(run))
    copy_output(run_output_path(run), 0, _write_stdout)
    return 0


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def status_exit_code(status: str) -> int:
    """The exit code of `--follow`, `logs -f` and `wait` for a run that ended so: 0 or 1."""
    return 0 if status == "completed" else EXIT_FAILED


def _follow(run: Run) -> str:
    """Print the run's output until it ends, then how it ended (stderr); its status."""
    from .render import end_line
    from .watch import follow_output

    sys.stdout.flush()
    status = follow_output(run, _write_stdout, notice=_no_worker_notice())
    print(f"{run.name} ({run.id[:8]}): {end_line(run)}", file=sys.stderr)
    return status


def _no_worker_notice() -> NoWorkerNotice:
    from .watch import NoWorkerNotice

    return NoWorkerNotice(lambda message: print(f"gage-submit: {message}", file=sys.stderr))


# ---------------------------------------------------------------------
# wait


@cli.command("wait", short_help="Wait for runs to end.")
@click.argument("specs", nargs=-1, required=True, metavar="RUN...")
@_project_options
@click.option("--timeout", metavar="DURATION", help="Give up after this long (exit 4): 90, 30m, 2h.")
def wait_cmd(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None, timeout: str | None
) -> int:
    """Wait for runs to end; exit 0 if all completed, 1 if any did not."""
    from gage_runs.runs_dir import select_runs

    from .flags import parse_duration
    from .project import runs_dir_for_reading

    seconds = parse_duration(timeout) if timeout else None
    runs = select_runs(runs_dir_for_reading(project_dir, runs_dir), list(specs))
    _check_waitable(runs)
    return _wait(runs, seconds)


def _check_waitable(runs: list[Run]) -> None:
    """SubmitError for a run that nothing will move on: staged outside the queue, or pending."""
    from gage_queue.snapshots import queue_status

    for run in runs:
        status = queue_status(run)
        if status in ("staged", "pending", "unknown"):
            raise SubmitError(
                f"run {run.name} ({run.id[:8]}) is {status} and not queued, so it will not end"
                " on its own: submit it, or start it with `gage run --start`"
            )


def _wait(runs: list[Run], timeout: float | None, *, quiet: bool = False) -> int:
    """Wait with run lines and a bar; the exit code for the runs' statuses."""
    from .progress import RunLines, status_counts
    from .render import end_detail, format_seconds
    from .watch import wait_for_runs

    finished: list[Run] = []
    with RunLines(sys.stdout, len(runs), "Waiting", quiet=quiet) as lines:

        def on_finished(run: Run, status: str) -> None:
            finished.append(run)
            lines.line(status, run, end_detail(run)[1])

        statuses = wait_for_runs(
            runs,
            timeout=timeout,
            on_finished=on_finished,
            notice=_no_worker_notice(),
            on_status=lambda statuses: lines.update(len(finished), status_counts(statuses)),
        )
    if len(finished) < len(runs):
        assert timeout is not None
        raise WaitTimeout(
            f"timed out after {format_seconds(timeout)}:"
            f" {len(runs) - len(finished)} of {len(runs)} runs have not ended"
        )
    if not quiet and len(runs) > 1:
        print(f"{len(runs)} runs: {status_counts(statuses)}", file=sys.stderr)
    return max(status_exit_code(status) for status in statuses.values())


# ---------------------------------------------------------------------
# cancel


CANCELLABLE = ("queued", "running")


@cli.command("cancel", short_help="Cancel queued or running runs.")
@click.argument("specs", nargs=-1, metavar="[RUN]...")
@_project_options
@click.option("-o", "--op", "ops", multiple=True, metavar="OP",
              help="Cancel the queued and running runs of this op (repeatable).")
@click.option("-l", "--label", metavar="TEXT",
              help="Cancel the queued and running runs whose label contains TEXT.")
@click.option(
    "-s", "--status", "statuses", multiple=True, type=click.Choice(CANCELLABLE),
    help="Cancel the runs with this status (repeatable).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask on a terminal.")
@_broker_option
def cancel_cmd(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None,
    ops: tuple[str, ...], label: str | None, statuses: tuple[str, ...], yes: bool,
    broker: str | None,
) -> int:
    """Cancel runs: a queued run ends at once, a running one is stopped by its worker.

    Name the runs, or select them with --op, --label and --status (all
    must match; with RUNs, among those). Selected runs are the queued and
    running ones. A selection prints its count; on a terminal it asks first
    unless --yes.
    """
    from gage_queue.snapshots import queue_status, request_cancel
    from gage_runs.runs_dir import list_runs, select_runs

    from .filters import RunFilter
    from .progress import run_line
    from .project import runs_dir_for_reading

    selection = RunFilter(ops, label, statuses)
    if not specs and not selection:
        raise click.UsageError("name the runs to cancel, or select them with --op, --label or --status")
    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs)) if specs else list_runs(resolved)
    settings = _settings(resolved, broker)
    if selection:
        active = RunFilter(ops, label, statuses or CANCELLABLE)
        runs = [run for run in runs if active.keeps(run)]
        if not _confirm_cancel(len(runs), active.describe(), yes):
            return 0
    for run in runs:
        before = queue_status(run)
        after = request_cancel(run, settings)
        print(run_line(after, run, _cancel_outcome(before, after)), flush=True)
    return 0


def _confirm_cancel(count: int, selection: str, yes: bool) -> bool:
    """Say how many runs the selection cancels; on a terminal, ask unless `yes`."""
    what = f"{count} run{'s' if count != 1 else ''} ({selection})"
    if count == 0:
        print(f"no runs to cancel ({selection})", file=sys.stderr)
        return False
    if sys.stdin.isatty() and not yes:
        if not click.confirm(f"Cancel {what}?", default=False, err=True):
            print("nothing cancelled", file=sys.stderr)
            return False
        return True
    print(f"cancelling {what}", file=sys.stderr)
    return True


def _cancel_outcome(before: str, after: str) -> str:
    if before in ("completed", "error", "terminated", "lost"):
        return f"already {before}: nothing to cancel"
    if before == "queued":
        if after == "terminated":
            return "cancelled before it started"
        return "cancel requested: a worker is starting it and will stop it"
    if before == "running":
        return "cancel requested: its worker stops it within seconds"
    if before == "finalizing":
        return "already ran: being finalized"
    return f"cancel recorded: it is {before}, not queued, and will not run if queued"


# ---------------------------------------------------------------------
# rerun


@cli.command("rerun", short_help="Run a run again from its staged source code, flags changed.")
@click.argument("spec", metavar="RUN")
@click.argument("flag_args", nargs=-1, metavar="[NAME=VALUE]...")
@_project_options
@click.option("-q", "--queue", metavar="NAME", help="Queue to send to (default: the run's).")
@click.option("-l", "--label", help="Label for the new runs (default: the run's).")
@click.option("--time-limit", metavar="DURATION", help="Stop a run after this long (default: the run's).")
@click.option(
    "--max-runs", type=click.IntRange(min=1), default=DEFAULT_MAX_RUNS, show_default=True,
    help="Refuse a grid of more runs than this.",
)
@click.option("--wait", is_flag=True, help="Wait for the runs; exit 1 if any does not complete.")
@click.option("--follow", is_flag=True, help="Stream the run's output until it ends (implies --wait).")
@_json_option
@_broker_option
def rerun_cmd(
    spec: str, flag_args: tuple[str, ...], project_dir: str | None, runs_dir: str | None,
    queue: str | None, label: str | None, time_limit: str | None, max_runs: int, wait: bool,
    follow: bool, as_json: bool, broker: str | None,
) -> int:
    """Queue new runs of RUN's op from RUN's source code, with its config overlaid by flags.

    The code is what RUN staged, not the project's current code. A list
    value, lr=[0.1,0.01], makes one run per combination. Each new run
    records RUN as the run it reruns (`show` prints it).
    """
    from .flags import parse_duration
    from .rerun import rerun_source
    from .submit import SubmitOptions, plan_rerun

    if follow and as_json:
        raise click.UsageError("--follow streams output; it cannot be used with --json")
    source = rerun_source(_select_run(spec, project_dir, runs_dir))
    settings = _settings(None, broker)
    plan = plan_rerun(
        source,
        SubmitOptions(
            op_name=None, flag_args=list(flag_args), queue=queue, label=label, max_runs=max_runs,
            time_limit=parse_duration(time_limit) if time_limit else None,
        ),
        settings,
    )
    return _submit_plan(plan, settings, wait=wait, follow=follow, as_json=as_json)


# ---------------------------------------------------------------------
# queue


@cli.command("queue", short_help="Queue runs staged by `gage run --stage`.")
@click.argument("specs", nargs=-1, required=True, metavar="RUN...")
@_project_options
@click.option("-q", "--queue", "queue_name", metavar="NAME",
              help="Queue to send to (default: GAGE_QUEUE or gage).")
@click.option("--time-limit", metavar="DURATION", help="Stop a run after this long: 90, 30m, 2h.")
@_broker_option
def queue_cmd(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None,
    queue_name: str | None, time_limit: str | None, broker: str | None,
) -> int:
    """Queue staged runs for the workers: from now on they are the queue's.

    Each RUN must be staged and not yet queued or started (as `gage run
    --stage` leaves it). All are checked before any is queued.
    """
    from gage_queue.broker.send import Submitter
    from gage_queue.errors import BrokerUnavailable
    from gage_runs.runs_dir import select_runs

    from .flags import parse_duration
    from .progress import run_line
    from .project import runs_dir_for_reading
    from .queue_staged import check_queueable

    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs))
    check_queueable(runs)
    settings = _settings(resolved, broker)
    limit = parse_duration(time_limit) if time_limit else None
    unsent = 0
    with Submitter(queue=queue_name, time_limit=limit, settings=settings) as submitter:
        for run in runs:
            sent = submitter.submit(run)
            unsent += not sent
            print(run_line("queued", run, "" if sent else "not sent: waits for reconcile"),
                  flush=True)
    if submitter.error is not None:
        raise BrokerUnavailable(
            f"{submitter.error}; {unsent} of {len(runs)} runs stay queued in {resolved}"
            " and reconcile sends them when the broker is back"
        )
    return 0


# ---------------------------------------------------------------------
# compare


@cli.command("compare", short_help="Compare runs' flags and metrics side by side.")
@click.argument("specs", nargs=-1, metavar="[RUN]...")
@_project_options
@click.option("-o", "--op", "ops", multiple=True, metavar="OP", help="Only runs of this op (repeatable).")
@click.option("-l", "--label", metavar="TEXT", help="Only runs whose label contains TEXT.")
@click.option(
    "-s", "--status", "statuses", multiple=True, type=click.Choice(STATUSES),
    help="Only runs with this status (repeatable).",
)
@click.option("--sort", "sort_key", metavar="[-]COLUMN",
              help="Sort by a flag or metric; -COLUMN sorts descending.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@_json_option
def compare_cmd(
    specs: tuple[str, ...], project_dir: str | None, runs_dir: str | None, ops: tuple[str, ...],
    label: str | None, statuses: tuple[str, ...], sort_key: str | None, as_csv: bool,
    as_json: bool,
) -> int:
    """Runs (default: all, newest first) with their flags and summary metrics side by side.

    Metrics are the run's summary.json `metrics`, as Gage records them.
    """
    from gage_runs.runs_dir import list_runs, select_runs

    from .compare import compared, make_table, sort_table, write_csv, write_json, write_plain
    from .filters import RunFilter
    from .project import current_namespace, runs_dir_for_reading

    if as_csv and as_json:
        raise click.UsageError("choose one of --csv and --json")
    resolved = runs_dir_for_reading(project_dir, runs_dir)
    runs = select_runs(resolved, list(specs)) if specs else list_runs(resolved)
    keep = RunFilter(ops, label, statuses)
    namespace = current_namespace(project_dir)
    table = make_table([compared(run, namespace) for run in runs if keep.keeps(run)])
    if sort_key:
        table = sort_table(table, sort_key)
    write = write_json if as_json else write_csv if as_csv else write_plain
    write(table, sys.stdout)
    return 0


# ---------------------------------------------------------------------
# shared


def _settings(runs_dir: str | None, broker: str | None) -> Settings:
    from gage_queue.settings import Settings, check_broker_url

    return Settings.from_env().with_overrides(
        runs_dir=runs_dir, broker_url=check_broker_url(broker) if broker else None
    )


def _select_run(spec: str, project_dir: str | None, runs_dir: str | None) -> Run:
    from gage_runs.runs_dir import find_run

    from .project import runs_dir_for_reading

    return find_run(runs_dir_for_reading(project_dir, runs_dir), spec)


def main(argv: list[str] | None = None) -> None:
    """The `gage-submit` console script."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code. Errors are printed as one line."""
    try:
        result = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except _NO_ARGS_IS_HELP as e:
        click.echo(e.ctx.get_help())
        return 0
    except click.UsageError as e:
        return _error(e.format_message(), EXIT_USAGE)
    except click.ClickException as e:
        return _error(e.format_message(), e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        return _error("interrupted", EXIT_INTERRUPTED)
    except GageRunsError as e:
        return _error(str(e), _exit_code_for(e))
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        return _error(f"{e.strerror or e}{where}", EXIT_FAILED)
    except Exception as e:
        return _error(f"unexpected {type(e).__name__}: {e}", EXIT_FAILED)
    return result if isinstance(result, int) else 0


def _exit_code_for(error: GageRunsError) -> int:
    from gage_queue.errors import BrokerUnavailable

    if isinstance(error, BrokerUnavailable):
        return EXIT_BROKER
    if isinstance(error, WaitTimeout):
        return EXIT_TIMEOUT
    if isinstance(error, StagingFailed):
        return EXIT_FAILED
    return EXIT_USAGE


def _error(message: str, code: int) -> int:
    one_line = " ".join(str(message).split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return code
