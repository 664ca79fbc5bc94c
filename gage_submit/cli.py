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
    gage-submit priority RUN... P               change the priority of runs not yet started
    gage-submit pool [--json]                   workers, their runs and GPUs, who waits and why
    gage-submit compare [RUN...] [--sort -M]    flags and metrics of runs side by side

A RUN is a run id, id prefix, name or name prefix, or an index (`1` is the
latest run) or a slice (`1:5`) of the newest-first listing, as in Gage.
Only submit, rerun and queue talk to the broker; the others read the runs
dir, and cancel and priority write there for the workers to act on.

Each command is a module of `gage_submit.commands`, loaded only when it
runs. Exit codes are `gage_queue.exits`': 0 success; 1 a run did not
complete (error, terminated, lost), could not be staged, or something
unexpected failed; 2 bad input; 3 the broker is unreachable (the runs stay
queued and reconcile sends them); 4 `wait --timeout` expired; 130
interrupted. Errors are one line on stderr, `gage-submit: error: ...`.
Only `cancel` with a filter asks, and only on a terminal (`--yes` skips
the question).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from gage_submit import PROG

DISTRIBUTION = "gage-queue"  # `--version` is its version, from the installed metadata

COMMANDS = {  # name -> (its module in gage_submit.commands, loaded when used; its short help)
    "submit": ("submit", "Stage runs of an op and queue them (the default command)."),
    "list": ("list", "List runs with their status."),
    "show": ("show", "Show one run in full: status, host, times, config."),
    "status": ("show", "Show one run in full: status, host, times, config."),
    "logs": ("logs", "Print a run's output; -f follows it."),
    "wait": ("wait", "Wait for runs to end."),
    "cancel": ("cancel", "Cancel queued or running runs."),
    "rerun": ("rerun", "Run a run again from its staged source code, flags changed."),
    "queue": ("queue", "Queue runs staged by `gage run --stage`."),
    "priority": ("priority", "Change the priority of queued runs not yet started."),
    "pool": ("pool", "Show the workers, their runs and GPUs, and who waits."),
    "compare": ("compare", "Compare runs' flags and metrics side by side."),
    "view": ("view", "Serve a web page of runs, their output and the pool."),
}
"""`--help` lists the short helps from here, so it loads no command module; a test
holds them equal to each command's own."""
# click >= 8.2 raises this for a bare `gage-submit`; older versions print the help.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Commands(click.Group):
    """The commands, each loaded from its module when used; a first word that is not a
    command is an op to submit."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"{__package__}.commands.{COMMANDS[name][0]}").command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version"):
            args = ["submit", *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        """The first word completes to a command or, as it may be one, an op of the project."""
        items = super().shell_complete(ctx, incomplete)
        if incomplete.startswith("-"):
            return items
        from .completion import op_items

        commands = {item.value for item in items}
        return [*items, *(item for item in op_items(ctx, incomplete) if item.value not in commands)]

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(PROG, "OP [NAME=VALUE]... [OPTIONS]\n       gage-submit COMMAND ...")


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name=DISTRIBUTION, prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Submit Gage ops to a pool of workers, and watch and manage their runs.

    `gage-submit train lr=0.01` stages a run of `train` as `gage run train
    lr=0.01` would, and queues it for a worker. Run `gage-submit submit -h`
    for the submit options.
    """
    from gage_runs.fsmode import check_shared_mode

    check_shared_mode()


def main(argv: list[str] | None = None) -> None:
    """The `gage-submit` console script."""
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run the command line; the exit code (`gage_queue.exits`). Errors are printed as one line."""
    from gage_queue.exits import run_command

    return run_command(PROG, lambda: _invoke(argv))


def _invoke(argv: list[str] | None) -> Any:
    try:
        return cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except _NO_ARGS_IS_HELP as e:
        click.echo(e.ctx.get_help())
        return 0


def __getattr__(name: str) -> Any:
    if name == "STATUSES":  # every state's name, as `list --status` offers them
        from .commands.common import STATUSES

        return STATUSES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
