"""A run line on a terminal without a bar is written without rich, as rich writes it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.markup import escape

from gage_queue.states import RunState
from gage_queue.text import shown
from gage_runs.types import OpRef, Run
from gage_submit.progress import STATUS_WIDTH, RunLines, sgr_line
from gage_submit.term import styled_status

REPO = Path(__file__).resolve().parent.parent
RUN = Run("0f8c7b5e-1d2a-4c3b-9e8f-7a6b5c4d3e2f", OpRef("project", "train"), "/m", "/r",
          "gidik-livih")


class Screen(io.StringIO):
    def isatty(self) -> bool:
        return True


def by_rich(status: RunState, run: Run, detail: str) -> str:
    """What rich writes for the line (the markup `RunLines.line` gives it)."""
    screen = Screen()
    pad = " " * max(0, STATUS_WIDTH - len(status))
    Console(file=screen, highlight=False).print(
        f"{styled_status(status)}{pad} [bold]{escape(shown(run.name))}[/]  [dim]{run.id}[/]"
        f"  {escape(shown(detail, None))}".rstrip())
    return screen.getvalue()


def written(status: RunState, run: Run, detail: str) -> str:
    screen = Screen()
    with RunLines(screen, 1, "Submitting") as lines:
        lines.line(status, run, detail)
    return screen.getvalue()


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLORTERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "120")


@pytest.mark.parametrize("status, detail", [
    (RunState.QUEUED, "lr=0.01 optimizer='adam'"),
    (RunState.QUEUED, ""),
    (RunState.LOST, "lr=[0.1] x=\x1b[31mred"),  # escaped as everywhere
    (RunState.RUNNING, "label 'a [b] c'"),
    *((state, "") for state in RunState),  # every status has its colour, rich or not
])
def test_a_line_is_what_rich_writes(terminal, status, detail):
    text = sgr_line(status, RUN, detail)
    assert text is not None
    assert written(status, RUN, detail) == f"{text}\n" == by_rich(status, RUN, detail)


@pytest.mark.parametrize("env, detail", [
    ({"NO_COLOR": "1"}, "lr=0.01"),
    ({"FORCE_COLOR": "1"}, "lr=0.01"),
    ({"TERM": "dumb"}, "lr=0.01"),
    ({}, "mood=:smile:"),  # rich writes an emoji
    ({}, "name='café'"),
    ({"COLUMNS": "60"}, "lr=0.01 batch=32 optimizer='adam'"),  # rich wraps it
])
def test_rich_writes_what_it_could_write_otherwise(terminal, monkeypatch, env, detail):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sgr_line(RunState.QUEUED, RUN, detail) is None
    assert written(RunState.QUEUED, RUN, detail) == by_rich(RunState.QUEUED, RUN, detail)


def test_a_waiting_run_is_shown_in_its_colour(terminal):
    assert written(RunState.WAITING, RUN, "x=1") == f"\x1b[35mwaiting\x1b[0m    " \
        f"\x1b[1m{RUN.name}\x1b[0m  \x1b[2m{RUN.id}\x1b[0m  x=1\n"


def test_a_status_without_a_colour_is_plain_markup():
    assert styled_status("no-such-status") == "no-such-status"  # not `[]...[/]`, which rich
    assert styled_status(RunState.WAITING) == "[magenta]waiting[/]"  # refuses


ONE_LINE = """\
import io, sys
from gage_queue.states import RunState
from gage_runs.types import OpRef, Run
from gage_submit.progress import RunLines

class Screen(io.StringIO):
    def isatty(self):
        return True

screen = Screen()
run = Run("0f8c7b5e-1d2a-4c3b-9e8f-7a6b5c4d3e2f", OpRef("p", "train"), "/m", "/r", "a-b")
with RunLines(screen, 1, "Submitting") as lines:
    lines.line(RunState.QUEUED, run, "x=1")
assert screen.getvalue().startswith("\\x1b[34mqueued"), screen.getvalue()
assert "rich" not in sys.modules, sorted(m for m in sys.modules if m.startswith("rich"))
"""


def test_a_line_on_a_terminal_loads_no_rich():
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm", COLUMNS="100",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", ONE_LINE], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
