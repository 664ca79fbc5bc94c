"""What a worker finds at start: its runs dir, as gage-submit finds it, and a node
name of its own on a host shared with other workers."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
from support.workers import Worker, node_name, wait_for, worker_command

from gage_queue.broker.send import submit_run
from gage_queue.queue_meta import read_enqueued
from gage_queue.settings import Settings
from gage_queue.snapshots import run_state
from gage_runs.gagefile import runs_dir_source
from gage_runs.meta import init_run_meta, make_run
from gage_runs.staging import stage_run
from gage_runs.types import OpCmd, OpDef, OpRef

pytestmark = pytest.mark.system

HOST = socket.gethostname()


def _start(bed, cwd, name: str, *args: str, env=None, runs_dir=None) -> Worker:
    """Start a worker in `cwd`; ready once it answers a ping (`runs_dir`: the one it finds)."""
    env = env or bed.worker_env()
    log_path = bed.root / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*worker_command(), *args], cwd=cwd, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    settings = Settings.from_env({**env, **({"GAGE_RUNS": runs_dir} if runs_dir else {})})
    worker = Worker(proc, log_path, node_name(list(args)), settings)
    bed.workers.append(worker)
    worker.wait_ready()
    return worker


def test_a_worker_in_a_project_finds_the_runs_dir_gage_submit_uses(worker_bed):
    """No GAGE_RUNS: the project's `.gage/runs`, as for gage-submit; made if missing, and said."""
    project = worker_bed.root / "fresh"
    project.mkdir()
    (project / "gage.toml").write_text('[hello]\nexec = "python hello.py"\n')
    (project / "hello.py").write_text("print('hello')\n")
    env = worker_bed.worker_env()
    del env["GAGE_RUNS"]
    expected, source, from_project = runs_dir_source(str(project), None, env)
    assert from_project
    assert expected == str(project / ".gage" / "runs") and not (project / ".gage").exists()

    worker = _start(worker_bed, project, "in-project", "--hostname", "p@%h", env=env,
                    runs_dir=expected)
    assert f"runs dir {expected} (from the project {project})" in worker.log()

    run = make_run(OpRef("fresh", "hello"), expected)
    init_run_meta(run, OpDef("hello", {"exec": "python hello.py"}), {},
                  OpCmd(["python", "hello.py"], {}))
    stage_run(run, str(project))
    submit_run(run, settings=Settings.from_env({"GAGE_RUNS": expected}))
    wait_for(lambda: run_state(run) == "completed", 30, "the worker to run the project's run")


def test_a_worker_without_a_project_or_runs_dir_says_so(worker_bed):
    env = worker_bed.worker_env(HOME=str(worker_bed.root / "home"))
    del env["GAGE_RUNS"]
    proc = subprocess.run([*worker_command()], cwd=worker_bed.root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gage-worker: error: ")
    assert ".gage/runs" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_two_workers_on_a_host_get_distinct_default_names(worker_bed):
    """gage@HOST, then gage2@HOST; a worker restarted after the first died gets its name."""
    first = _start(worker_bed, worker_bed.root, "first")
    second = _start(worker_bed, worker_bed.root, "second")
    assert f"gage@{HOST} ready." in first.log()
    assert f"gage2@{HOST} ready." in second.log()
    assert "DuplicateNodenameWarning" not in first.log() + second.log()

    first.kill()
    third = _start(worker_bed, worker_bed.root, "third")
    assert f"gage@{HOST} ready." in third.log()


def test_runs_queued_before_the_first_worker_are_sent_once(worker_bed):
    """200 runs wait on the embedded broker longer than the reconcile threshold; the
    first worker's reconcile passes (every second here) re-send none of those its
    pool has claimed: each runs once, and no exec task is sent twice."""
    runs = worker_bed.stage_and_submit(200)
    threshold = float(worker_bed.settings().reconcile_threshold)
    stamps = {run.id: read_enqueued(run) for run in runs}
    oldest = min(stamps.values()) / 1e6
    wait_for(lambda: time.time() - oldest > threshold, threshold + 5, "the runs to be stale")

    worker = worker_bed.start_worker("-c", "2")
    assert worker_bed.wait_status(runs, timeout=240) == {run.id: "completed" for run in runs}
    assert {run.id: len(worker_bed.executions(run)) for run in runs} == {run.id: 1 for run in runs}
    assert {run.id: read_enqueued(run) for run in runs} == stamps  # none was sent again
    assert "re-sent to queue" not in worker.log()
