"""`submit_runs`: many runs over one connection; with the broker down, queued for reconcile."""

from __future__ import annotations

from pathlib import Path

import pytest

import gage_queue.broker.send as enqueue
from gage_queue.broker.send import BrokerSession, submit_runs
from gage_queue.errors import BrokerUnavailable, SettingsError
from gage_queue.queue_meta import read_enqueued, read_submitted
from gage_queue.snapshots import run_state


@pytest.fixture
def connects(monkeypatch) -> list[bool]:
    """Every broker connection attempt of a BrokerSession (`fresh` for each)."""
    attempts: list[bool] = []
    connect = BrokerSession._connect

    def counted(self: BrokerSession, *, fresh: bool):
        attempts.append(fresh)
        return connect(self, fresh=fresh)

    monkeypatch.setattr(BrokerSession, "_connect", counted)
    return attempts


@pytest.mark.system
def test_submit_runs_sends_every_run(redis_bed):
    runs = [redis_bed.stage() for _ in range(4)]

    assert submit_runs(iter(runs), queue="cpu", time_limit=30, settings=redis_bed.settings()) == runs

    for run in runs:
        submitted = read_submitted(run)
        assert (submitted["queue"], submitted["time_limit"], submitted["schedule"]) == ("cpu", 30, None)
        assert read_enqueued(run) is not None
    assert redis_bed.redis.client().llen("cpu") == 4
    worker = redis_bed.start_worker("-Q", "cpu")
    assert set(redis_bed.wait_status(runs).values()) == {"completed"}
    assert worker.proc.poll() is None


@pytest.mark.system
def test_submit_runs_with_the_broker_down(redis_bed, connects):
    """One connection attempt; every run recorded and queued; reconcile sends them later."""
    redis_bed.redis.stop()
    runs = [redis_bed.stage() for _ in range(5)]

    with pytest.raises(BrokerUnavailable) as raised:
        submit_runs(runs, settings=redis_bed.settings(), schedule="nightly")

    message = str(raised.value)
    assert message.startswith(f"cannot reach the broker at {redis_bed.redis.url}: ")
    assert message.endswith(
        "; 5 of 5 runs stay queued and reconcile sends them when the broker is back"
    )
    assert "\n" not in message
    assert connects == [False], "no send tried after the broker was found down"
    for run in runs:
        assert run_state(run) == "queued"
        assert read_submitted(run)["schedule"] == "nightly"
        assert read_enqueued(run) is None

    redis_bed.redis.start()
    redis_bed.start_worker()  # its reconcile sends the queued runs
    assert set(redis_bed.wait_status(runs, timeout=40).values()) == {"completed"}
    assert [len(redis_bed.executions(run)) for run in runs] == [1] * 5


@pytest.mark.system
def test_submit_runs_when_the_broker_goes_down_midway(redis_bed, connects, monkeypatch):
    """Runs sent before the broker went down are sent; the rest stay queued, untried."""
    runs = [redis_bed.stage() for _ in range(5)]
    write_enqueued = enqueue.write_enqueued

    def then_stop_after_two(run):
        write_enqueued(run)
        if run is runs[1]:
            redis_bed.redis.stop()

    monkeypatch.setattr(enqueue, "write_enqueued", then_stop_after_two)

    with pytest.raises(BrokerUnavailable, match="; 3 of 5 runs stay queued and reconcile"):
        submit_runs(runs, settings=redis_bed.settings())

    assert [read_enqueued(run) is not None for run in runs] == [True, True, False, False, False]
    assert all(run_state(run) == "queued" for run in runs)
    # The connection, then a fresh one when the third send failed; none after.
    assert connects == [False, True]


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"time_limit": 0}, ValueError),
        ({"queue": "no spaces"}, SettingsError),
    ],
)
def test_submit_runs_checks_its_input_before_writing(worker_bed, kwargs, error):
    runs = [worker_bed.stage() for _ in range(2)]

    with pytest.raises(error):
        submit_runs(runs, settings=worker_bed.settings(), **kwargs)

    assert not any((Path(run.meta_dir) / "queue").exists() for run in runs)
