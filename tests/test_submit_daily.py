"""The daily commands: rerun, queue, compare, and cancel by op, label or status.

One private redis-server and one real worker (concurrency 2) serve the
module; every test drives the real `gage-submit` command.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.submit_cli import GageSubmit, assert_one_line_error, run_line_fields, worker_pool
from support.workers import Bed, wait_for


@dataclass
class Pool:
    bed: Bed
    project: Path
    gage_submit: GageSubmit

    def show(self, spec: str) -> dict:
        return self.gage_submit("show", spec, "--json", check=True).json()

    def submitted(self, *args: str) -> list[str]:
        """Submit and wait; the ids of the runs, which must complete."""
        result = self.gage_submit(*args, "--wait", timeout=60)
        assert result.code == 0, str(result)
        return [run_line_fields(line)[2] for line in result.lines() if line.startswith("queued")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    with worker_pool(tmp_path_factory.mktemp("daily")) as (bed, project, gage_submit):
        yield Pool(bed, project, gage_submit)


# -- rerun


def test_rerun_runs_the_old_code_with_the_old_config_overlaid(pool):
    (old,) = pool.submitted("train", "lr=0.05", "batch=4", "optimizer=sgd")
    train = pool.project / "train.py"
    original = train.read_text()
    train.write_text(original.replace('print(f"loss={loss}")', 'print("NEW CODE")'))
    try:
        result = pool.gage_submit("rerun", old, "lr=[0.5,0.25]", "--wait", timeout=60)
    finally:
        train.write_text(original)
    assert result.code == 0, str(result)
    queued = [run_line_fields(line) for line in result.lines() if line.startswith("queued")]
    assert [fields[3] for fields in queued] == ["lr=0.5", "lr=0.25"]
    for (_, name, run_id, _), lr in zip(queued, (0.5, 0.25), strict=True):
        info = pool.show(run_id)
        assert info["status"] == "completed"
        assert info["config"] == {"lr": lr, "batch": 4, "optimizer": "sgd"}
        assert info["rerun_of"] == old
        logs = pool.gage_submit("logs", run_id, check=True).out
        assert "NEW CODE" not in logs and f"loss={round(1 / (lr * 4), 4)}" in logs
        shown = pool.gage_submit("show", name, check=True).out
        assert f"rerun of:  {old}" in shown.splitlines()
    assert pool.show(old).get("rerun_of") is None


def test_rerun_keeps_the_old_runs_queue_and_label(pool):
    (old,) = pool.submitted("train", "--label", "keep me")
    (new,) = pool.submitted("rerun", old)
    info = pool.show(new)
    assert (info["label"], info["queue"], info["rerun_of"]) == ("keep me", "gage", old)


def test_rerun_bad_input(pool):
    (old,) = pool.submitted("train")
    assert_one_line_error(pool.gage_submit("rerun", old, "nope=1"), "nope")
    assert_one_line_error(pool.gage_submit("rerun", "no-such-run"), "no run matches")
    assert_one_line_error(pool.gage_submit("rerun"), "Missing argument 'RUN'")


# -- queue


def test_queue_takes_a_run_staged_by_real_gage(pool, real_gage):
    staged = real_gage("run", "train", "--stage", "lr=0.5", "-y", "-q",
                       runs_dir=pool.bed.runs_dir, project=pool.project)
    assert staged.returncode == 0
    assert pool.show("1")["status"] == "staged"
    run_id = pool.show("1")["id"]

    result = pool.gage_submit("queue", run_id, check=True)
    assert run_line_fields(result.out)[:3][::2] == ("queued", run_id)
    assert pool.gage_submit("wait", run_id, timeout=60).code == 0
    info = pool.show(run_id)
    assert (info["status"], info["queue"], info["config"]["lr"]) == ("completed", "gage", 0.5)

    again = pool.gage_submit("queue", run_id)
    assert_one_line_error(again, "was queued already (it is completed)")


def test_queue_checks_every_run_before_queueing_any(pool, real_gage):
    real_gage("run", "train", "--stage", "-y", "-q", runs_dir=pool.bed.runs_dir,
              project=pool.project)
    staged = pool.show("1")["id"]
    (submitted,) = pool.submitted("train")
    result = pool.gage_submit("queue", staged, submitted)
    assert_one_line_error(result, "was queued already")
    assert pool.show(staged)["status"] == "staged"  # not queued either
    assert_one_line_error(pool.gage_submit("queue", staged, "--queue", "bad queue"),
                          "invalid queue name")
    assert pool.show(staged)["status"] == "staged"


# -- compare


def test_compare_shows_flags_and_metrics_sorted_by_a_metric(pool):
    ids = pool.submitted("train", "lr=[0.1,0.4,0.2]", "batch=10", "--label", "cmp")
    losses = {run_id: pool.show(run_id)["summary"]["metrics"]["loss"] for run_id in ids}
    args = ("compare", *ids, "--sort", "-loss")

    table = pool.gage_submit(*args, check=True).lines()
    assert table[0].split() == ["run", "op", "status", "batch", "lr", "optimizer", "loss"]
    rows = [line.split() for line in table[1:]]
    assert [float(row[-1]) for row in rows] == sorted(losses.values(), reverse=True)
    assert {row[3] for row in rows} == {"10"}

    rows = list(csv.DictReader(io.StringIO(pool.gage_submit(*args, "--csv", check=True).out)))
    assert [row["id"] for row in rows] == sorted(ids, key=losses.get, reverse=True)
    assert rows[0]["lr"] == "0.1" and rows[0]["status"] == "completed"

    data = pool.gage_submit("compare", *ids, "--sort", "lr", "--json", check=True).json()
    assert [run["flags"]["lr"] for run in data] == [0.1, 0.2, 0.4]
    assert all(run["metrics"]["loss"] == losses[run["id"]] for run in data)

    labelled = pool.gage_submit("compare", "--label", "cmp", "--json", check=True).json()
    assert {run["id"] for run in labelled} == set(ids)


def test_compare_bad_input(pool):
    (run_id,) = pool.submitted("train")
    assert_one_line_error(pool.gage_submit("compare", run_id, "--sort", "nope"),
                          "cannot sort by 'nope'", "columns: run, op, status")
    assert_one_line_error(pool.gage_submit("compare", "--csv", "--json"), "one of --csv and --json")


# -- cancel by selection


def slow_runs(pool: Pool, *args: str) -> list[str]:
    result = pool.gage_submit("slow", "steps=200", *args, check=True)
    return [run_line_fields(line)[2] for line in result.lines()]


def test_cancel_by_label_counts_and_cancels_queued_and_running_runs(pool):
    ids = slow_runs(pool, "--label", "grid-a", "steps=[200,201,202]")
    other = slow_runs(pool, "--label", "grid-b")
    wait_for(lambda: pool.show(ids[0])["status"] == "running", 20, "a run to start", 0.2)
    result = pool.gage_submit("cancel", "--label", "grid-a")
    assert result.code == 0, str(result)
    # The first line; the runner may log the runs it finalizes after it.
    assert result.err.splitlines()[0] == "cancelling 3 runs (label 'grid-a', pending or queued or waiting or running)"
    assert sorted(run_line_fields(line)[2] for line in result.lines()) == sorted(ids)
    assert pool.bed.wait_status([pool_run(pool, i) for i in ids], ("terminated",))
    assert pool.show(other[0])["status"] in ("queued", "running")
    assert pool.gage_submit("cancel", "--op", "slow", "--status", "queued", "--status",
                            "running").code == 0
    assert pool.bed.wait_status([pool_run(pool, other[0])], ("terminated",))


def test_cancel_by_status_leaves_running_runs(pool):
    running, queued_one, queued_two = slow_runs(pool, "steps=[200,201,202]")
    wait_for(lambda: pool.show(running)["status"] == "running", 20, "a run to start", 0.2)
    wait_for(lambda: sum(pool.show(i)["status"] == "running" for i in (queued_one, queued_two))
             == 1, 20, "the second slot to fill", 0.2)
    waiting = next(i for i in (queued_one, queued_two) if pool.show(i)["status"] == "queued")
    result = pool.gage_submit("cancel", "--status", "queued", "--op", "slow")
    assert result.err.splitlines()[0] == "cancelling 1 run (op slow, queued)", str(result)
    assert pool.show(waiting)["status"] == "terminated"
    assert pool.show(running)["status"] == "running"
    pool.gage_submit("cancel", "--op", "slow", check=True)
    pool.bed.wait_status([pool_run(pool, i) for i in (running, queued_one, queued_two)],
                         ("terminated",))


def test_cancel_selection_bad_input_and_nothing_to_do(pool):
    assert_one_line_error(pool.gage_submit("cancel"), "name the runs to cancel")
    assert_one_line_error(pool.gage_submit("cancel", "--status", "completed"), "'completed'")
    result = pool.gage_submit("cancel", "--label", "no-such-label")
    assert (result.code, result.out) == (0, "")
    assert result.err == "no runs to cancel (label 'no-such-label', pending or queued or waiting or running)\n"


def pool_run(pool: Pool, run_id: str):
    from gage_runs.runs_dir import find_run

    return find_run(str(pool.bed.runs_dir), run_id)
