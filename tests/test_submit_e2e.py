"""gage-submit end to end: a real redis-server, a real `gage-worker`, real runs.

One redis-server and one worker (concurrency 2) serve the whole module;
every test submits with the real `gage-submit` command to the shared runs
dir and checks what the runs did. The worker reconciles every second and
re-sends runs queued for more than two seconds (`support.workers`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.redis_server import free_port
from support.submit_cli import (
    GageSubmit,
    assert_one_line_error,
    gage_submit_command,
    run_line_fields,
    worker_pool,
)
from support.workers import Bed, wait_for

from gage_queue.snapshots import run_state
from gage_runs.runs_dir import find_run
from gage_runs.sidecars import run_user_attrs


@dataclass
class Pool:
    """The module's worker pool, its runs dir, and the project the tests submit."""

    bed: Bed
    project: Path
    gage_submit: GageSubmit

    def status(self, spec: str) -> dict:
        return self.gage_submit("status", spec, "--json", check=True).json()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    with worker_pool(tmp_path_factory.mktemp("submit-e2e")) as (bed, project, gage_submit):
        yield Pool(bed, project, gage_submit)


def test_submit_and_wait_for_a_completed_run(pool):
    """`gage-submit train lr=0.05 batch=4 --wait` runs on the worker and exits 0."""
    result = pool.gage_submit("train", "lr=0.05", "batch=4", "--wait", timeout=60)

    assert result.code == 0, str(result)
    queued, completed = (run_line_fields(line) for line in result.lines())
    assert queued[0] == "queued" and queued[3] == "lr=0.05 batch=4"
    assert completed == ("completed", queued[1], queued[2], "exit 0")
    info = pool.status(queued[2])
    assert (info["status"], info["exit_code"], info["queue"]) == ("completed", 0, "gage")
    assert info["host"] == socket.gethostname()
    assert info["config"] == {"lr": 0.05, "batch": 4, "optimizer": "adam"}
    assert info["summary"]["metrics"] == {"loss": 5.0}
    logs = pool.gage_submit("logs", queued[1], check=True).out
    assert logs == "lr=0.05 batch=4 optimizer=adam\nloss=5.0\n"


def test_a_labelled_grid_runs_every_combination(pool):
    """Four runs from two list flags, each with its own output, all labelled and listed."""
    result = pool.gage_submit(
        "train", "lr=[0.1,0.2]", "batch=[2,5]", "-l", "lr sweep", "--wait", "--json", timeout=90
    )

    assert result.code == 0, str(result)
    runs = result.json()
    assert [(r["config"]["lr"], r["config"]["batch"]) for r in runs] == [
        (0.1, 2), (0.1, 5), (0.2, 2), (0.2, 5)
    ]
    assert {(r["status"], r["exit_code"], r["label"]) for r in runs} == {
        ("completed", 0, "lr sweep")
    }
    for r in runs:
        lr, batch = r["config"]["lr"], r["config"]["batch"]
        out = pool.gage_submit("logs", r["id"], check=True).out
        assert out.splitlines() == [f"lr={lr} batch={batch} optimizer=adam",
                                    f"loss={round(1 / (lr * batch), 4)}"]
        assert run_user_attrs(find_run(str(pool.bed.runs_dir), r["id"])) == {"label": "lr sweep"}
    listed = pool.gage_submit("list", "--label", "sweep", "--json", check=True).json()
    assert sorted(r["id"] for r in listed) == sorted(r["id"] for r in runs)
    table = pool.gage_submit("list", "--label", "sweep", check=True).lines()
    assert len(table) == 5 and all(line.endswith("lr sweep") for line in table[1:])


def test_follow_streams_the_output_while_the_run_goes(pool):
    """`--follow` prints each line as the run writes it and exits with the run's outcome."""
    proc = subprocess.Popen(
        [*gage_submit_command(), "slow", "steps=8", "--follow"],
        cwd=pool.project, env={**os.environ, **pool.gage_submit.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    _, name, run_id, _ = run_line_fields(proc.stdout.readline())
    assert proc.stdout.readline() == "step 0\n"
    run = find_run(str(pool.bed.runs_dir), run_id)
    assert run_state(run) == "running"  # the first line arrived while it runs
    rest = proc.stdout.read()
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    assert rest == "".join(f"step {i}\n" for i in range(1, 8)) + "finished\n"
    assert run_state(run) == "completed"

    failed = pool.gage_submit("fail", "code=7", "--follow", timeout=60)
    assert failed.code == 1, str(failed)
    assert failed.lines()[1:] == ["failing with 7"]


def test_wait_for_many_runs_reports_a_failure(pool):
    """`wait RUN...` prints each run as it ends and exits 1 when one failed."""
    ok = run_line_fields(pool.gage_submit("train", check=True).out)
    bad = run_line_fields(pool.gage_submit("fail", "code=5", check=True).out)

    result = pool.gage_submit("wait", ok[1], bad[2][:8], "--timeout", "60", timeout=90)

    assert result.code == 1, str(result)
    assert sorted(run_line_fields(line) for line in result.lines()) == [
        ("completed", ok[1], ok[2], "exit 0"),
        ("error", bad[1], bad[2], "exit 5"),
    ]
    assert result.err == "2 runs: 1 completed, 1 error\n"


def test_cancel_a_running_run(pool):
    """A running run shows its host in `list`; `cancel` gets it terminated by its worker."""
    _, name, run_id, _ = run_line_fields(pool.gage_submit("slow", "steps=300", check=True).out)
    wait_for(lambda: pool.status(name)["status"] == "running", 30, "the run to start", 0.2)
    (row,) = [r for r in pool.gage_submit("list", "--json", check=True).json() if r["id"] == run_id]
    assert (row["status"], row["host"]) == ("running", socket.gethostname())

    cancelled = pool.gage_submit("cancel", name, check=True)
    assert run_line_fields(cancelled.out)[3] == "cancel requested: its worker stops it within seconds"
    waited = pool.gage_submit("wait", name, "--timeout", "30", timeout=60)
    assert waited.code == 1, str(waited)
    assert run_line_fields(waited.out)[:3] == ("terminated", name, run_id)
    assert pool.status(name)["exit_code"] < 0


def test_cancel_a_run_no_worker_has_taken(pool):
    """A run on a queue no worker consumes is ended, without ever starting, by the cancel
    sweep of the worker that shares its runs dir; `cancel` waits for that and says so."""
    _, name, run_id, _ = run_line_fields(pool.gage_submit("train", "-q", "nobody", check=True).out)
    assert pool.status(name)["status"] == "queued"

    cancelled = pool.gage_submit("cancel", run_id, check=True)

    assert run_line_fields(cancelled.out)[::3] == ("terminated", "cancelled before it started")
    info = pool.status(name)
    assert (info["status"], info["started"]) == ("terminated", None)


def test_a_time_limit_stops_the_run(pool):
    """`--time-limit 1` has the worker stop a long run; `--wait` exits 1."""
    result = pool.gage_submit("slow", "steps=300", "--time-limit", "1", "--wait", timeout=60)
    assert result.code == 1, str(result)
    status, name, _, _ = run_line_fields(result.lines()[-1])
    assert status == "terminated"
    assert pool.status(name)["time_limit"] == 1


def test_broker_down_at_submit_then_reconcile_sends_the_run(pool):
    """With the broker unreachable the run waits in the runs dir; the worker's reconcile sends it."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = pool.gage_submit("train", "lr=0.7", "--broker", dead)

    assert_one_line_error(result, f"cannot reach the broker at {dead}", "reconcile", code=3)
    assert time.monotonic() - started < 15
    _, name, run_id, _ = run_line_fields(result.out)
    assert pool.status(run_id)["status"] == "queued"
    waited = pool.gage_submit("wait", name, "--timeout", "45", timeout=60)
    assert waited.code == 0, str(waited) + pool.bed.logs()
    info = pool.status(name)
    assert (info["status"], info["config"]["lr"]) == ("completed", 0.7)
    assert json.loads(pool.gage_submit("logs", name, check=True).out.split("loss=")[1]) == round(
        1 / (0.7 * 32), 4
    )


def test_follow_says_when_no_worker_consumes_the_queue_and_how_the_run_ended(pool):
    """A run on a queue nobody consumes: one notice on stderr, then the end line once a
    worker comes; `logs -f`, `--follow` and `wait` exit alike for the same outcome."""
    env = {**os.environ, **pool.gage_submit.env, "GAGE_NO_WORKER_NOTICE": "0.3"}
    proc = subprocess.Popen(
        [*gage_submit_command(), "train", "--queue", "nobody", "--follow"],
        cwd=pool.project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        _, name, run_id, _ = run_line_fields(proc.stdout.readline())
        notice = proc.stderr.readline()
        assert notice.startswith(f"gage-submit: run {name} ({run_id[:8]}) has waited ")
        assert "on queue 'nobody', which no worker consumes" in notice
        assert notice.endswith("(start one: gage-worker -Q nobody); still waiting\n")
        pool.bed.start_worker("-Q", "nobody", "-c", "1")
        assert proc.wait(60) == 0
        end = proc.stderr.read().splitlines()
    finally:
        proc.kill()
    assert len(end) == 1 and end[0].startswith(f"{name} ({run_id[:8]}): completed in ")

    failed = run_line_fields(pool.gage_submit("fail", "code=3", check=True).out)
    codes = {
        "submit --follow": pool.gage_submit("fail", "code=3", "--follow", timeout=60),
        "wait": pool.gage_submit("wait", failed[2], timeout=60),
        "logs -f": pool.gage_submit("logs", "-f", failed[2], timeout=60),
    }
    assert {name: result.code for name, result in codes.items()} == {
        "submit --follow": 1, "wait": 1, "logs -f": 1}
    assert codes["submit --follow"].err.strip().endswith("error (exit 3)")
    assert codes["logs -f"].err.strip() == f"{failed[1]} ({failed[2][:8]}): error (exit 3)"
