"""Gage's `depends`, resolved by the queue: `run-files`, `runs-summary`, `project-files`.

A pipeline as a user writes it in a Gage file: `prepare` writes data,
`fit` takes prepare's files (`run-files`), `evaluate` reads a summary of
every `fit` run (`runs-summary`), and `stats` takes project files. One
real worker on a private redis-server, `gage-submit` as a user runs it,
and the real Gage CLI reading the runs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.real_gage import RealGage
from support.submit_cli import GageSubmit, assert_one_line_error, submitted_run, worker_pool

from gage_queue.locks import read_record
from gage_queue.states import EndReason
from gage_runs.files_log import iter_files_log
from gage_runs.meta import meta_timestamp, run_meta_path
from gage_runs.runs_dir import find_run
from gage_runs.types import Run

pytestmark = pytest.mark.system  # a worker, a redis-server

PIPELINE_TOML = """
[prepare]
exec = "python prepare.py"
config = "prepare.py"

[fit]
exec = "python fit.py"
config = "fit.py"
depends = {type = "run-files", run-select = "prepare", files = "data/*.csv"}

[evaluate]
exec = "python evaluate.py"
depends = {type = "runs-summary", runs-select = "fit"}

[stats]
exec = "python stats.py"
sourcecode = ["*.py", "gage.toml"]
depends = [{type = "project-files", files = "data/*.csv"}]

[orphan]
exec = "python fit.py"
depends = {type = "run-files", run-select = "no-such-op"}
"""

PREPARE_PY = """\
import os, sys, time

fail = 0
pause = 0.5

time.sleep(pause)
os.makedirs("data", exist_ok=True)
with open("data/train.csv", "w") as f:
    f.write(f"rows of {os.environ['RUN_ID']}\\n")
with open("data/notes.txt", "w") as f:
    f.write("not selected by fit's patterns\\n")
os.symlink("/etc/hostname", "data/outside.csv")  # a link out of the run: never copied
sys.exit(3 if fail else 0)
"""

FIT_PY = """\
import json

x = 1

data = open("data/train.csv").read().strip()
print(f"x={x} data={data}")
with open("summary.json", "w") as f:
    json.dump({"metrics": {"loss": abs(x - 4)}}, f)
"""

EVALUATE_PY = """\
import json

runs = json.load(open("runs-summary.json"))["runs"]
done = [r for r in runs if r["status"] == "completed"]
best = min(done, key=lambda r: r["metrics"]["loss"])
print(f"runs={len(runs)} best x={best['config']['x']} loss={best['metrics']['loss']}")
"""

STATS_PY = """\
print(open("data/raw.csv").read().strip())
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GageSubmit, str]]:
    with worker_pool(tmp_path_factory.mktemp("depends")) as (bed, project, gage_submit):
        with open(project / "gage.toml", "a") as f:
            f.write(PIPELINE_TOML)
        for name, text in (("prepare.py", PREPARE_PY), ("fit.py", FIT_PY),
                           ("evaluate.py", EVALUATE_PY), ("stats.py", STATS_PY)):
            (project / name).write_text(text)
        (project / "data").mkdir()
        (project / "data" / "raw.csv").write_text("a,b\n1,2\n")
        yield gage_submit, str(bed.runs_dir)


def _dependency_paths(run: Run) -> dict[str, str]:
    """Path -> type of what the run's files log says was added."""
    return {e.path: e.type for e in iter_files_log(run) if e.event == "a"}


def test_run_files_of_a_queued_prepare(pipeline, real_gage: RealGage):
    gage_submit, runs_dir = pipeline
    _, prepare, prepare_id = submitted_run(gage_submit, "prepare", "pause=1.5")
    state, fit, fit_id = submitted_run(gage_submit, "fit")
    assert state == "waiting"
    shown = gage_submit("show", fit, "--json", check=True).json()
    assert (shown["status"], shown["reason"]) == ("waiting", f"waits for {prepare}")
    assert re.search(rf"^depends: +run-files prepare: {prepare}$",
                     gage_submit("show", fit, check=True).out, re.M)

    done = gage_submit("wait", fit, "--json", timeout=90).json()
    assert done[0]["status"] == "completed"
    prepare_run, fit_run = find_run(runs_dir, prepare_id), find_run(runs_dir, fit_id)
    assert meta_timestamp(fit_run, "started") >= meta_timestamp(prepare_run, "stopped")
    copied = Path(fit_run.run_dir, "data", "train.csv")
    assert copied.read_text() == f"rows of {prepare_id}\n"
    assert oct(copied.stat().st_mode & 0o777) == oct(0o444)
    assert not os.path.lexists(Path(fit_run.run_dir, "data", "notes.txt"))  # not selected
    assert not os.path.lexists(Path(fit_run.run_dir, "data", "outside.csv"))  # a link out
    assert gage_submit("logs", fit, check=True).out.startswith(f"x=1 data=rows of {prepare_id}")
    assert _dependency_paths(fit_run)["data/train.csv"] == "d"
    manifest = Path(run_meta_path(fit_run, "manifest")).read_text().splitlines()
    assert any(line.startswith("d ") and line.endswith(" data/train.csv") for line in manifest)

    gage_show = real_gage("show", fit_id, runs_dir=runs_dir).stdout
    (line,) = [line for line in gage_show.splitlines() if "data/train.csv" in line]
    assert "dependency" in line
    assert "completed" in gage_show


def test_a_grid_then_evaluate_sees_the_grid_through_a_runs_summary(pipeline):
    gage_submit, runs_dir = pipeline
    submitted_run(gage_submit, "prepare", "pause=0")
    grid = gage_submit("fit", "x=[1,2,3,4,5,6,7,8,9,10]", "-l", "grid-7", "--json",
                       check=True).json()
    assert len(grid) == 10
    _, evaluate, eval_id = submitted_run(gage_submit, "evaluate", "--after", "label:grid-7")

    done = gage_submit("wait", evaluate, "--json", timeout=120).json()
    assert done[0]["status"] == "completed"
    eval_run = find_run(runs_dir, eval_id)
    started = meta_timestamp(eval_run, "started")
    assert all(started >= meta_timestamp(find_run(runs_dir, r["id"]), "stopped") for r in grid)
    summary = json.loads(Path(eval_run.run_dir, "runs-summary.json").read_text())
    rows = {row["id"]: row for row in summary["runs"]}
    assert {r["id"] for r in grid} <= set(rows)  # every fit run, this grid's included
    assert all(rows[r["id"]]["status"] == "completed" for r in grid)
    assert rows[grid[3]["id"]]["metrics"] == {"loss": 0}
    assert rows[grid[3]["id"]]["config"]["x"] == 4
    assert rows[grid[3]["id"]]["label"] == "grid-7"
    out = gage_submit("logs", evaluate, check=True).out
    assert "best x=4 loss=0" in out
    assert _dependency_paths(eval_run)["runs-summary.json"] == "d"


def test_a_failed_prepare_ends_fit_and_a_completed_one_is_chosen_over_it(pipeline):
    gage_submit, runs_dir = pipeline
    _, good, good_id = submitted_run(gage_submit, "prepare", "pause=0")
    gage_submit("wait", good, timeout=60, check=True)
    _, failing, failing_id = submitted_run(gage_submit, "prepare", "fail=1", "pause=1")
    _, doomed, doomed_id = submitted_run(gage_submit, "fit")  # waits for the failing one

    done = gage_submit("wait", doomed, "--json", timeout=90).json()
    assert done[0]["status"] == "terminated"
    record = read_record(find_run(runs_dir, doomed_id))
    assert (record.reason, record.detail) == (EndReason.DEPENDENCY,
                                              f"dependency {failing} ended error")
    assert meta_timestamp(find_run(runs_dir, doomed_id), "started") is None

    _, fit, fit_id = submitted_run(gage_submit, "fit")  # the failed one is passed over
    assert gage_submit("wait", fit, "--json", timeout=90).json()[0]["status"] == "completed"
    data = Path(find_run(runs_dir, fit_id).run_dir, "data", "train.csv").read_text()
    assert data == f"rows of {good_id}\n" != f"rows of {failing_id}\n"


def test_project_files_are_copied_at_staging_as_dependencies(pipeline, real_gage: RealGage):
    gage_submit, runs_dir = pipeline
    _, stats, stats_id = submitted_run(gage_submit, "stats")
    run = find_run(runs_dir, stats_id)
    assert Path(run.run_dir, "data", "raw.csv").read_text() == "a,b\n1,2\n"
    logged = _dependency_paths(run)
    assert [path for path, type in logged.items() if type == "d"] == ["data/raw.csv"]
    assert logged["stats.py"] == "s"
    done = gage_submit("wait", stats, "--json", timeout=60).json()
    assert done[0]["status"] == "completed"
    assert gage_submit("logs", stats, check=True).out.startswith("a,b\n1,2")
    gage_show = real_gage("show", stats_id, runs_dir=runs_dir).stdout
    (line,) = [line for line in gage_show.splitlines() if "data/raw.csv" in line]
    assert "dependency" in line


def test_a_dependency_that_selects_nothing_is_one_line_exit_2(pipeline, tmp_path):
    gage_submit, runs_dir = pipeline
    before = set(os.listdir(runs_dir))
    assert_one_line_error(gage_submit("orphan"),
                          "operation orphan depends on run-files 'no-such-op'", "no-such-op")
    (tmp_path / "gage.toml").write_text(
        '[stats]\nexec = "python stats.py"\n'
        'depends = {type = "project-files", files = "data/*.csv"}\n')
    empty = GageSubmit(tmp_path, gage_submit.env)
    assert_one_line_error(empty("stats", "--runs-dir", runs_dir),
                          "operation stats depends on project files ['data/*.csv']: none found")
    assert set(os.listdir(runs_dir)) == before  # nothing staged


def test_a_run_staged_by_gage_gets_its_run_files_when_queued(pipeline, real_gage: RealGage):
    gage_submit, runs_dir = pipeline
    _, prepare, prepare_id = submitted_run(gage_submit, "prepare", "pause=4")
    staged = real_gage("run", "fit", "x=2", "--stage", "-y", runs_dir=runs_dir,
                       project=gage_submit.cwd).stdout
    name = re.search(r'^Run "(\S+)" is staged', staged, re.M).group(1)
    state, queued, fit_id = submitted_run(gage_submit, "queue", name)
    assert (state, queued) == ("waiting", name)  # prepare is still running

    assert gage_submit("wait", name, "--json", timeout=90).json()[0]["status"] == "completed"
    fit_run = find_run(runs_dir, fit_id)
    assert Path(fit_run.run_dir, "data", "train.csv").read_text() == f"rows of {prepare_id}\n"
    assert gage_submit("logs", name, check=True).out.startswith(f"x=2 data=rows of {prepare_id}")
