"""The terminal: whether one is attached, a rich console for it, status colours."""

from __future__ import annotations

import sys
from typing import IO, Any

from gage_queue.states import RunState

STATUS_STYLES = {
    RunState.COMPLETED: "green",
    RunState.ERROR: "red",
    RunState.TERMINATED: "yellow",
    RunState.LOST: "bold red",
    RunState.FINALIZE_FAILED: "bold red",
    RunState.RUNNING: "cyan",
    RunState.FINALIZING: "cyan",
    RunState.QUEUED: "blue",
    RunState.WAITING: "magenta",
    RunState.STAGED: "blue",
    RunState.PENDING: "dim",
    RunState.UNKNOWN: "dim",
}


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console(stream: IO[str] | None = None) -> Any:
    """A rich console on `stream` (default stdout); rich is imported only when used."""
    from rich.console import Console

    return Console(file=stream or sys.stdout, highlight=False)


def styled_status(status: str) -> str:
    """Rich markup for a status (a RunState, or its name) in its colour."""
    style = STATUS_STYLES.get(status)
    return f"[{style}]{status}[/]" if style else str(status)
