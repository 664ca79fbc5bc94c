"""A worker's death costs no minutes: its run goes on under its keeper and, once it
ends, is finalized by the next reconcile pass, not after the re-send threshold."""

from __future__ import annotations

import time

import pytest
from support.workers import wait_for

from gage_queue.locks import read_record
from gage_queue.snapshots import run_state
from gage_queue.states import RunState
from gage_worker.reconcile import FIRST_FINALIZE_GRACE

pytestmark = pytest.mark.system


def test_a_run_whose_worker_died_is_finalized_soon_after_it_ends(redis_bed):
    """Redis keeps the dead worker's unacked message for the visibility timeout (a day
    by default) and reconcile re-sends after 300 s: neither may be what finalizes it."""
    worker_bed = redis_bed
    env = worker_bed.worker_env(GAGE_RECONCILE_THRESHOLD="300", GAGE_VISIBILITY_TIMEOUT="86400")
    first = worker_bed.start_worker("-c", "1", env=env)
    run = worker_bed.submit(worker_bed.stage(sleep=1.5))  # the kill comes at once
    wait_for(lambda: worker_bed.executions(run), 20, "the run to start")
    first.kill()  # the worker and its pool: the keeper goes on with the run
    assert run_state(run) is RunState.RUNNING

    wait_for(lambda: run_state(run) is RunState.FINALIZING, 30, "the run to end under its keeper")
    ended = read_record(run).ended / 1e6
    worker_bed.start_worker("-c", "1", env=env)  # reconciles every second (TEST_ENV)
    wait_for(lambda: run_state(run) is RunState.COMPLETED, FIRST_FINALIZE_GRACE + 20,
             "the run to be finalized")
    assert time.time() - ended < FIRST_FINALIZE_GRACE + 20  # not the 300 s threshold
    assert len(worker_bed.executions(run)) == 1
