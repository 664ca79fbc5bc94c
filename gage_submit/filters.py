"""Selecting runs by status, op, label and schedule: the one filter of `list`, `cancel`
and `compare`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gage_queue.states import RunState
from gage_runs.types import Run


@dataclass(frozen=True)
class RunFilter:
    """Which runs to keep; an empty field keeps every run.

    `statuses` may be given as names (click's choices); they are kept as states.
    """

    statuses: tuple[RunState, ...] = ()
    ops: tuple[str, ...] = ()
    label: str | None = None
    schedule: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "statuses", tuple(RunState(s) for s in self.statuses))

    def __bool__(self) -> bool:
        return bool(self.statuses or self.ops or self.label is not None or self.schedule)

    def keeps_ops(self, op_names: Iterable[str]) -> bool:
        """True if a run of an op with these names (name, full name) is of `ops`."""
        return not self.ops or not set(self.ops).isdisjoint(op_names)

    def matches(self, op_names: Iterable[str], label: str | None, status: RunState,
                schedule: str | None) -> bool:
        """The rule, given what a run is: its op's names, label, status and schedule entry."""
        return (
            self.keeps_ops(op_names)
            and (self.label is None or self.label in (label or ""))
            and (self.schedule is None or schedule == self.schedule)
            and (not self.statuses or status in self.statuses)
        )

    def keeps(self, run: Run) -> bool:
        """`matches` for a run, reading only what the filter asks about."""
        from gage_queue.queue_meta import read_submitted
        from gage_queue.snapshots import run_state
        from gage_runs.sidecars import run_label

        opref = run.opref
        op_names = (opref.op_name, opref.get_full_name())
        if not self.keeps_ops(op_names):  # known without a read
            return False
        return self.matches(
            op_names,
            run_label(run) if self.label is not None else None,
            run_state(run) if self.statuses else RunState.UNKNOWN,
            (read_submitted(run) or {}).get("schedule") if self.schedule is not None else None,
        )

    def describe(self) -> str:
        """`op train, label 'base', queued or running` for messages."""
        parts = [f"op {' or '.join(self.ops)}"] if self.ops else []
        if self.label is not None:
            parts.append(f"label {self.label!r}")
        if self.schedule is not None:
            parts.append(f"schedule {self.schedule!r}")
        if self.statuses:
            parts.append(" or ".join(self.statuses))
        return ", ".join(parts)
