"""The embedded broker's transport (gage_queue.broker.embedded), on real folders and processes.

Consumers are real kombu connections on the transport, some in child
processes killed with SIGKILL; the last test kills a real `gage-worker`
holding claimed messages and checks that a restarted one runs each once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer
from support.workers import wait_for

from gage_queue.broker import embedded
from gage_queue.broker.config import embedded_dir, prepare_broker, prune_embedded, transport_options
from gage_queue.broker.messages import EXEC_TASK, broker_connection, publish_task, task_queue
from gage_queue.layout import node_queue
from gage_queue.settings import Settings
from gage_queue.waiting import read_placements

QUEUE = "gage"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(runs_dir=str(tmp_path / "runs"))
    prepare_broker(settings)
    return settings


def consumer_connection(settings: Settings, polling_interval: float = 0.5) -> Connection:
    conn = broker_connection(settings)
    conn.transport_options = {**transport_options(settings), "polling_interval": polling_interval}
    return conn


def send(settings: Settings, *run_ids: str) -> None:
    with broker_connection(settings) as conn:
        for run_id in run_ids:
            publish_task(conn, EXEC_TASK, [run_id], QUEUE)


def folder(settings: Settings, name: str) -> Path:
    return Path(embedded_dir(settings)) / name


def waiting(settings: Settings) -> list[Path]:
    return sorted(folder(settings, "messages").glob(f"*.{QUEUE}.msg"))


def claimed(settings: Settings) -> list[Path]:
    return sorted(folder(settings, "claimed").glob(f"*/*.{QUEUE}.msg"))


def run_ids(messages: list[Any]) -> list[str]:
    return [message.payload[0][0] for message in messages]


def consume(conn: Connection, count: int, *, ack: bool, prefetch: int = 10,
            timeout: float = 10) -> list[Any]:
    """Take `count` messages from QUEUE on `conn`, acking them or not."""
    got: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        got.append(message)
        if ack:
            message.ack()

    with Consumer(conn.default_channel, [task_queue(QUEUE)], callbacks=[on_message],
                  accept=["json"], prefetch_count=prefetch):
        deadline = time.monotonic() + timeout
        while len(got) < count:
            conn.drain_events(timeout=max(0.01, deadline - time.monotonic()))
    return got


def claim_and_hang(settings_json: str, count: int) -> None:
    """Child process: claim `count` messages, never ack, wait to be killed."""
    settings = Settings(**json.loads(settings_json))
    conn = consumer_connection(settings)
    consume(conn, count, ack=False)
    time.sleep(60)


def test_messages_are_taken_in_order_and_acks_delete_them(settings):
    send(settings, "r1", "r2", "r3")
    assert len(waiting(settings)) == 3
    with consumer_connection(settings) as conn:
        got = consume(conn, 3, ack=True)
    assert run_ids(got) == ["r1", "r2", "r3"]
    assert waiting(settings) == [] and claimed(settings) == []


def test_a_clean_close_puts_unacked_messages_back(settings):
    send(settings, "r1", "r2")
    conn = consumer_connection(settings)
    got = consume(conn, 2, ack=False)
    assert run_ids(got) == ["r1", "r2"]
    assert len(claimed(settings)) == 2 and waiting(settings) == []
    conn.close()
    assert claimed(settings) == [] and len(waiting(settings)) == 2
    assert list(folder(settings, "claimed").iterdir()) == []
    with consumer_connection(settings) as again:
        assert run_ids(consume(again, 2, ack=True)) == ["r1", "r2"]


def test_messages_claimed_by_a_killed_consumer_come_back(settings):
    send(settings, "r1", "r2", "r3")
    ctx = multiprocessing.get_context("spawn")
    fields = {"runs_dir": settings.runs_dir}
    child = ctx.Process(target=claim_and_hang, args=(json.dumps(fields), 2))
    child.start()
    try:
        wait_for(lambda: len(claimed(settings)) == 2, 20, "the child to claim 2 messages")
        assert prune_embedded(settings) == 0, "a live consumer's claims stay with it"
        assert len(claimed(settings)) == 2
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert prune_embedded(settings) == 2
        assert claimed(settings) == [] and len(waiting(settings)) == 3
        with consumer_connection(settings) as conn:
            assert sorted(run_ids(consume(conn, 3, ack=True))) == ["r1", "r2", "r3"]
    finally:
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)


def test_a_consumer_restores_dead_claims_when_it_starts(settings):
    dead = folder(settings, "claimed") / "otherhost-123-abcdef12"
    dead.mkdir()
    (dead / "lock").touch()
    send(settings, "r1")
    waiting(settings)[0].rename(dead / waiting(settings)[0].name)
    with consumer_connection(settings) as conn:
        assert run_ids(consume(conn, 1, ack=True)) == ["r1"]
    assert not dead.exists()


def test_a_half_written_message_is_not_taken(settings):
    (folder(settings, "messages") / f".0_x.{QUEUE}.msg.tmp").write_text('{"bod')
    send(settings, "r1")
    with consumer_connection(settings) as conn:
        assert run_ids(consume(conn, 1, ack=True)) == ["r1"]
        with pytest.raises(TimeoutError):
            consume(conn, 1, ack=True, timeout=0.3)


def test_an_unreadable_message_is_moved_aside_and_the_next_one_taken(settings):
    (folder(settings, "messages") / f"00000000000000000000_bad.{QUEUE}.msg").write_text("{not json")
    send(settings, "r1")
    with consumer_connection(settings) as conn:
        assert run_ids(consume(conn, 1, ack=True)) == ["r1"]
    rejected = list(folder(settings, "rejected").iterdir())
    assert [p.name for p in rejected] == [f"00000000000000000000_bad.{QUEUE}.msg"]
    assert waiting(settings) == [] and claimed(settings) == []


def test_reconcile_prunes_old_broadcasts_only(settings):
    messages = folder(settings, "messages")
    old = messages / "1_a.gone@host.celery.pidbox.msg"
    fresh = messages / "2_b.w0@host.celery.pidbox.msg"
    for path in (old, fresh):
        path.write_text("{}")
    send(settings, "r1")
    task = waiting(settings)[0]
    hour_ago = time.time() - 3600
    for path in (old, task):
        os.utime(path, (hour_ago, hour_ago))
    assert prune_embedded(settings) == 0
    assert not old.exists() and fresh.exists() and task.exists()


def test_a_waiting_consumer_wakes_on_a_new_message_not_on_its_poll(settings):
    """With a 30 s poll, only the inotify wake-up can deliver within seconds."""
    with consumer_connection(settings, polling_interval=30) as conn:
        consume_started = time.monotonic()
        timer = threading.Timer(0.3, send, (settings, "r1"))
        timer.start()
        got = consume(conn, 1, ack=True, timeout=20)
        timer.join()
    assert run_ids(got) == ["r1"]
    assert time.monotonic() - consume_started < 5


def test_an_ack_wakes_a_consumer_held_back_by_its_prefetch_limit(settings):
    """Prefetch 1: the second message is taken as soon as the first is acked, not on a poll."""
    send(settings, "r1", "r2")
    got: list[Any] = []
    acked_at: list[float] = []

    def on_message(body: Any, message: Any) -> None:
        got.append((time.monotonic(), message))
        if len(got) == 1:
            def ack_later() -> None:
                time.sleep(0.3)
                acked_at.append(time.monotonic())
                message.ack()
            threading.Thread(target=ack_later).start()
        else:
            message.ack()

    with consumer_connection(settings, polling_interval=30) as conn, Consumer(
        conn.default_channel, [task_queue(QUEUE)], callbacks=[on_message],
        accept=["json"], prefetch_count=1,
    ):
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            conn.drain_events(timeout=deadline - time.monotonic())
    assert run_ids([m for _, m in got]) == ["r1", "r2"]
    assert got[1][0] >= acked_at[0], "the second message waited for the first one's ack"
    assert got[1][0] - acked_at[0] < 5


@pytest.mark.system
def test_runs_claimed_by_a_killed_worker_run_once_after_a_restart(worker_bed):
    """kill -9 a worker holding claimed runs it has not started; a new worker runs each once.

    The pool children are stopped first, so the worker places two runs on
    its two slots and claims their messages but cannot start them (the
    third run waits in the runs dir: no slot is left). The new worker
    takes the dead one's name, so the transport's restore brings the two
    messages back to the same node's queue.
    """
    env = worker_bed.worker_env(GAGE_RECONCILE_THRESHOLD="3600")
    first = worker_bed.start_worker("-c", "2", env=env)
    pool = first.pool()
    assert len(pool) == 2
    for child in pool:
        child.suspend()
    settings = worker_bed.settings(reconcile_threshold=3600.0)
    runs = worker_bed.stage_and_submit(3)
    claimed_any = lambda: sorted(folder(settings, "claimed").glob("*/*.msg"))  # noqa: E731
    # Its own node's queue: a submit's message, also claimed for a moment, is only a wake-up.
    placed_claimed = lambda: sorted(  # noqa: E731
        folder(settings, "claimed").glob(f"*/*.{node_queue(first.node)}.msg"))
    wait_for(lambda: len(placed_claimed()) == 2, 20, "the worker to claim its 2 placed runs")
    # The submits' messages are acked as they come, unless the two claimed ones filled the
    # prefetch window first: then the last waits in the broker.
    assert len(waiting(settings)) <= 1
    assert len(read_placements(str(worker_bed.runs_dir))) == 2
    first.kill()
    assert all(worker_bed.executions(run) == [] for run in runs)

    worker_bed.start_worker("-c", "2", env=env)
    statuses = worker_bed.wait_status(runs, timeout=30)
    assert set(statuses.values()) == {"completed"}, worker_bed.logs()
    assert [len(worker_bed.executions(run)) for run in runs] == [1, 1, 1]
    assert claimed_any() == [] and waiting(settings) == []



def test_without_inotify_a_consumer_polls_often(settings, monkeypatch):
    """Where inotify is missing, the 0.05 s re-scan delivers despite a 30 s poll setting."""
    monkeypatch.setattr(embedded, "_watch", lambda folder: None)
    with consumer_connection(settings, polling_interval=30) as conn:
        started = time.monotonic()
        timer = threading.Timer(0.3, send, (settings, "r1"))
        timer.start()
        got = consume(conn, 1, ack=True, timeout=20)
        timer.join()
        assert not conn.transport._waker.watching
    assert run_ids(got) == ["r1"]
    assert time.monotonic() - started < 5
