"""`gage-submit logs RUN [-f]`: a run's output, optionally followed until it ends."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from ..completion import complete_runs
from .common import no_worker_notice, select_run, state_exit_code, write_stdout
from .options import project_options

if TYPE_CHECKING:
    from gage_queue.states import RunState
    from gage_runs.types import Run


@click.command("logs", short_help="Print a run's output; -f follows it.")
@click.argument("spec", metavar="[RUN]", default="1", shell_complete=complete_runs)
@project_options
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the run ends.")
@click.option("--raw", is_flag=True,
              help="Write the output's bytes unchanged (by default control characters are"
              " escaped).")
def command(spec: str, project_dir: str | None, runs_dir: str | None, follow: bool,
            raw: bool) -> int:
    """Print a run's output (default: the latest run's), read from the runs dir.

    Control characters in it are escaped, as in all run text shown
    (`\x1b[31m` prints as those characters), and a `\r` ends a line as in
    Gage's output format; --raw writes the run's bytes as they are.
    """
    from ..info import run_output_path
    from ..watch import copy_output

    run = select_run(spec, project_dir, runs_dir)
    if follow:
        return state_exit_code(follow_run(run, raw=raw))
    write, close = output_writer(raw)
    copy_output(run_output_path(run), 0, write)
    close()
    return 0


def output_writer(raw: bool) -> tuple[Callable[[bytes], None], Callable[[], None]]:
    """How output goes to stdout: escaped (`safe_output`) unless `raw`; write and close."""
    from ..safe_output import EscapedOutput

    if raw:
        return write_stdout, lambda: None
    escaped = EscapedOutput(write_stdout)
    return escaped, escaped.close


def follow_run(run: Run, *, notice_after: float | None = None, raw: bool = False) -> RunState:
    """Print the run's output until it ends, then how it ended (stderr); its state.

    `notice_after` is GAGE_NO_WORKER_NOTICE from settings the caller
    loaded (else they are loaded here, before following).
    """
    from ..progress import run_ref
    from ..render import end_line
    from ..watch import follow_output

    sys.stdout.flush()
    notice = no_worker_notice(after=notice_after)
    write, close = output_writer(raw)
    state = follow_output(run, write, notice=notice)
    close()
    print(f"{run_ref(run)}: {end_line(run)}", file=sys.stderr)
    return state
