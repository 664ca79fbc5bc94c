"""The keeper part that puts a run's `depends` in its dir right before it starts.

The submit resolved which runs (`gage_queue.depends`); the placement pass
released the run once they ended. Here, under the run lock, after the
integrity check (the last part before the command): each `run-files`
run's files are copied in, each runs summary is written, and the new
files are logged as `d` entries of `log/files` and the staged manifest
rewritten, so `gage show` lists them as dependencies. A run whose
dependency was deleted, or whose files cannot be copied, ends `error`
without running (`cannot-start`), saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gage_queue.depends import ResolvedDependency, read_depends
from gage_queue.snapshots import queue_state
from gage_runs.depends import RUN_FILES, copy_run_files, log_dependency_files, write_runs_summary
from gage_runs.errors import GageRunsError, RunLookupError
from gage_runs.meta import meta_config, meta_timestamp, run_summary
from gage_runs.names import run_name_for_id
from gage_runs.runs_dir import resolve_run_id
from gage_runs.sidecars import run_label
from gage_runs.types import Run
from gage_worker.keeper.parts import Part

if TYPE_CHECKING:
    from gage_worker.keeper.keeper import Keeper


class DependencyError(GageRunsError):
    """A dependency's files cannot be put in the run's dir: the run cannot start."""


class DependsPart(Part):
    def acquire(self, keeper: Keeper) -> None:
        try:
            resolved = read_depends(keeper.run)
            for dep in resolved:
                _put_in_place(keeper.run, dep)
            if resolved:
                log_dependency_files(keeper.run)
        except (OSError, ValueError) as e:
            raise DependencyError(f"its dependencies could not be put in place: {e}") from None


def _put_in_place(run: Run, dep: ResolvedDependency) -> None:
    if dep.type == RUN_FILES:
        try:
            source = resolve_run_id(run.runs_dir, dep.runs[0])
        except RunLookupError:
            raise DependencyError(
                f"dependency {run_name_for_id(dep.runs[0])} ({dep.select}) was deleted"
            ) from None
        copy_run_files(run, source, list(dep.files))
    else:
        write_runs_summary(run, dep.summary_filename, [_row(run, r) for r in dep.runs])


def _row(run: Run, run_id: str) -> dict[str, Any]:
    """What a runs summary says of one run (a deleted one: its id, name and status)."""
    try:
        other = resolve_run_id(run.runs_dir, run_id)
    except RunLookupError:
        return {"id": run_id, "name": run_name_for_id(run_id), "status": "deleted"}
    state = queue_state(other)
    summary = run_summary(other)
    return {
        "id": other.id,
        "name": other.name,
        "operation": other.opref.op_name,
        "label": run_label(other, summary),
        "status": state.state.value,
        "exit_code": state.record.exit_code if state.record else None,
        "started": meta_timestamp(other, "started"),
        "stopped": meta_timestamp(other, "stopped"),
        "run_dir": other.run_dir,
        "config": meta_config(other),
        "attributes": summary.get_attributes(),
        "metrics": summary.get_metrics(),
    }
