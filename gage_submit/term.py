"""The terminal: whether one is attached, a rich console for it, status colours."""

from __future__ import annotations

import sys
from typing import IO, Any

STATUS_STYLES = {
    "completed": "green",
    "error": "red",
    "terminated": "yellow",
    "lost": "bold red",
    "running": "cyan",
    "finalizing": "cyan",
    "queued": "blue",
    "staged": "blue",
    "pending": "dim",
    "unknown": "dim",
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
    """Rich markup for a status in its colour."""
    return f"[{STATUS_STYLES.get(status, '')}]{status}[/]"
