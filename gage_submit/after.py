"""`--after RUN...`: the runs a new run waits for, selected as every command selects runs.

A spec is what `gage-submit show` takes (index, id, id prefix, name,
name prefix, a slice `a:b` of the newest-first listing), or
`label:TEXT`: every run with exactly that label, such as a grid
submitted earlier with `--label`. A spec that selects nothing is bad
input; so is a run that is not staged or submitted (nothing would end it).
"""

from __future__ import annotations

from gage_runs.runs_dir import list_runs, select_runs
from gage_runs.sidecars import run_label

from .errors import SubmitError


def resolve_after(runs_dir: str, specs: tuple[str, ...]) -> tuple[str, ...]:
    """The ids the specs select, in the order named, each once."""
    if not specs:
        return ()
    from gage_queue.depends import LABEL

    ids: dict[str, None] = {}
    labelled = None
    for spec in specs:
        if spec.startswith(LABEL):
            text = spec[len(LABEL):]
            if labelled is None:
                labelled = [(run.id, run_label(run)) for run in list_runs(runs_dir)]
            matched = [run_id for run_id, label in reversed(labelled) if label == text]
            if not matched:
                raise SubmitError(f"--after {spec}: no run has the label {text!r}")
        else:
            matched = [run.id for run in select_runs(runs_dir, [spec])]
        ids.update(dict.fromkeys(matched))
    return tuple(ids)
