"""`gage-submit compare`: runs side by side with their flags and summary metrics.

Flags are each run's `config.json`; metrics are the `metrics` of its
`summary.json` (written at finalize, as Gage writes it), where a value is
a scalar or `{"value": ...}`. A metric named like a flag is shown as
`metric:NAME`. Output is a plain table, CSV or JSON.

The plain table escapes every cell and column name as all run text is
shown (`gage_queue.text.shown`: control characters escaped, a cell cut
at SHOWN_LIMIT characters). JSON and CSV are data and stay exact (JSON
escapes control characters itself, CSV quotes line breaks), but for CSV
written to a terminal, which is escaped as the table is, uncut.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import IO, Any

from gage_queue.snapshots import run_state
from gage_queue.states import RunState
from gage_queue.text import shown
from gage_runs.errors import RunFormatError
from gage_runs.meta import meta_config, run_summary
from gage_runs.types import Run

from .errors import SubmitError

RUN_COLUMNS = ("run", "op", "status")
METRIC_PREFIX = "metric:"


@dataclass(frozen=True)
class Compared:
    """One run's row: who it is, its flags and its metrics."""

    id: str
    name: str
    op: str
    status: RunState
    flags: dict[str, Any]
    metrics: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "op": self.op, "status": self.status,
            "flags": self.flags, "metrics": self.metrics,
        }


def compared(run: Run, namespace: str | None = None) -> Compared:
    """A run's row (a run without config.json has no flags)."""
    try:
        flags = meta_config(run)
    except RunFormatError:
        flags = {}
    metrics = {
        str(name): _metric_value(value)
        for name, value in run_summary(run).get_metrics().items()
    }
    opref = run.opref
    op = opref.op_name if opref.op_ns == namespace else opref.get_full_name()
    return Compared(run.id, run.name, op, run_state(run), flags, metrics)


def _metric_value(value: Any) -> Any:
    return value.get("value") if isinstance(value, dict) else value


@dataclass(frozen=True)
class Table:
    """The runs' rows and the flag and metric columns they have between them."""

    rows: list[Compared]
    flag_names: list[str]
    metric_names: list[str]

    @property
    def columns(self) -> list[str]:
        return [*RUN_COLUMNS, *self.flag_names, *map(self.metric_column, self.metric_names)]

    def metric_column(self, name: str) -> str:
        return METRIC_PREFIX + name if name in self.flag_names else name

    def cells(self, row: Compared) -> list[Any]:
        return [
            row.name, row.op, row.status,
            *(row.flags.get(name) for name in self.flag_names),
            *(row.metrics.get(name) for name in self.metric_names),
        ]

    def value(self, row: Compared, column: str) -> Any:
        """A row's value in a column named as `columns` names it (or a bare metric name)."""
        if column.startswith(METRIC_PREFIX):
            return row.metrics.get(column[len(METRIC_PREFIX):])
        if column in self.metric_names and column not in self.flag_names:
            return row.metrics.get(column)
        if column in self.flag_names:
            return row.flags.get(column)
        return dict(zip(RUN_COLUMNS, (row.name, row.op, row.status), strict=True)).get(column)


def make_table(rows: list[Compared]) -> Table:
    flag_names = sorted({name for row in rows for name in row.flags})
    metric_names = sorted({name for row in rows for name in row.metrics})
    return Table(rows, flag_names, metric_names)


def sort_table(table: Table, key: str) -> Table:
    """Rows sorted by a column (`-NAME`: descending); runs without a value last.

    SubmitError for a column no run has.
    """
    descending = key.startswith("-")
    column = key.lstrip("-+")
    if column not in table.columns and column not in table.metric_names:
        raise SubmitError(
            f"cannot sort by {column!r}: no run has it (columns: {', '.join(table.columns)})"
        )
    present = [row for row in table.rows if table.value(row, column) is not None]
    missing = [row for row in table.rows if table.value(row, column) is None]
    present.sort(key=lambda row: _sort_key(table.value(row, column)), reverse=descending)
    return Table([*present, *missing], table.flag_names, table.metric_names)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers before everything else, each kind in its own order."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def write_plain(table: Table, out: IO[str]) -> None:
    """Columns two spaces apart, `-` for a missing value; escaped (`shown`)."""
    rows = [[shown(column) for column in table.columns],
            *([shown(format_cell(c)) or "-" for c in table.cells(r)] for r in table.rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(table.columns))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip(), file=out)


def write_csv(table: Table, out: IO[str]) -> None:
    """CSV, exact; escaped (`shown`, uncut) when `out` is a terminal."""
    from .term import is_terminal

    escape = is_terminal(out)

    def cell(text: str) -> str:
        return shown(text, None) if escape else text

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([cell(column) for column in ["id", *table.columns]])
    for row in table.rows:
        writer.writerow([row.id, *(cell(format_cell(c)) for c in table.cells(row))])


def write_json(table: Table, out: IO[str]) -> None:
    json.dump([row.as_json() for row in table.rows], out, indent=2, sort_keys=True)
    out.write("\n")
