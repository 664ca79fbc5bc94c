"""Exit codes of both commands, and which error gets which: one table.

| code | meaning |
|---|---|
| 0 | done (for `wait`: every run completed) |
| 1 | failed: a run did not complete, a file could not be written, a bug |
| 2 | bad input: a flag, a setting, a Gage file, a run that does not exist |
| 3 | the broker cannot be reached |
| 4 | `wait` timed out |
| 130 | interrupted (Ctrl-C) |
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

OK = 0
FAILED = 1
USAGE = 2
BROKER = 3
TIMEOUT = 4
INTERRUPTED = 130


def exit_code_for(error: BaseException) -> int:
    """The exit code for an error raised out of a command."""
    import click

    from gage_queue.errors import BrokerUnavailable, CommandFailed, Interrupted, TimedOut
    from gage_runs.errors import GageRunsError

    if isinstance(error, (click.Abort, KeyboardInterrupt, Interrupted)):
        return INTERRUPTED
    if isinstance(error, click.UsageError):
        return USAGE
    if isinstance(error, click.ClickException):
        return error.exit_code
    if isinstance(error, BrokerUnavailable):
        return BROKER
    if isinstance(error, TimedOut):
        return TIMEOUT
    if isinstance(error, CommandFailed):
        return FAILED
    if isinstance(error, GageRunsError):
        return USAGE
    return FAILED


def error_message(error: BaseException) -> str:
    """The error as users read it (made one line by `run_command`)."""
    import click

    if isinstance(error, (click.Abort, KeyboardInterrupt)):
        return "interrupted"
    if isinstance(error, click.ClickException):
        return error.format_message()
    from gage_runs.errors import GageRunsError

    if isinstance(error, GageRunsError):
        return str(error)
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror or error}{where}"
    return f"unexpected {type(error).__name__}: {error}"


def run_command(prog: str, invoke: Callable[[], Any]) -> int:
    """The exit code of `invoke()`; any error printed as one line `PROG: error: ...`."""
    try:
        result = invoke()
    except (Exception, KeyboardInterrupt) as e:  # every error is one line and a code
        return report(prog, error_message(e), exit_code_for(e))
    return result if isinstance(result, int) else OK


def report(prog: str, message: str, code: int) -> int:
    """Print `message` as one line of `prog`'s errors; `code`.

    Whitespace runs become one space and any other control character is
    escaped (`gage_queue.text.shown`): a message may quote what a user
    typed or a run's files hold.
    """
    from gage_queue.text import shown

    print(f"{prog}: error: {shown(' '.join(str(message).split()), None)}", file=sys.stderr)
    return code
