"""`gage-worker`: run a worker, or reconcile the runs dir once.

    gage-worker [worker] --runs-dir DIR --broker URL -Q gpu -c 2 --gpus 0,1
    gage-worker reconcile --runs-dir DIR
    gage-worker beat --schedule FILE [--once] [--no-wait]

Options override the environment (`gage_worker.settings`). Bad input is a
one-line error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from gage_runs.errors import GageRunsError
from gage_runs.runs_dir import check_runs_dir

from .errors import SettingsError
from .recovery import reconcile_by_hand
from .settings import Settings, check_broker_url, parse_gpus
from .worker import WorkerOptions, run_worker

LOGLEVELS = ("debug", "info", "warning", "error", "critical")


class _DefaultWorkerGroup(click.Group):
    """A group whose default command is `worker`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["worker", *args]
        return super().parse_args(ctx, args)


def _settings(**overrides: Any) -> Settings:
    return Settings.from_env().with_overrides(**overrides)


def _common(fn: Callable) -> Callable:
    fn = click.option("--broker", metavar="URL", help="Broker URL (env GAGE_BROKER_URL).")(fn)
    fn = click.option(
        "--runs-dir", metavar="DIR", help="Runs dir (env GAGE_RUNS)."
    )(fn)
    return fn


@click.group(cls=_DefaultWorkerGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run staged Gage runs from a queue."""


@main.command("worker")
@_common
@click.option("-Q", "--queues", metavar="Q1,Q2", help="Queues to consume (default: gage).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), help="Runs at a time (default 1).")
@click.option("--gpus", metavar="0,1", help="GPU slots: one run per GPU (env GAGE_GPUS).")
@click.option("-n", "--hostname", default="gage@%h", show_default=True, help="Worker node name.")
@click.option(
    "-l", "--loglevel", type=click.Choice(LOGLEVELS, case_sensitive=False), default="info",
    show_default=True,
)
def worker_cmd(
    runs_dir: str | None, broker: str | None, queues: str | None, concurrency: int | None,
    gpus: str | None, hostname: str, loglevel: str,
) -> None:
    """Start a worker (the default command)."""
    with _errors():
        settings = _settings(
            runs_dir=runs_dir,
            broker_url=check_broker_url(broker) if broker else None,
            gpus=parse_gpus(gpus) if gpus is not None else None,
        )
        options = WorkerOptions(
            queues=tuple(q.strip() for q in queues.split(",")) if queues else (),
            concurrency=concurrency,
            loglevel=loglevel.lower(),
            hostname=hostname,
        )
        run_worker(settings, options)


@main.command("reconcile")
@_common
def reconcile_cmd(runs_dir: str | None, broker: str | None) -> None:
    """Reconcile the runs dir with the broker once (a full scan), and say what was done."""
    with _errors():
        settings = _settings(runs_dir=runs_dir, broker_url=broker)
        settings = settings.with_overrides(
            runs_dir=check_runs_dir(settings.require_runs_dir(), writable=True)
        )
        done = reconcile_by_hand(settings)
    for line in done:
        click.echo(line)
    if not done:
        click.echo("nothing to do")


@main.command("beat")
@_common
@click.option("--schedule", "schedule_path", required=True, metavar="FILE",
              help="The schedule: a TOML file of [[job]] tables.")
@click.option("--no-wait", is_flag=True,
              help="Exit with an error if another beat runs this schedule (default: wait).")
@click.option("--once", is_flag=True, help="Submit the jobs that are due now, then exit.")
@click.option(
    "-l", "--loglevel", type=click.Choice(LOGLEVELS, case_sensitive=False), default="info",
    show_default=True,
)
def beat_cmd(
    runs_dir: str | None, broker: str | None, schedule_path: str, no_wait: bool, once: bool,
    loglevel: str,
) -> None:
    """Submit ops on cron or interval schedules (one beat per schedule)."""
    from .beat import configure_logging, run_beat

    with _errors():
        configure_logging(loglevel)
        status = run_beat(
            schedule_path, _settings(runs_dir=runs_dir, broker_url=broker),
            wait=not no_wait, once=once,
        )
    sys.exit(status)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn gage errors into `gage-worker: error: ...`: exit 2 for bad settings, else 1."""
    try:
        yield
    except SettingsError as e:
        click.echo(f"gage-worker: error: {e}", err=True)
        sys.exit(2)
    except GageRunsError as e:
        click.echo(f"gage-worker: error: {e}", err=True)
        sys.exit(1)
