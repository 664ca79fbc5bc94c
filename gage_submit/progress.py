"""Run lines and a progress bar: rich where a terminal is attached, plain lines otherwise.

A run line is `STATUS NAME ID [DETAIL]`, the status padded to 10
characters: the same words and order on a terminal (in colour) and in a
pipe, so scripts can read it. The bar (terminal only) sits below the
lines and goes away when done.

Without a bar (one run), a line on a terminal is written as rich would
write it (`sgr_line`: its colours as SGR codes), so a one-run submit does
not import rich (about 60 ms on a 2-core machine, a third of the submit);
rich writes it where anything could make its output differ: NO_COLOR,
FORCE_COLOR and its other settings, a dumb terminal, text that is not
ASCII or has an emoji code (`:name:`), a line as wide as the terminal.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from types import TracebackType
from typing import IO, Any

from gage_queue.states import RunState
from gage_runs.types import Run

from .term import STATUS_STYLES, console, is_terminal, styled_status

STATUS_WIDTH = 10
# rich's SGR codes of the styles run lines use (the same in every colour system)
SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
       "magenta": "35", "cyan": "36"}
# Settings that change what rich writes (besides TERM, below)
RICH_SETTINGS = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                 "JUPYTER_COLUMNS", "JUPYTER_LINES")


def run_line(status: RunState, run: Run, detail: str = "") -> str:
    """The plain text of a run line; the detail escaped (`gage_queue.text.shown`: callers
    bound each part of it, so it is not cut)."""
    from gage_queue.text import shown

    return f"{status:<{STATUS_WIDTH}} {shown(run.name)}  {run.id}  {shown(detail, None)}".rstrip()


def sgr_line(status: RunState, run: Run, detail: str = "",
             environ: dict[str, str] | None = None) -> str | None:
    """The run line as rich writes it on a terminal (`RunLines.line`), or None where only
    rich knows what it would write (see the module's doc)."""
    from gage_queue.text import shown

    env = os.environ if environ is None else environ
    style = STATUS_STYLES.get(status, "")
    if (any(name in env for name in RICH_SETTINGS)
            or env.get("TERM", "").strip().lower() in ("dumb", "unknown")
            or not all(word in SGR for word in style.split())):
        return None
    text = run_line(status, run, detail)
    if not text.isascii() or ":" in text or len(text) >= _terminal_width(env):
        return None
    pad = " " * max(0, STATUS_WIDTH - len(status))
    return (f"{_sgr(status, style)}{pad} {_sgr(shown(run.name), 'bold')}"
            f"  {_sgr(run.id, 'dim')}  {shown(detail, None)}").rstrip()


def _sgr(text: str, style: str) -> str:
    codes = ";".join(SGR[word] for word in style.split())
    return f"\x1b[{codes}m{text}\x1b[0m" if codes and text else text


def _terminal_width(env: Any) -> int:
    """The width rich gives its console: COLUMNS, else the first standard stream's
    terminal, else 80."""
    columns = env.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (OSError, ValueError):
            continue
    return 80


def run_ref(run: Run) -> str:
    """How messages name a run: `gidik-livih (1a2b3c4d)`."""
    return f"{run.name} ({run.id[:8]})"


RUNNING_NAMED = 3
"""How many running runs the bar of `wait` names."""


def waiting_description(states: dict[str, RunState], runs: dict[str, Run]) -> str:
    """What a bar says while runs are waited for: the running ones by name and op first,
    then the counts of the rest: `3 running: lapis-x (train), ... +1; 2 queued, 1 completed`.

    `states` and `runs` are by run id; run text is escaped (`gage_queue.text.shown`).
    """
    from gage_queue.text import shown

    running = [runs[run_id] for run_id, state in states.items() if state is RunState.RUNNING]
    others = status_counts({k: v for k, v in states.items() if v is not RunState.RUNNING})
    if not running:
        return others
    named = ", ".join(f"{run.name} ({shown(run.opref.op_name, 16)})"
                      for run in running[:RUNNING_NAMED])
    more = f" +{len(running) - RUNNING_NAMED}" if len(running) > RUNNING_NAMED else ""
    described = f"{len(running)} running: {named}{more}"
    return f"{described}; {others}" if others else described


def status_counts(statuses: dict[str, RunState]) -> str:
    """`2 running, 1 queued, 3 completed`: counts by status, most first."""
    counts = Counter(statuses.values())
    return ", ".join(f"{n} {status}" for status, n in counts.most_common())


class RunLines:
    """Prints run lines and, on a terminal with more than one run, a progress bar."""

    def __init__(self, out: IO[str], total: int, description: str, *, quiet: bool = False):
        self._out = out
        self._quiet = quiet
        self._terminal = is_terminal(out) and not quiet
        # rich only for a bar, or a line `sgr_line` cannot write
        self._console: Any = console(out) if self._terminal and total > 1 else None
        self._progress: Any = None
        self._total = total
        self._description = description

    def __enter__(self) -> RunLines:
        if self._console is not None and self._total > 1:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self._console, transient=True,
                redirect_stdout=False, redirect_stderr=False,
            )
            self._task = self._progress.add_task(self._description, total=self._total)
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def line(self, status: RunState, run: Run, detail: str = "") -> None:
        """Print one run line (nothing when quiet)."""
        if self._quiet:
            return
        if not self._terminal:
            print(run_line(status, run, detail), file=self._out, flush=True)
            return
        if self._console is None:
            text = sgr_line(status, run, detail)
            if text is not None:
                print(text, file=self._out, flush=True)
                return
            self._console = console(self._out)
        from rich.markup import escape

        from gage_queue.text import shown

        pad = " " * max(0, STATUS_WIDTH - len(status))
        self._console.print(
            f"{styled_status(status)}{pad} [bold]{escape(shown(run.name))}[/]  [dim]{run.id}[/]"
            f"  {escape(shown(detail, None))}".rstrip()
        )

    def notice(self, message: str) -> None:
        """A notice for stderr (`PROG: message`). While the bar is live and stderr is the
        terminal too, it goes through the bar's console, which prints it above the bar
        and draws the bar again below it: a plain write to stderr would garble the bar."""
        from gage_submit import PROG

        text = f"{PROG}: {message}"
        if self._progress is not None and is_terminal(sys.stderr):
            from rich.markup import escape

            self._progress.console.print(f"[yellow]{escape(text)}[/]", soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def update(self, completed: int, description: str | None = None) -> None:
        """Move the bar (terminal only)."""
        if self._progress is not None:
            from rich.markup import escape

            self._progress.update(
                self._task, completed=completed,
                description=escape(description or self._description),
            )
