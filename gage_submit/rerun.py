"""`gage-submit rerun`: new runs of an old run's op, staged from the old run's source code
(`gage_runs.restage`). Its config is the old run's overlaid by the new flags (a grid
makes one run per combination). Each new run records the run it came from in
`<id>.meta/queue/rerun-of`.
"""

from __future__ import annotations

from typing import Any

from gage_runs.restage import RunSource, stage_from_run
from gage_runs.types import Run

from .errors import SubmitError
from .lineage import write_rerun_of
from .progress import run_ref


def rerun_source(run: Run) -> RunSource:
    """The old run's op, command and config; SubmitError if it was never staged."""
    from gage_runs.meta import meta_timestamp

    if meta_timestamp(run, "staged") is None:
        raise SubmitError(
            f"run {run_ref(run)} was never staged, so it has no source code to rerun"
        )
    return RunSource.of(run)


def stage_rerun(
    source: RunSource, config: dict[str, Any], runs_dir: str, *, label: str | None = None,
    run_id: str | None = None,
) -> Run:
    """Make and stage a rerun of the old run with `config` (see `stage_from_run`)."""
    return stage_from_run(source, config, runs_dir, label=label, run_id=run_id,
                          before_staging=lambda run: write_rerun_of(run, source.run))
