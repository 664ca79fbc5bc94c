"""Hostile messages: rejected and logged; nothing runs; the worker goes on."""

from __future__ import annotations

import os
import re

from support.workers import wait_for

from gage_runs.meta import meta_timestamp, write_timestamp
from gage_runs.status import run_status
from gage_worker.celery_app import EXEC_TASK, FINALIZE_TASK
from gage_worker.enqueue import BrokerSession


def test_hostile_messages_are_rejected(redis_bed, tmp_path):
    other_runs = tmp_path / "other-runs"
    foreign = redis_bed.stage(runs_dir=other_runs)  # a run of another runs dir
    smuggled = redis_bed.stage(runs_dir=other_runs)  # linked into ours
    for suffix in (".meta", ""):
        os.symlink(f"{smuggled.run_dir}{suffix}", redis_bed.runs_dir / f"{smuggled.id}{suffix}")
    plain = redis_bed.stage()  # staged by Gage itself, not submitted to the queue
    write_timestamp(plain, "started")  # as if `gage run` were running it
    worker = redis_bed.start_worker("-c", "1")
    hostile = ["../../etc", "not-a-run", foreign.id, smuggled.id, foreign.meta_dir,
               foreign.id.upper(), f"{foreign.id}/../../etc"]

    with BrokerSession(redis_bed.settings()) as session:
        for arg in hostile:
            session.send(EXEC_TASK, arg, "gage")
        session.send(FINALIZE_TASK, "../../etc", "gage-finalize")
        session.send(EXEC_TASK, plain.id, "gage")
        session.send(FINALIZE_TASK, plain.id, "gage-finalize")
        session.send(EXEC_TASK, ["../../etc"], "gage")  # type: ignore[arg-type]
    good = redis_bed.stage_and_submit(1)

    assert redis_bed.wait_status(good) == {good[0].id: "completed"}
    wait_for(lambda: worker.log().count("rejected exec message") >= len(hostile) + 1, 10,
             "every hostile message to be rejected")
    log = worker.log()
    assert "rejected exec message: not a run id: '../../etc'" in log
    assert "rejected exec message: not a run id: 'not-a-run'" in log
    assert f"rejected exec message: no run {foreign.id} in" in log
    assert f"rejected exec message: run {smuggled.id} resolves outside the runs dir" in log
    assert "rejected finalize message: not a run id: '../../etc'" in log
    assert redis_bed.executions(foreign) == redis_bed.executions(smuggled) == []
    assert run_status(foreign) == run_status(smuggled) == "staged"
    wait_for(lambda: len(re.findall(f"run {plain.id}: .*not submitted to the queue", worker.log()))
             == 2, 10,
             "messages naming a run outside the queue to be ignored")
    assert redis_bed.executions(plain) == [] and meta_timestamp(plain, "stopped") is None
    assert worker.proc.poll() is None
    assert redis_bed.redis.client().llen("gage") == 0
