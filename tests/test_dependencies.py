"""Runs that wait for runs (`--after`): released when their dependencies complete, ended
without running when one fails, transitively; cancelling a run ends the runs waiting on it.

One real worker on a private redis-server (tests/support/submit_cli.py) and
`gage-submit` as a user runs it. Multi-host claims are in test_scheduling.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.submit_cli import GageSubmit, assert_one_line_error, submitted_run, worker_pool

from gage_queue.locks import read_record
from gage_queue.states import EndReason
from gage_runs.meta import meta_timestamp
from gage_runs.runs_dir import find_run

pytestmark = pytest.mark.system  # a worker, a redis-server


@pytest.fixture(scope="module")
def submit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GageSubmit, str]]:
    with worker_pool(tmp_path_factory.mktemp("dependencies")) as (bed, _, gage_submit):
        yield gage_submit, str(bed.runs_dir)


def test_a_chain_whose_first_run_fails_ends_the_rest_without_running(submit):
    gage_submit, runs_dir = submit
    _, a, a_id = submitted_run(gage_submit, "slow", "steps=5")
    _, _, failing = submitted_run(gage_submit, "fail")
    state, b, b_id = submitted_run(gage_submit, "train", "--after", a_id, "--after", failing)
    _, c, c_id = submitted_run(gage_submit, "train", "--after", b)
    assert state == "waiting"

    done = gage_submit("wait", a, b, c, "--json", timeout=90).json()
    assert {r["id"]: r["status"] for r in done} == {
        a_id: "completed", b_id: "terminated", c_id: "terminated"}
    fail_name = find_run(runs_dir, failing).name
    b_record, c_record = (read_record(find_run(runs_dir, i)) for i in (b_id, c_id))
    assert (b_record.reason, b_record.detail) == (
        EndReason.DEPENDENCY, f"dependency {fail_name} ended error")
    assert c_record.detail == f"dependency {b} ended terminated"
    for run_id in (b_id, c_id):
        assert meta_timestamp(find_run(runs_dir, run_id), "started") is None  # never ran


def test_a_chain_that_completes_runs_in_order(submit):
    gage_submit, runs_dir = submit
    _, a, a_id = submitted_run(gage_submit, "slow", "steps=10")
    _, b, b_id = submitted_run(gage_submit, "train", "--after", a)
    _, c, c_id = submitted_run(gage_submit, "train", "lr=0.2", "--after", b_id)
    shown = gage_submit("show", b, "--json", check=True).json()
    assert (shown["status"], shown["reason"]) == ("waiting", f"waits for {a}")

    done = gage_submit("wait", a, b, c, "--json", timeout=90).json()
    assert [r["status"] for r in done] == ["completed"] * 3
    a_run, b_run, c_run = (find_run(runs_dir, i) for i in (a_id, b_id, c_id))
    assert meta_timestamp(b_run, "started") >= meta_timestamp(a_run, "stopped")
    assert meta_timestamp(c_run, "started") >= meta_timestamp(b_run, "stopped")


def test_a_labelled_grid_then_a_run_after_the_whole_grid(submit):
    gage_submit, runs_dir = submit
    grid = gage_submit("slow", "steps=[1,2,3]", "-l", "sweep-7", "--json", check=True).json()
    _, evaluate, eval_id = submitted_run(gage_submit, "train", "--after", "label:sweep-7")

    done = gage_submit("wait", evaluate, "--json", timeout=90).json()
    assert done[0]["status"] == "completed"
    started = meta_timestamp(find_run(runs_dir, eval_id), "started")
    assert all(started >= meta_timestamp(find_run(runs_dir, r["id"]), "stopped") for r in grid)


def test_after_any_runs_whatever_they_ended_as_and_cancel_ends_the_waiting(submit):
    gage_submit, runs_dir = submit
    _, _, failing = submitted_run(gage_submit, "fail")
    _, anyway, anyway_id = submitted_run(gage_submit, "train", "--after", failing, "--after-any")
    _, slow, slow_id = submitted_run(gage_submit, "slow", "steps=50")
    _, blocked, blocked_id = submitted_run(gage_submit, "train", "--after", slow)
    gage_submit("cancel", slow, check=True)

    done = gage_submit("wait", anyway, blocked, "--json", timeout=90).json()
    assert {r["id"]: r["status"] for r in done} == {
        anyway_id: "completed", blocked_id: "terminated"}
    assert read_record(find_run(runs_dir, blocked_id)).detail == \
        f"dependency {slow} ended terminated"


def test_bad_after_is_one_line_exit_2(submit):
    gage_submit, _ = submit
    assert_one_line_error(gage_submit("train", "--after", "label:no-such-label"),
                          "--after label:no-such-label: no run has the label 'no-such-label'")
    assert_one_line_error(gage_submit("train", "--after-any"), "--after-any needs --after RUN")
    assert_one_line_error(gage_submit("train", "--after", "zzzz-none"), "zzzz-none")
