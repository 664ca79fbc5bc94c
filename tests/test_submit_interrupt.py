"""Ctrl-C during a submit: no half-staged run survives, every queued run is printed.

A grid is submitted with the real `gage-submit` on the embedded broker (no
worker) and interrupted with SIGINT at several moments, once or twice (a
second Ctrl-C stops the runs being staged too). Whatever the moment, every
run dir left is fully queued (its record, `queue/submitted`, its index
entry and one message), the runs printed are exactly the runs on disk, and
the one error line says `N of M queued` (exit 130).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.submit_cli import gage_submit_command, write_project

from gage_queue.active import active_ids
from gage_queue.layout import SUBMITTED, queue_file
from gage_queue.locks import read_record
from gage_queue.snapshots import run_state
from gage_queue.states import RunState
from gage_runs.runs_dir import list_runs

# An op whose staging takes a while: a stage hook that notes the run in a
# log, then sleeps, so a Ctrl-C lands while a run is being staged.
HOOKED_OP = """
[hooked]
exec = {{ run = "python train.py", stage-runtime = "echo $run_id >> {log}; sleep 0.5" }}
config = "train.py"
"""
MESSAGE = re.compile(
    r"gage-submit: error: interrupted: (\d+) of (\d+) queued; the other (\d+) were not staged"
)


@dataclass
class Interrupted:
    code: int
    printed: list[str]  # run ids of the `queued` lines
    err: str


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = write_project(tmp_path / "project")
    with open(project / "gage.toml", "a") as f:
        f.write(HOOKED_OP.format(log=tmp_path / "hooks.log"))
    return project


def _env(runs_dir: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    base.pop("RUNS_DIR", None)
    return {**base, "GAGE_RUNS": str(runs_dir), "COLUMNS": "200"}


def submit_and_interrupt(project: Path, runs_dir: Path, args: list[str], *, delay: float,
                         after_first_run: bool = True, again: float | None = None,
                         ) -> Interrupted:
    """Run `gage-submit ARGS`, send SIGINT `delay` s after its first run line (or after
    it starts), and again `again` s later if given; what it did."""
    runs_dir.mkdir()
    proc = subprocess.Popen(
        [*gage_submit_command(), *args], cwd=project, env=_env(runs_dir),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    first = b""  # read from the descriptor: `communicate` reads past any buffer
    try:
        while after_first_run and b"\n" not in first:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no run was queued within 60 s"
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, "gage-submit ended before queueing a run"
            first += chunk
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        if again is not None:
            time.sleep(again)
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = (first + out).decode().splitlines()
    assert all(line.startswith("queued ") for line in lines), lines
    return Interrupted(proc.returncode, [line.split()[2] for line in lines], err.decode())


def assert_clean(result: Interrupted, runs_dir: Path, planned: int) -> int:
    """Every run on disk is queued and was printed; the message counts them. How many."""
    assert result.code == 130, result
    runs = list_runs(str(runs_dir))
    on_disk = {run.id for run in runs}
    assert sorted(result.printed) == sorted(on_disk), result
    for run in runs:
        assert run_state(run) is RunState.QUEUED, run
        assert os.path.exists(queue_file(run, SUBMITTED)), run
        assert read_record(run) is not None, run
    assert set(active_ids(str(runs_dir))) == on_disk
    names = {name for name in os.listdir(runs_dir) if name != ".gage-queue"}
    assert names == {f"{run_id}{end}" for run_id in on_disk for end in ("", ".meta", ".project")}
    messages = runs_dir / ".gage-queue" / "broker" / "messages"
    names = os.listdir(messages) if messages.exists() else []
    assert len([name for name in names if name.endswith(".msg")]) == len(on_disk)
    assert not [name for name in names if name.startswith(".")]  # no half-written message
    (line,) = result.err.splitlines()
    if not on_disk and line == "gage-submit: error: interrupted":
        return 0  # before the submission began: nothing was staged
    match = MESSAGE.fullmatch(line)
    assert match, line
    queued, of, rest = map(int, match.groups())
    assert (queued, of, rest) == (len(on_disk), planned, planned - len(on_disk)), line
    return queued


GRID = 2000


@pytest.mark.parametrize(
    ("delay", "after_first_run", "again"),
    [(0.0, True, None), (0.3, True, None), (0.8, True, None), (1.5, False, None),
     (0.3, True, 0.02), (0.0, True, 0.0)],
    ids=["at-once", "0.3s-in", "0.8s-in", "1.5s-from-start", "twice", "twice-at-once"],
)
def test_a_large_grid_interrupted_leaves_only_queued_runs(tmp_path, project, delay,
                                                          after_first_run, again):
    """2,000 runs staged by a pool of processes, interrupted part way."""
    runs_dir = tmp_path / "runs"
    grid = f"lr=[{','.join(str(n) for n in range(1, GRID + 1))}]"
    result = submit_and_interrupt(project, runs_dir, ["train", grid, "--max-runs", str(GRID)],
                                  delay=delay, after_first_run=after_first_run, again=again)
    queued = assert_clean(result, runs_dir, GRID)
    assert queued < GRID


@pytest.mark.parametrize("again", [None, 0.1], ids=["once", "twice"])
def test_a_run_being_staged_is_finished_or_removed(tmp_path, project, again):
    """One process stages runs whose stage hook sleeps: a Ctrl-C lands inside one.

    Once, that run is finished and queued; twice, it is removed.
    """
    runs_dir = tmp_path / "runs"
    result = submit_and_interrupt(project, runs_dir, ["hooked", "lr=[1,2,3,4,5,6,7,8]"],
                                  delay=0.25, again=again)  # inside the second run's hook
    queued = assert_clean(result, runs_dir, 8)
    began = (tmp_path / "hooks.log").read_text().split()
    assert set(result.printed) <= set(began)
    if again is None:  # every run whose staging began was finished
        assert sorted(began) == sorted(result.printed)
        assert queued == 2
    else:  # the run being staged was removed
        assert len(began) == queued + 1 and queued == 1


def test_json_lists_the_queued_runs_when_interrupted(tmp_path, project):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    proc = subprocess.Popen(
        [*gage_submit_command(), "hooked", "lr=[1,2,3,4,5,6,7,8]", "--json"], cwd=project,
        env=_env(runs_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not list_runs(str(runs_dir)) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    printed = [run["id"] for run in json.loads(out)]
    assert proc.returncode == 130, err
    assert sorted(printed) == sorted(run.id for run in list_runs(str(runs_dir)))
    assert MESSAGE.fullmatch(err.strip()), err


@pytest.mark.parametrize("again", [None, 0.1], ids=["once", "twice"])
def test_runs_being_staged_by_a_pool_are_finished_or_removed(tmp_path, project, again):
    """40 runs are staged by a pool of processes (on 2 CPUs or more), each run's hook
    sleeping: Ctrl-C once finishes the run each process is staging; twice removes them."""
    runs_dir = tmp_path / "runs"
    grid = f"lr=[{','.join(str(n) for n in range(1, 41))}]"
    result = submit_and_interrupt(project, runs_dir, ["hooked", grid], delay=1.5,
                                  after_first_run=False, again=again)
    queued = assert_clean(result, runs_dir, 40)
    began = (tmp_path / "hooks.log").read_text().split()
    assert set(result.printed) <= set(began)
    if again is None:
        assert sorted(began) == sorted(result.printed)
        assert queued >= 1
    else:
        assert 1 <= len(began) - queued <= (os.cpu_count() or 1)
