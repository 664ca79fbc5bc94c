"""`gage-submit pool`, `priority`, and `show`'s waiting line, read from a runs dir alone.

The pool is made in this process as workers and keepers make it: a live
node is its info file (`pool.write_node_info`) plus its node lock held
here (a real OFD lock: `gage-submit` probes it from its own process); a
run holding a slot or GPU is that lock held here with its holder written
into it (`pool.write_holder`). Runs are real staged runs of the test
project, submitted without a broker (`record_submission`, which writes
the waiting index too).
"""

from __future__ import annotations

import os
import time

import pytest
from support.submit_cli import assert_one_line_error

from gage_queue.broker.send import record_submission
from gage_queue.layout import gpu_lock, node_lock, slot_lock
from gage_queue.locks import lock_fd, open_lock_file, try_lock
from gage_queue.pool import (
    Holder,
    NodeInfo,
    request_drain,
    write_holder,
    write_node_info,
)
from gage_queue.queue_meta import read_submitted
from gage_queue.requests import RunRequest
from gage_queue.waiting import (
    Waiting,
    add_waiting,
    commit_placement,
    read_waiting_entry,
    waiting_from,
)
from gage_runs.meta import make_run_timestamp
from gage_runs.names import run_name_for_id

GPU_NODE = NodeInfo(node="w1@gpu-a", host="gpu-a", queues=("gpu",), slots=2, gpus=("0", "1"))
CPU_NODE = NodeInfo(node="w2@cpu-b", host="cpu-b", queues=("gage",), slots=1)
DRAINING = NodeInfo(node="w3@cpu-b", host="cpu-b", queues=("gage",), slots=1)
MINUTE = 60_000_000
SOME_ID = "0123abcd-0000-4000-8000-000000000000"


class Pool:
    """Live nodes and held slots and GPUs of a runs dir, held by this test process."""

    def __init__(self, runs_dir: str):
        self.runs_dir = runs_dir
        self.fds: list[int] = []

    def _hold(self, path: str) -> int:
        fd = open_lock_file(path, create=True)
        assert lock_fd(fd)
        self.fds.append(fd)
        return fd

    def node(self, info: NodeInfo, *, draining: bool = False) -> NodeInfo:
        write_node_info(self.runs_dir, info)
        self._hold(node_lock(self.runs_dir, info.host, info.node))
        if draining:
            request_drain(self.runs_dir, info.host, info.node)
        return info

    def holds(self, info: NodeInfo, run_id: str, *, slot: int, gpus: tuple[str, ...] = (),
              since: int | None = None) -> None:
        holder = Holder(run_id, since if since is not None else make_run_timestamp(), None)
        write_holder(self._hold(slot_lock(self.runs_dir, info.host, info.node, slot)), holder)
        for gpu in gpus:
            write_holder(self._hold(gpu_lock(self.runs_dir, info.host, gpu)), holder)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


@pytest.fixture
def pool(runs):
    made = Pool(str(runs.runs_dir))
    yield made
    made.close()


def queued(runs, queue: str = "gage", *, gpus: int | None = None, priority: int = 0):
    """A staged run submitted to `queue` with this request, as `gage-submit` records one."""
    run = runs.staged()
    record_submission(run, queue=queue, request=RunRequest(gpus, priority))
    time.sleep(0.002)  # distinct submit times: the order within a priority
    return run


def waiting_table(out: str, queue: str) -> list[list[str]]:
    """The rows (name, priority, gpus, waited, why) of a queue's waiting list in `pool`."""
    lines = out.split(f"\nqueue {queue} ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    header, *rows = [line for line in lines if line.startswith("  ")]
    why = header.index("why it waits")
    table = []
    for row in rows:
        if row.startswith("  and "):
            break
        table.append([*row[:why].split(), row[why:]])
    return table


@pytest.fixture
def scene(runs, pool):
    """gpu-a: a 2-GPU node on queue gpu, a running run on slot 0 and GPU 0 since 3m;
    cpu-b: a free node on queue gage and a draining one. Waiting on gpu: `big` (2 GPUs),
    then `one` (1 GPU), then `default`; on gage: `sent` (placed), then `plain`; on nobody:
    `orphan`."""
    running = runs.running()  # its waiting entry stays (no keeper here): a stale entry
    pool.node(GPU_NODE)
    pool.node(CPU_NODE)
    pool.node(DRAINING, draining=True)
    pool.holds(GPU_NODE, running.id, slot=0, gpus=("0",), since=make_run_timestamp() - 3 * MINUTE)
    made = {
        "running": running,
        "big": queued(runs, "gpu", gpus=2),
        "one": queued(runs, "gpu", gpus=1),
        "default": queued(runs, "gpu"),
        "sent": queued(runs, "gage"),
        "plain": queued(runs, "gage"),
        "orphan": queued(runs, "nobody"),
    }
    with try_lock(made["sent"]) as lock:  # as a pass places it
        commit_placement(lock, lock.record(), CPU_NODE.host, CPU_NODE.node, ())
    return made


def test_pool_shows_hosts_nodes_gpus_and_why_runs_wait(scene, gage_submit):
    out = gage_submit("pool", check=True).out
    running, big, one = scene["running"], scene["big"], scene["one"]

    assert out.index("host cpu-b\n") < out.index("host gpu-a\n")  # by host name
    host_a = out.split("host gpu-a\n", 1)[1].split("\n\n", 1)[0]
    assert host_a.splitlines()[0].split() == ["node", "queues", "slots", "state"]
    assert host_a.splitlines()[1].split() == ["w1@gpu-a", "gpu", "1/2", "serving"]
    assert f"w1@gpu-a slot 0: {running.name}  3m" in host_a
    gpus = [line.split() for line in host_a.splitlines() if line.startswith("  ") and
            line.split()[0] in ("gpu", "0", "1")]
    assert gpus == [["gpu", "run", "since"], ["0", running.name, "3m"], ["1", "free", "-"]]
    host_b = out.split("host cpu-b\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split() for line in host_b.splitlines()[1:]] == [
        ["w2@cpu-b", "gage", "0/1", "serving"], ["w3@cpu-b", "gage", "0/1", "draining"]]

    assert "queue gpu (1 worker): 3 waiting, the oldest for " in out
    gpu_rows = waiting_table(out, "gpu")
    assert [row[:3] for row in gpu_rows] == [
        [big.name, "0", "2"], [one.name, "0", "1"], [scene["default"].name, "0", "default"]]
    assert gpu_rows[0][4] == "needs 2 GPUs; largest free: 1 on gpu-a"
    assert gpu_rows[1][4] == gpu_rows[2][4] == f"GPUs reserved for {big.name}"

    # the running run's stale entry is not listed; the placed run is starting
    gage_rows = waiting_table(out, "gage")
    assert [row[0] for row in gage_rows] == [scene["sent"].name, scene["plain"].name]
    assert gage_rows[0][4] == "placed on w2@cpu-b, starting"
    assert gage_rows[1][4] == "every slot of the workers of queue 'gage' is taken"
    assert "queue gage (2 workers): 2 waiting" in out
    assert "queue nobody (no worker): 1 waiting" in out
    assert waiting_table(out, "nobody")[0][4] == "no worker consumes queue 'nobody'"
    assert running.name not in out.split("queue gage", 1)[1]


def test_pool_json_has_the_same(scene, gage_submit):
    data = gage_submit("pool", "--json", check=True).json()
    running, big = scene["running"], scene["big"]
    assert [h["host"] for h in data["hosts"]] == ["cpu-b", "gpu-a"]
    cpu_b, gpu_a = data["hosts"]
    (node,) = gpu_a["nodes"]
    assert (node["node"], node["queues"], node["slots"], node["used"], node["draining"],
            node["gpus"]) == ("w1@gpu-a", ["gpu"], 2, 1, False, ["0", "1"])
    assert [(r["slot"], r["id"], r["name"]) for r in node["runs"]] == [
        (0, running.id, running.name)]
    assert [g["gpu"] for g in gpu_a["gpus"]] == ["0", "1"]
    assert gpu_a["gpus"][0]["run"]["id"] == running.id and gpu_a["gpus"][1]["run"] is None
    assert [(n["node"], n["draining"]) for n in cpu_b["nodes"]] == [
        ("w2@cpu-b", False), ("w3@cpu-b", True)]
    assert cpu_b["gpus"] == []

    queues = {q["queue"]: q for q in data["queues"]}
    assert set(queues) == {"gage", "gpu", "nobody"}
    gpu = queues["gpu"]
    assert (gpu["waiting"], gpu["nodes"]) == (3, ["w1@gpu-a"])
    assert gpu["oldest_wait"] > 0 and gpu["oldest_submitted"]
    first = gpu["runs"][0]
    assert (first["id"], first["name"], first["priority"], first["gpus"], first["placed"]) == (
        big.id, big.name, 0, 2, None)
    assert first["reason"] == "needs 2 GPUs; largest free: 1 on gpu-a"
    assert gpu["runs"][2]["gpus"] is None
    sent = queues["gage"]["runs"][0]
    assert sent["placed"] == {"host": "cpu-b", "node": "w2@cpu-b", "gpus": []}
    assert queues["nobody"]["nodes"] == []


def test_priority_reorders_the_waiting_list(scene, gage_submit, runs):
    one, big, default = scene["one"], scene["big"], scene["default"]
    result = gage_submit("priority", one.name, "10", check=True)
    assert result.out == f"priority 10 {one.name}  {one.id}  (was 0)\n"
    assert read_waiting_entry(str(runs.runs_dir), one.id).priority == 10
    # also where reconcile re-indexes it from, should its entry be missed (a shared mount)
    assert waiting_from(one.id, read_submitted(one)).priority == 10
    negative = gage_submit("priority", default.name, "-5", check=True)
    assert negative.out.startswith(f"priority -5 {default.name}  ")

    rows = waiting_table(gage_submit("pool", check=True).out, "gpu")
    assert [row[:2] for row in rows] == [[one.name, "10"], [big.name, "0"], [default.name, "-5"]]
    assert rows[0][4] == "fits on w1@gpu-a now: the next placement pass sends it there"
    assert rows[1][4] == "every slot of the workers of queue 'gpu' is taken"

    shown = gage_submit("show", one.name, "--json", check=True).json()
    assert (shown["priority"], shown["gpus"]) == (10, 1)
    listed = {r["id"]: r for r in gage_submit("list", "--json", "-a", check=True).json()}
    assert (listed[one.id]["priority"], listed[one.id]["gpus"]) == (10, 1)
    assert (listed[default.id]["priority"], listed[default.id]["gpus"]) == (-5, None)
    assert all(r["waiting_reason"] is None for r in listed.values())  # `show` says it

    as_json = gage_submit("priority", big.id, "3", "--json", check=True).json()
    assert [(r["id"], r["priority"], r["gpus"]) for r in as_json] == [(big.id, 3, 2)]


@pytest.mark.parametrize("value", ["1001", "high", "-1001", "1.5"])
def test_a_bad_priority_is_one_line_exit_2(scene, gage_submit, runs, value):
    result = gage_submit("priority", scene["one"].name, value)
    assert_one_line_error(result, "invalid priority", "-1000 to 1000")
    assert read_waiting_entry(str(runs.runs_dir), scene["one"].id).priority == 0


def test_priority_refuses_runs_not_waiting_and_changes_nothing(scene, gage_submit, runs):
    one, running = scene["one"], scene["running"]
    done = runs.finished()
    result = gage_submit("priority", one.name, running.name, "7")
    line = assert_one_line_error(result, running.name, "is running", "nothing changed")
    assert one.name not in line
    assert read_waiting_entry(str(runs.runs_dir), one.id).priority == 0
    assert result.out == ""
    result = gage_submit("priority", done.name, one.name, "7")
    assert_one_line_error(result, done.name, "not the queue's")
    assert read_waiting_entry(str(runs.runs_dir), one.id).priority == 0
    assert_one_line_error(gage_submit("priority", "7"), "Missing argument")
    assert_one_line_error(gage_submit("priority", "no-such-run", "7"), "no-such-run")


def test_show_says_why_a_queued_run_waits(scene, gage_submit):
    big = scene["big"]
    out = gage_submit("show", big.name, check=True).out
    fields = dict((name, value.strip()) for name, value in
                  (line.split(":", 1) for line in out.splitlines() if not line.startswith(" ")))
    assert fields["waiting"] == "needs 2 GPUs; largest free: 1 on gpu-a"
    assert (fields["priority"], fields["gpus"]) == ("0", "2")
    assert gage_submit("show", scene["orphan"].name, check=True).out.count(
        "waiting:   no worker consumes queue 'nobody' (start one: gage-worker -Q nobody)\n") == 1
    default = gage_submit("show", scene["default"].name, check=True).out
    assert "gpus:      1 on a GPU worker (default)\n" in default

    data = gage_submit("show", big.name, "--json", check=True).json()
    assert (data["waiting_reason"], data["priority"], data["gpus"]) == (
        "needs 2 GPUs; largest free: 1 on gpu-a", 0, 2)
    running = gage_submit("show", scene["running"].name, "--json", check=True).json()
    assert running["waiting_reason"] is None and running["priority"] == 0
    assert "waiting:" not in gage_submit("show", scene["running"].name, check=True).out


def test_pool_without_a_live_worker_says_so(runs, gage_submit, pool):
    run = queued(runs, "gpu", gpus=4)
    out = gage_submit("pool", check=True).out
    assert out.splitlines()[0] == "no live worker: no gage-worker shares this runs dir now"
    assert "queue gpu (no worker): 1 waiting" in out
    assert waiting_table(out, "gpu")[0][:3] == [run.name, "0", "4"]
    assert gage_submit("pool", "--json", check=True).json()["hosts"] == []

    # a node file whose worker is gone (its lock free) is not a live worker
    write_node_info(str(runs.runs_dir), GPU_NODE)
    assert gage_submit("pool", check=True).out == out

    empty = runs.runs_dir.parent / "empty-runs"
    data = gage_submit("pool", "--json", "--runs-dir", str(empty), check=True).json()
    assert data == {"hosts": [], "queues": []}


def test_pool_lists_the_first_runs_and_counts_the_rest(runs, gage_submit, pool):
    pool.node(CPU_NODE)
    pool.holds(CPU_NODE, SOME_ID, slot=0)  # a slot held by some run
    made = [queued(runs, "gage") for _ in range(7)]
    out = gage_submit("pool", check=True).out
    assert [row[0] for row in waiting_table(out, "gage")] == [r.name for r in made[:5]]
    assert "  and 2 more" in out
    assert f"w2@cpu-b slot 0: {run_name_for_id(SOME_ID)}" in out
    two = gage_submit("pool", "-n", "2", "--json", check=True).json()
    (gage,) = two["queues"]
    assert (gage["waiting"], [r["id"] for r in gage["runs"]]) == (7, [r.id for r in made[:2]])


def test_pool_escapes_text_from_the_runs_dir(runs, gage_submit, pool):
    evil = NodeInfo(node="w\x1b[31m@h", host="h", queues=("q\u202e",), slots=1)
    pool.node(evil)
    out = gage_submit("pool", check=True).out
    assert "\x1b" not in out and "\u202e" not in out
    assert "w\\x1b[31m@h" in out
    data = gage_submit("pool", "--json", check=True).json()
    assert data["hosts"][0]["nodes"][0]["node"] == "w\x1b[31m@h"


def test_pool_reads_the_index_once_and_plans_once_at_10000_waiting(runs, pool, monkeypatch):
    """10,000 waiting runs (entries alone, as the scheduler reads them): one read of the
    index, one plan, and the view in well under the time a person waits."""
    from gage_queue import waiting
    from gage_submit import pool_view

    pool.node(GPU_NODE)
    real = queued(runs, "gpu", priority=5)
    now = make_run_timestamp()
    for n in range(10_000):
        run_id = f"{n:08x}-0000-4000-8000-000000000000"
        add_waiting(str(runs.runs_dir), Waiting(run_id, "gpu", now - n, gpus=2))
    calls = {"read": 0, "plan": 0}

    def counted(name, real_fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real_fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(waiting, "read_waiting", counted("read", waiting.read_waiting))
    monkeypatch.setattr(pool_view, "plan", counted("plan", pool_view.plan))
    started = time.monotonic()
    view = pool_view.read_view(str(runs.runs_dir))
    took = time.monotonic() - started
    assert calls == {"read": 1, "plan": 1}
    (gpu,) = view.queues
    assert gpu.first[0].entry.run_id == real.id  # priority first; the rest have no run dir
    assert gpu.first[0].reason == "fits on w1@gpu-a now: the next placement pass sends it there"
    assert took < 10, took


def test_submit_says_when_no_live_worker_of_the_queue_has_the_gpus_asked_for(
        runs, pool, gage_submit):
    pool.node(GPU_NODE)  # queue gpu: 2 GPUs
    big = gage_submit("train", "--queue", "gpu", "--gpus", "4", check=True)
    fits = gage_submit("train", "--queue", "gpu", "--gpus", "2", check=True)

    assert big.err == ("gage-submit: no worker of queue 'gpu' has 4 GPUs (the largest has 2):"
                       " the runs wait until one does\n")
    assert fits.err == ""
    assert big.out.startswith("queued ") and fits.out.startswith("queued ")


@pytest.mark.parametrize("args, fragment", [
    (["--signal", "KILL@5", "--time-limit", "60"], "invalid --signal 'KILL@5'"),
    (["--signal", "USR1", "--time-limit", "60"], "expected SIG@SECONDS"),
    (["--signal", "USR1@soon", "--time-limit", "60"], "invalid --signal 'USR1@soon'"),
    (["--signal", "USR1@5"], "--signal needs a time limit (--time-limit)"),
    (["--signal", "USR1@2m", "--time-limit", "60"], "comes before the run starts"),
    (["--retries", "101"], "--retries"),
    (["--retry-on", "always"], "--retry-on"),
])
def test_bad_workflow_options_are_one_line_exit_2(runs, gage_submit, args, fragment):
    assert_one_line_error(gage_submit("train", *args), fragment)
    assert not any(runs.runs_dir.glob("*.meta"))  # nothing staged
