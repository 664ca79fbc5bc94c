"""Selecting runs by op, label and status, as `list`, `cancel` and `compare` filter them."""

from __future__ import annotations

from dataclasses import dataclass

from gage_queue.snapshots import queue_status
from gage_runs.types import Run


@dataclass(frozen=True)
class RunFilter:
    """Which runs to keep; an empty field keeps every run."""

    ops: tuple[str, ...] = ()
    label: str | None = None
    statuses: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ops or self.label is not None or self.statuses)

    def keeps(self, run: Run, status: str | None = None) -> bool:
        """True if `run` matches: an op by name or full name, a label substring, a status."""
        from gage_runs.sidecars import run_label

        opref = run.opref
        if self.ops and not {opref.op_name, opref.get_full_name()} & set(self.ops):
            return False
        if self.label is not None and self.label not in (run_label(run) or ""):
            return False
        return not self.statuses or (status or queue_status(run)) in self.statuses

    def describe(self) -> str:
        """`op train, label 'base', queued or running` for messages."""
        parts = [f"op {' or '.join(self.ops)}"] if self.ops else []
        if self.label is not None:
            parts.append(f"label {self.label!r}")
        if self.statuses:
            parts.append(" or ".join(self.statuses))
        return ", ".join(parts)
