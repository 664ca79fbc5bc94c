"""Runs of the `gage-submit` test project made in-process, in the state a test needs,
and the `project`, `runs` and `gage_submit` fixtures around them (registered as a
plugin in conftest.py; a test module's own fixtures of these names take precedence).

No broker is involved: completed and failed runs are executed and finalized
here; a queued run has `queue/submitted`; a running run's lock is held by this
test process (any process can probe it) with a heartbeat naming this host; a
lost run started and lost its lock holder.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gage_queue.settings import Settings
from gage_queue.states import RunState
from gage_runs.errors import RunExecError
from gage_runs.execute import exec_run
from gage_runs.gagefile import get_opdef, load_gagefile
from gage_runs.lifecycle import finalize_run
from gage_runs.meta import init_run_meta, make_run, write_timestamp
from gage_runs.staging import stage_op
from gage_runs.types import OpCmd, OpRef, Run
from gage_worker.cancels import sweep_cancels

from .records import commit, hold, submitted
from .submit_cli import GageSubmit, write_project


class Runs:
    """Makes runs of the test project in a runs dir, in a chosen state."""

    def __init__(self, project: Path, runs_dir: Path):
        self.project = project
        self.runs_dir = runs_dir
        self.gagefile = load_gagefile(str(project / "gage.toml"))
        self.locks: list = []

    def staged(self, op: str = "train", label: str | None = None, **config) -> Run:
        opdef = get_opdef(self.gagefile, op)
        base = {"train": {"lr": 0.1, "batch": 32, "optimizer": "adam"}, "fail": {"code": 3},
                "slow": {"steps": 3}}[op]
        return stage_op(
            str(self.project), opdef, OpRef("proj", op), {**base, **config},
            str(self.runs_dir), label=label,
        )

    def finished(self, op: str = "train", **config) -> Run:
        run = self.staged(op, **config)
        try:
            exec_run(run)
            code = 0
        except RunExecError as e:
            code = e.exit_code
        finalize_run(run, code)
        return run

    def queued(self, queue: str = "gage", schedule: str | None = None, **config) -> Run:
        """A staged `train` run (`config` as for `staged`, label included) submitted to
        `queue`, on `schedule` if given."""
        return submitted(self.staged(**config), queue=queue, schedule=schedule)

    def running(self) -> Run:
        run = self.queued()
        write_timestamp(run, "started")
        self.locks.append(hold(run, state=RunState.RUNNING, host=socket.gethostname()))
        return run

    def lost(self) -> Run:
        run = self.queued()
        write_timestamp(run, "started")
        commit(run, state=RunState.RUNNING, host=socket.gethostname())
        return run

    def with_id(self, run_id: str) -> Run:
        """A pending run with a chosen id (for prefix lookups)."""
        run = make_run(OpRef("proj", "train"), str(self.runs_dir), id=run_id)
        opdef = get_opdef(self.gagefile, "train")
        init_run_meta(run, opdef, {}, OpCmd("python train.py", {}))
        return run

    def end_queued(self, gage_submit: GageSubmit, *runs: Run) -> None:
        """End queued runs as a worker would: a cancel request, then its cancel sweep."""
        gage_submit("cancel", *(run.id for run in runs), check=True)
        assert sweep_cancels(Settings(runs_dir=str(self.runs_dir))) == len(runs)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "proj")


@pytest.fixture
def runs(project: Path, tmp_path: Path) -> Iterator[Runs]:
    made = Runs(project, tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    yield made
    for lock in made.locks:
        lock.release()


@pytest.fixture
def gage_submit(project: Path, runs: Runs) -> GageSubmit:
    return GageSubmit(project, {"GAGE_RUNS": str(runs.runs_dir)})
