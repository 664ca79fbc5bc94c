"""Gage's `depends` of an op: resolved at submit, put in place when the run starts.

Gage 0.1.2 declares `depends` and resolves none. The queue resolves them:

- `project-files`: copied at staging (`gage_runs.depends`); here only
  checked to select at least one project file.
- `run-files`: `run-select` names one run; its files (the `files`
  patterns, else the files it generated) are copied into the new run's
  dir when it starts.
- `runs-summary`: `runs-select` names runs; a JSON file describing them
  (`summary-filename`, default `runs-summary.json`) is written into the
  new run's dir when it starts.

A selection is, in this order:

- `label:TEXT`: the runs with exactly that label (a grid submitted with
  `--label`), as `--after` takes it;
- an operation name of the same project that runs in the runs dir have
  (runs of another project's op of that name are not): for `run-select` the
  newest of them that completed or has not ended yet (one that failed is
  passed over, as Guild takes the latest completed run); for
  `runs-select` all of them;
- else Gage 0.1.2's run selectors (`run_select`): a 1-based index of the
  newest-first listing, a slice `a:b`, or a run id, id prefix, name or
  name prefix. `run-select` takes one run (the newest of a label or slice).

A selected run that has not ended is waited for, as with `--after`:
`run-files` needs it to complete (else the new run ends terminated,
"dependency NAME ended error"); `runs-summary` takes its runs however
they end and lists each with its status. A selection of nothing is bad
input. The selection is made once per submit, for all its runs: runs
made after it are not in it.

The submit (or the scheduler, for a schedule job) writes the selection
to `<id>.meta/queue/depends.json` before the run is queued, read-only
and its own: the run's keeper refuses a run whose file is someone else's
(the file decides what files the run gets), and puts the files in place
once the runs ended (`gage_worker.keeper.depends`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import NoReturn

from gage_queue.errors import QueueError
from gage_queue.layout import DEPENDS, queue_file
from gage_queue.requests import RunRequest
from gage_queue.snapshots import run_state
from gage_queue.states import FINISHED, RunState
from gage_runs.depends import (
    DEFAULT_SUMMARY_FILENAME,
    PROJECT_FILES,
    RUN_FILES,
    RUNS_SUMMARY,
    is_relative_inside,
)
from gage_runs.errors import RunLookupError
from gage_runs.file_select import select_files
from gage_runs.fsmode import write_text
from gage_runs.names import is_run_id
from gage_runs.runs_dir import list_runs, select_runs
from gage_runs.sidecars import run_label
from gage_runs.types import OpDef, OpDefDependency, OpRef, Run

LABEL = "label:"  # a selection of every run with a label


class DependsError(QueueError):
    """A dependency selects nothing, or is not one the queue knows: bad input."""


@dataclass(frozen=True)
class ResolvedDependency:
    """One `run-files` or `runs-summary` entry of an op's `depends`, its selection made."""

    type: str  # RUN_FILES or RUNS_SUMMARY
    select: str  # the `run-select` / `runs-select` as written, for messages
    runs: tuple[str, ...]  # run ids: one for run-files, oldest first for runs-summary
    files: tuple[str, ...] = ()  # run-files patterns (none: the files it generated)
    summary_filename: str = DEFAULT_SUMMARY_FILENAME

    def as_json(self) -> dict[str, object]:
        return {"type": self.type, "select": self.select, "runs": list(self.runs),
                "files": list(self.files), "summary_filename": self.summary_filename}


@dataclass(frozen=True)
class Depends:
    """An op's dependencies, resolved: what to record, and the runs to wait for."""

    resolved: tuple[ResolvedDependency, ...] = ()
    after: tuple[str, ...] = ()  # the selected runs that have not ended as they must yet
    any_end: tuple[str, ...] = ()  # those of `after` that may end any way (runs-summary)

    def applied_to(self, request: RunRequest) -> RunRequest:
        """`request` also waiting for these runs (its own `after` wins: a run named there
        must complete even if a runs-summary selects it too)."""
        after = tuple(dict.fromkeys((*request.after, *self.after)))
        any_end = tuple(r for r in self.any_end if r not in request.after)
        return replace(request, after=after, any_end=any_end)


def resolve_depends(opdef: OpDef, opref: OpRef, runs_dir: str,
                    project_dir: str | None) -> Depends:
    """Resolve the op's `depends` against the runs dir; DependsError if one selects
    nothing. An op name selects runs of the same project (`opref`'s namespace).
    `project_dir` None (a rerun, a retry): project files come from the old run."""
    resolver = _Resolver(opdef, opref, runs_dir)
    for dep in opdef.get_dependencies():
        kind = dep.get_type()
        if kind == PROJECT_FILES:
            if project_dir is not None:
                _check_project_files(opdef, dep, project_dir, runs_dir)
        elif kind in (RUN_FILES, RUNS_SUMMARY):
            resolver.resolve(dep, kind)
        else:
            raise DependsError(f"operation {opdef.name}: unknown dependency type {kind!r}")
    return resolver.depends()


def write_depends(run: Run, resolved: tuple[ResolvedDependency, ...]) -> None:
    """Record the run's resolved dependencies (nothing if none), read-only."""
    if resolved:
        write_text(queue_file(run, DEPENDS), json.dumps(
            [dep.as_json() for dep in resolved], indent=2, sort_keys=True))


def read_depends(run: Run) -> tuple[ResolvedDependency, ...]:
    """The run's resolved dependencies; none if it has none. ValueError if unreadable."""
    try:
        with open(queue_file(run, DEPENDS), "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"unreadable {DEPENDS}: {e}") from None
    if not isinstance(data, list):
        _bad(data)
    return tuple(_decode(item) for item in data)


class _Resolver:
    """One op's selections against one listing of the runs dir; each run's state read once."""

    def __init__(self, opdef: OpDef, opref: OpRef, runs_dir: str):
        self.opdef = opdef
        self.opref = opref
        self.runs_dir = runs_dir
        self.resolved: list[ResolvedDependency] = []
        self.selected: dict[str, Run] = {}
        self._states: dict[str, RunState] = {}

    @cached_property
    def listing(self) -> list[Run]:
        return list_runs(self.runs_dir)

    @cached_property
    def project_runs(self) -> list[Run]:
        return [run for run in self.listing if run.opref.op_ns == self.opref.op_ns]

    def resolve(self, dep: OpDefDependency, kind: str) -> None:
        spec = (dep.get_run_select() if kind == RUN_FILES else dep.get_runs_select()) or ""
        what = f"operation {self.opdef.name} depends on {kind} {spec!r}"
        runs = self._select(spec, what, one=kind == RUN_FILES)
        self.selected.update((run.id, run) for run in runs)
        if kind == RUN_FILES:
            self.resolved.append(ResolvedDependency(kind, spec, (runs[0].id,),
                                                    tuple(dep.get_files())))
        else:
            self.resolved.append(ResolvedDependency(
                kind, spec, tuple(run.id for run in reversed(runs)),
                summary_filename=_summary_filename(dep, what)))

    def depends(self) -> Depends:
        """The selections, and the selected runs still to wait for: run-files' until
        completed, the others' until ended (a run-files run that ended otherwise is waited
        for too: the wait ends the run)."""
        strict = {r for dep in self.resolved if dep.type == RUN_FILES for r in dep.runs}
        after = tuple(
            run_id for run_id in dict.fromkeys(r for dep in self.resolved for r in dep.runs)
            if (state := self._state(self.selected[run_id])) is not RunState.COMPLETED
            and (run_id in strict or state not in FINISHED))
        return Depends(tuple(self.resolved), after, tuple(r for r in after if r not in strict))

    def _select(self, spec: str, what: str, *, one: bool) -> list[Run]:
        """The runs `spec` selects, newest first; `one`: just the one a run-select means
        (of an op's runs, the newest that may complete)."""
        if not spec:
            raise DependsError(f"{what}: the selection is empty")
        if spec.startswith(LABEL):
            runs = [run for run in self.listing if run_label(run) == spec[len(LABEL):]]
        elif of_op := [run for run in self.project_runs if run.opref.op_name == spec]:
            if not one:
                return of_op
            may_complete = [run for run in of_op if self._may_complete(run)][:1]
            if not may_complete:
                raise DependsError(
                    f"{what}: no run of {spec} completed or is still to run; submit one first")
            return may_complete
        else:
            try:
                runs = select_runs(self.runs_dir, [spec])
            except RunLookupError as e:
                raise DependsError(f"{what}: {e}") from None
        if not runs:
            raise DependsError(f"{what}: it selects no run; submit that run first")
        return runs[:1] if one else runs

    def _may_complete(self, run: Run) -> bool:
        state = self._state(run)
        return state is RunState.COMPLETED or state not in FINISHED

    def _state(self, run: Run) -> RunState:
        if run.id not in self._states:
            self._states[run.id] = run_state(run)
        return self._states[run.id]


def _summary_filename(dep: OpDefDependency, what: str) -> str:
    name = dep.get_summary_filename() or DEFAULT_SUMMARY_FILENAME
    if not is_relative_inside(name):
        raise DependsError(f"{what}: summary-filename {name!r} must be a relative path")
    return name


def _check_project_files(opdef: OpDef, dep: OpDefDependency, project_dir: str,
                         runs_dir: str) -> None:
    patterns = dep.get_files()
    if not patterns or not select_files(project_dir, patterns, exclude_dirs=[runs_dir]):
        raise DependsError(
            f"operation {opdef.name} depends on project files {patterns}: none found in"
            f" {project_dir}")


def _decode(item: object) -> ResolvedDependency:
    if not isinstance(item, dict) or item.get("type") not in (RUN_FILES, RUNS_SUMMARY):
        _bad(item)
    runs, files = item.get("runs"), item.get("files")
    if not isinstance(runs, list) or not all(is_run_id(r) for r in runs) \
            or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        _bad(item)
    name = item.get("summary_filename")
    return ResolvedDependency(
        item["type"], str(item.get("select") or ""), tuple(runs), tuple(files),
        name if isinstance(name, str) and name else DEFAULT_SUMMARY_FILENAME)


def _bad(data: object) -> NoReturn:
    raise ValueError(f"unreadable {DEPENDS}: unexpected {str(data)[:80]!r}")
