"""Tables and run details: rich with colour on a terminal, plain stable text otherwise.

Plain output is for scripts and pipes: a header line, then one line per
run with the columns in a fixed order, padded with spaces, `-` for an
empty cell, and the free-text label last. `--json` is the format to parse.

Every text read from a run (names, ops, hosts, reasons, labels, config,
summaries) is escaped before it is shown, on a terminal and in a pipe
alike (`gage_queue.text.shown`): control characters as visible escapes,
a field cut at SHOWN_LIMIT characters. `--json` stays exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

from gage_queue.durations import format_duration
from gage_queue.snapshots import read_queue_state
from gage_queue.states import RunState, exit_words
from gage_queue.text import SHOWN_LIMIT, shown
from gage_runs.meta import meta_exit_code, meta_timestamp
from gage_runs.types import Run

from .info import RunInfo, short_time
from .term import console, is_terminal, styled_status

TABLE_COLUMNS = (
    "#", "name", "op", "started", "time", "status", "host", "worker", "reason", "label",
)
# On a terminal too narrow for every column, these go first, in this order.
DROPPED_FIRST = ("worker", "started", "host", "op", "time", "reason")


def table_row(index: int, info: RunInfo) -> tuple[str, ...]:
    """A run's cells in TABLE_COLUMNS order: how long it took, where it ran, why it ended;
    escaped (`shown`)."""
    took = format_duration(info.duration)
    return tuple(shown(cell) for cell in (
        str(index), info.name, info.op, short_time(info.started), took, str(info.status),
        info.host or "", info.node or "", info.reason or "", info.label or "",
    ))


def fit_columns(columns: tuple[str, ...], cells: list[tuple[str, ...]], width: int
                ) -> list[int]:
    """Indexes of the columns that fit in `width`, dropping DROPPED_FIRST in order."""
    widths = [max([len(column), *(len(row[i]) for row in cells)])
              for i, column in enumerate(columns)]
    kept = list(range(len(columns)))

    def needed() -> int:
        return sum(widths[i] for i in kept) + 2 * (len(kept) - 1)

    for name in DROPPED_FIRST:
        if needed() <= width:
            break
        kept.remove(columns.index(name))
    return kept


def print_runs_table(rows: list[tuple[int, RunInfo]], out: IO[str]) -> None:
    """The runs table: rich on a terminal, plain columns otherwise."""
    cells = [table_row(index, info) for index, info in rows]
    if is_terminal(out):
        _rich_table(cells, out)
    else:
        out.write("".join(f"{line}\n" for line in plain_table([TABLE_COLUMNS, *cells])))


def plain_table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    """Rows padded into columns two spaces apart; `-` marks an empty cell."""
    rows = [tuple(cell or "-" for cell in row) for row in rows]
    if not rows:
        return []
    widths = [max(map(len, column)) for column in list(zip(*rows, strict=True))[:-1]]
    line = "  ".join([*(f"{{:<{width}}}" for width in widths), "{}"])
    return [line.format(*row).rstrip() for row in rows]


def _rich_table(cells: list[tuple[str, ...]], out: IO[str]) -> None:
    from rich.markup import escape
    from rich.table import Table

    screen = console(out)
    kept = fit_columns(TABLE_COLUMNS, cells, screen.width)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in kept:
        column = TABLE_COLUMNS[i]
        table.add_column(column, no_wrap=column != "label", style="dim" if column == "#" else "")
    status_col = TABLE_COLUMNS.index("status")
    for row in cells:
        table.add_row(*(styled_status(row[i]) if i == status_col else escape(row[i]) for i in kept))
    screen.print(table)


def detail_fields(info: RunInfo) -> list[tuple[str, str]]:
    """`show`'s fields as (name, text) pairs, empty ones left out; escaped (`shown`)."""
    fields = [
        ("id", info.id),
        ("name", info.name),
        ("operation", info.op),
        ("status", str(info.status)),
        ("exit code", "" if info.exit_code is None else str(info.exit_code)),
        ("reason", info.reason or ""),
        ("host", info.host or ""),
        ("worker", info.node or ""),
        ("label", info.label or ""),
        ("queue", info.queue or ""),
        ("schedule", info.schedule or ""),
        ("rerun of", info.rerun_of or ""),
        ("time limit", format_duration(info.time_limit)),
        ("submitted", short_time(info.submitted)),
        ("started", short_time(info.started)),
        ("stopped", short_time(info.stopped)),
        ("duration", format_duration(info.duration)),
        ("run dir", info.run_dir),
    ]
    return [(name, shown(text, None if name == "run dir" else SHOWN_LIMIT))
            for name, text in fields if text]


def detail_sections(info: RunInfo) -> list[tuple[str, dict[str, Any]]]:
    """`show`'s nested sections: config, then the summary's attributes and metrics."""
    sections = [("config", info.config or {})]
    for name in ("attributes", "metrics"):
        value = info.summary.get(name)
        if isinstance(value, dict) and value:
            sections.append((name, value))
    return sections


def print_run_detail(info: RunInfo, out: IO[str], *, notes: Iterable[tuple[str, str]] = ()
                     ) -> None:
    """One run in full: `name: value` lines (`notes` after the fields), then indented
    sections."""
    fields = [*detail_fields(info), *notes]
    sections = detail_sections(info)
    if is_terminal(out):
        _rich_detail(info, fields, sections, out)
        return
    width = max(len(name) for name, _ in fields) + 1
    for name, text in fields:
        print(f"{name + ':':<{width}} {text}", file=out)
    for title, values in sections:
        print(f"{title}:", file=out)
        for key in sorted(values):
            print(f"  {shown(key)}: {shown(format_value(values[key]))}", file=out)


def _rich_detail(
    info: RunInfo, fields: list[tuple[str, str]], sections: list[tuple[str, dict[str, Any]]],
    out: IO[str],
) -> None:
    from rich.markup import escape
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for name, text in fields:
        grid.add_row(name, styled_status(text) if name == "status" else escape(text))
    for title, values in sections:
        grid.add_row(f"[bold]{title}[/]", "")
        for key in sorted(values):
            grid.add_row(f"  {escape(shown(key))}", escape(shown(format_value(values[key]))))
    console(out).print(grid)


def format_value(value: Any) -> str:
    """A config or summary value: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def end_line(run: Run) -> str:
    """How a run ended, in one line: `completed in 3m12s`, `error (exit 3)`, ..."""
    state, detail = end_detail(run)
    if state is RunState.COMPLETED:
        started, stopped = meta_timestamp(run, "started"), meta_timestamp(run, "stopped")
        if started and stopped:
            return f"{state} in {format_duration((stopped - started) / 1e6)}"
        return str(state)
    return f"{state} ({detail})" if detail else str(state)


def end_detail(run: Run) -> tuple[RunState, str]:
    """A run's state, and its exit code with why it ended when that says more."""
    state = read_queue_state(run)
    code = state.record.exit_code if state.record else meta_exit_code(run)
    exit_text = "" if code is None else f"exit {code}"
    # left out: a reason that only says what the exit code says (`completed`, `exit 3`)
    said = {exit_text, exit_words(code)} if code is not None and code >= 0 else {exit_text}
    reason = shown(state.reason) if state.reason and state.reason not in said else ""
    return state.state, ": ".join(part for part in (exit_text, reason) if part)


def print_json(data: Any, out: IO[str]) -> None:
    json.dump(data, out, indent=2, sort_keys=True)
    out.write("\n")


def print_output_tail(title: str, lines: list[str], out: IO[str]) -> None:
    """A section of output lines (escaped already) under `title`, indented."""
    if is_terminal(out):
        from rich.markup import escape

        screen = console(out)
        screen.print(f"[bold]{escape(title)}[/]")
        for line in lines:
            screen.print(f"  {escape(line)}", soft_wrap=True)
        return
    print(f"{title}:", file=out)
    for line in lines:
        print(f"  {line}", file=out)
