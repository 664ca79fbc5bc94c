"""Which run a run reruns: `<id>.meta/queue/rerun-of` holds the old run's id."""

from __future__ import annotations

from gage_queue.layout import RERUN_OF, queue_file
from gage_runs.fsmode import write_text
from gage_runs.types import Run


def write_rerun_of(run: Run, source: Run) -> None:
    write_text(queue_file(run, RERUN_OF), source.id, readonly=False)


def read_rerun_of(run: Run) -> str | None:
    """The id of the run this run reruns, or None."""
    try:
        with open(queue_file(run, RERUN_OF)) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None
