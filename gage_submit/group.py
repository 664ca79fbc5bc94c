"""The click group of `gage-submit`'s commands, each loaded from its module when used; a
first word that is not a command is an op to submit."""

from __future__ import annotations

import importlib
from typing import Any

import click

from gage_submit import PROG

from .commands import COMMANDS

DISTRIBUTION = "gage-queue"  # `--version` is its version, from the installed metadata

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


def invoke(argv: list[str] | None) -> Any:
    try:
        return cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except _NO_ARGS_IS_HELP as e:
        click.echo(e.ctx.get_help())
        return 0
