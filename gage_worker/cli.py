"""`gage-worker`: run a worker, or reconcile the runs dir once.

    gage-worker [worker] --runs-dir DIR --broker URL -Q gpu -c 2 --gpus 0,1
    gage-worker reconcile --runs-dir DIR
    gage-worker beat --schedule FILE [--once] [--no-wait]
    gage-worker drain [NODE]... [--wait SECONDS]

Options override the environment (`gage_queue.settings`). Errors are one
line on stderr, `gage-worker: error: ...`, never a traceback. Exit codes:
0 success; 1 the beat's schedule is taken by another beat, or something
unexpected failed; 2 bad input (options, settings, runs dir, schedule);
3 the broker is unreachable; 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from gage_queue import exits
from gage_queue.errors import BrokerUnavailable
from gage_queue.settings import Settings, check_broker_url, check_queue_name, parse_gpus
from gage_runs.fsmode import check_shared_mode, make_dirs
from gage_runs.gagefile import runs_dir_source
from gage_runs.runs_dir import check_runs_dir

PROG = "gage-worker"
LOGLEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_BROKER_WAIT = 60.0
_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # then every 10 s
_MAX_RETRY_DELAY = 10.0

# Celery's consumer logs "Cannot connect ...\nTrying again in 2.00 seconds..."
CONSUMER_LOGGER = "celery.worker.consumer.consumer"


class OneLineLogs(logging.Filter):
    """Joins a record's lines into one, so each broker retry is one log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "\n" in message:
            record.msg, record.args = " ".join(message.split()), None
        return True


class _DefaultWorkerGroup(click.Group):
    """A group whose default command is `worker`, and whose errors are one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            commands = ", ".join(sorted(self.commands))
            raise click.UsageError(f"no such command {args[0]!r} (commands: {commands})")
        if not args or (args[0] not in self.commands
                        and args[0] not in ("--help", "-h", "--version")):
            args = ["worker", *args]
        return super().parse_args(ctx, args)

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        """Run the command line and exit with its code; errors as one line."""
        extra.pop("standalone_mode", None)
        sys.exit(_run(lambda: super(_DefaultWorkerGroup, self).main(
            args, prog_name or PROG, standalone_mode=False, **extra
        )))


def _run(invoke: Callable[[], Any]) -> int:
    """The exit code of `invoke()`, printing any error as one line (`exits`)."""
    return exits.run_command(PROG, invoke)


def _settings(runs_dir: str | None, broker: str | None, **overrides: Any) -> Settings:
    """The environment's settings with the options over them; the runs dir checked."""
    return _settings_and_source(runs_dir, broker, **overrides)[0]


def _settings_and_source(runs_dir: str | None, broker: str | None,
                         **overrides: Any) -> tuple[Settings, str]:
    """The settings, and where their runs dir came from in words.

    The runs dir is found as gage-submit finds it (`--runs-dir`,
    `GAGE_RUNS`, `RUNS_DIR`, the Gage file's `$runs-dir`, `.gage/runs` of
    the project the command stands in), so a worker started next to a
    submitter serves its runs; a project's own runs dir is made if missing,
    as Gage makes it at the first run.
    """
    path, source, from_project = runs_dir_source(os.getcwd(), runs_dir)
    if from_project and not os.path.exists(path):
        make_dirs(path)
    settings = Settings.from_env().with_overrides(
        runs_dir=check_runs_dir(path, writable=True),
        broker_url=check_broker_url(broker) if broker else None, **overrides,
    )
    return settings, source


def _say(level: str, message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    click.echo(f"[{stamp}: {level}] {PROG}: {message}", err=True)


def _common(fn: Callable) -> Callable:
    fn = click.option("--broker", metavar="URL", help="Broker URL (env GAGE_BROKER_URL).")(fn)
    fn = click.option(
        "--runs-dir", metavar="DIR",
        help="Runs dir (default: as gage-submit finds it: GAGE_RUNS, RUNS_DIR, the project's)."
    )(fn)
    return fn


def _loglevel_option(fn: Callable) -> Callable:
    return click.option(
        "-l", "--loglevel", type=click.Choice(LOGLEVELS, case_sensitive=False), default="info",
        show_default=True,
    )(fn)


@click.group(cls=_DefaultWorkerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gage-queue", prog_name=PROG, message="%(prog)s %(version)s")
def main() -> None:
    """Run staged Gage runs from a queue."""
    check_shared_mode()


@main.command("worker")
@_common
@click.option("-Q", "--queues", metavar="Q1,Q2", help="Queues to consume (default: gage).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Runs at a time (default 1).")
@click.option("--gpus", metavar="0,1", help="GPU slots: one run per GPU (env GAGE_GPUS).")
@click.option(
    "--finalize/--no-finalize", default=None,
    help="Consume the finalize queue (default: yes, unless the worker has GPUs).",
)
@click.option(
    "-n", "--hostname", metavar="NAME",
    help="Worker node name (default: gage@HOST, gage2@HOST, ...: the first not in use on this host).",
)
@click.option(
    "-E", "--events", is_flag=True, envvar="GAGE_TASK_EVENTS",
    help="Send task events, for Flower and `celery events` (env GAGE_TASK_EVENTS=1).",
)
@click.option(
    "--broker-wait", type=click.FloatRange(min=0), default=DEFAULT_BROKER_WAIT,
    show_default=True, metavar="SECONDS",
    help="At start, retry an unreachable broker this long, then exit 3.",
)
@_loglevel_option
def worker_cmd(
    runs_dir: str | None, broker: str | None, queues: str | None, concurrency: int | None,
    gpus: str | None, finalize: bool | None, hostname: str | None, events: bool, broker_wait: float,
    loglevel: str,
) -> None:
    """Start a worker (the default command)."""
    from gage_worker.worker import WorkerOptions, run_worker, worker_argv

    settings, source = _settings_and_source(
        runs_dir, broker, gpus=parse_gpus(gpus) if gpus is not None else None)
    options = WorkerOptions(
        queues=_queue_names(queues) if queues is not None else (),
        concurrency=concurrency,
        loglevel=loglevel.lower(),
        hostname=hostname,
        finalize=finalize,
        events=events,
    )
    worker_argv(settings, options)  # inconsistent options fail before anything is said
    wait_for_broker(settings, broker_wait)
    _say("INFO", f"runs dir {settings.runs_dir} (from {source})")  # once all is checked
    logging.getLogger(CONSUMER_LOGGER).addFilter(OneLineLogs())
    run_worker(settings, options)


def _queue_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not any(names):
        raise click.UsageError("-Q/--queues needs queue names, e.g. -Q gage,gpu")
    return tuple(check_queue_name(name) for name in names)


def wait_for_broker(settings: Settings, wait: float) -> None:
    """Return once the broker accepts a connection; BrokerUnavailable after `wait` s.

    One log line per failed try, backing off from 1 to 10 s. A worker that
    cannot reach its broker exits (3) rather than hang: under systemd
    (Restart=always) or compose (restart: unless-stopped) it is restarted,
    and a wrong URL or password shows up as a failed unit with its reason.
    """
    from gage_queue.broker.config import is_embedded
    from gage_queue.broker.send import BrokerSession

    if is_embedded(settings):
        return
    deadline = time.monotonic() + wait
    tries = 0
    while True:
        try:
            with BrokerSession(settings):
                return
        except BrokerUnavailable as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailable(
                    f"{str(e).rstrip('.')}; gave up after {wait:g} s (--broker-wait)"
                ) from None
            delay = min(_RETRY_DELAYS[tries] if tries < len(_RETRY_DELAYS) else _MAX_RETRY_DELAY,
                        left)
            tries += 1
            _say("WARNING", f"{str(e).rstrip('.')}; retrying in {delay:.0f} s")
            time.sleep(delay)


@main.command("reconcile")
@_common
def reconcile_cmd(runs_dir: str | None, broker: str | None) -> int:
    """Reconcile the runs dir with the broker once (a full scan), and say what was done.

    Exits 3 if the broker is unreachable: runs that need a message were not
    sent (lost runs are finalized all the same).
    """
    from gage_queue.broker.send import BrokerSession
    from gage_worker.reconcile import reconcile_by_hand

    settings = _settings(runs_dir, broker)
    done = reconcile_by_hand(settings)
    for line in done:
        click.echo(line)
    if not done:
        click.echo("nothing to do")
    with BrokerSession(settings):
        pass  # BrokerUnavailable: exit 3
    return 0


@main.command("beat")
@_common
@click.option("--schedule", "schedule_path", metavar="FILE",
              help="The schedule: a TOML file of [[job]] tables (required).")
@click.option("--no-wait", is_flag=True,
              help="Exit with an error if another beat runs this schedule (default: wait).")
@click.option("--once", is_flag=True, help="Submit the jobs that are due now, then exit.")
@_loglevel_option
def beat_cmd(
    runs_dir: str | None, broker: str | None, schedule_path: str | None, no_wait: bool,
    once: bool, loglevel: str,
) -> int:
    """Submit ops on cron or interval schedules (one beat per schedule)."""
    from gage_worker.beat.loop import configure_logging, run_beat

    if not schedule_path:
        raise click.UsageError("beat needs --schedule FILE (a TOML file of [[job]] tables)")
    settings = _settings(runs_dir, broker)
    configure_logging(loglevel)
    return run_beat(schedule_path, settings, wait=not no_wait, once=once)


@main.command("drain")
@click.argument("nodes", nargs=-1, metavar="[NODE]...")
@click.option("--runs-dir", metavar="DIR",
              help="Runs dir (default: as gage-submit finds it: GAGE_RUNS, RUNS_DIR, the project's).")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait up to this long for the workers to stop; exit 4 if they have not.")
def drain_cmd(nodes: tuple[str, ...], runs_dir: str | None, wait_seconds: float | None) -> int:
    """Take workers out of the pool: no new run starts on them, theirs finish, then they exit 0.

    NODE is a worker's node name (`gage-submit pool` lists them); without
    one, every worker of this host. Works from any host sharing the runs
    dir; a drained worker started again takes runs again.
    """
    from gage_worker.drain import drain, wait_drained

    settings = _settings(runs_dir, None)
    asked = drain(settings.require_runs_dir(), nodes)
    for info, running in asked:
        click.echo(f"draining {info.node}: {running} run(s) to finish")
    if wait_seconds is not None:
        wait_drained(settings.require_runs_dir(), [info for info, _ in asked], wait_seconds)
        click.echo("drained")
    return 0
