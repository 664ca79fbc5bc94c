"""The placement decision (`gage_queue.placement.plan`): pure, so every rule is checked here
on hand-made pools; tests/test_scheduling.py checks the same rules on real hosts."""

from __future__ import annotations

from gage_queue.placement import plan
from gage_queue.pool import Holder, NodeInfo, NodeState, PoolState
from gage_queue.waiting import Placement, Waiting
from gage_runs.names import make_run_id, run_name_for_id

S = 1_000_000  # µs


def node(name, host, gpus=(), slots=None, queues=("gage",), draining=False, busy=()):
    info = NodeInfo(name, host, tuple(queues), slots or max(len(gpus), 1), tuple(gpus))
    slots = [Holder(run) for run in busy] + [None] * (info.slots - len(busy))
    return NodeState(info, draining, slots)


def pool(*nodes, held=None):
    gpus: dict = {}
    for n in nodes:
        host = gpus.setdefault(n.info.host, {})
        for gpu in n.info.gpus:
            host[gpu] = (held or {}).get((n.info.host, gpu))
    return PoolState(list(nodes), gpus)


def waiting(run_id, gpus=None, priority=0, at=0, queue="gage", limit=None):
    return Waiting(run_id, queue, at, gpus, priority, limit)


def placed(decided):
    return {a.run_id: (a.node.node, a.gpus) for a in decided.assignments}


def test_higher_priority_first_then_the_earlier_submit():
    p = pool(node("a", "ha", gpus=("0",)))
    decided = plan([waiting("old", at=1), waiting("new", at=2), waiting("urgent", priority=5, at=3)],
                   p, [], 0)
    assert placed(decided) == {"urgent": ("a", ("0",))}
    assert decided.reasons["old"] == "every slot of the workers of queue 'gage' is taken"


def test_n_gpus_of_one_host_best_fit_and_cpu_runs_prefer_cpu_nodes():
    p = pool(node("a", "ha", gpus=("0", "1", "2", "3")), node("b", "hb", gpus=("0", "1")),
             node("c", "hc", slots=2))
    decided = plan([waiting("two", gpus=2, at=1), waiting("four", gpus=4, at=2),
                    waiting("cpu", gpus=0, at=3)], p, [], 0)
    assert placed(decided) == {"two": ("b", ("0", "1")), "four": ("a", ("0", "1", "2", "3")),
                               "cpu": ("c", ())}


def test_a_gpu_held_or_placed_is_not_free():
    p = pool(node("a", "ha", gpus=("0", "1"), slots=4), held={("ha", "0"): Holder("r")})
    on_its_way = [Placement("x", "ha", "a", ("1",), 0)]
    decided = plan([waiting("x", gpus=1), waiting("y", gpus=1, at=1)], p, on_its_way, 0)
    assert placed(decided) == {}
    assert decided.reasons["y"] == "needs 1 GPU; largest free: 0 on ha"


def test_a_big_run_reserves_the_gpus_freeing_up_and_smaller_later_runs_do_not_take_them():
    p = pool(node("a", "ha", gpus=("0", "1", "2", "3")),
             held={("ha", "0"): Holder("r1"), ("ha", "1"): Holder("r2")})
    big = make_run_id()
    decided = plan([waiting(big, gpus=4, at=1), waiting("small", gpus=1, at=2)], p, [], 0)
    assert placed(decided) == {}
    assert decided.reservations["ha"].run_id == big
    assert decided.reservations["ha"].gpus == ("2", "3")
    assert decided.reasons["small"] == f"GPUs reserved for {run_name_for_id(big)}"


def test_backfill_only_what_ends_before_the_reserved_run_could_start():
    p = pool(node("a", "ha", gpus=("0", "1")),
             held={("ha", "0"): Holder("r1", until=100 * S)})
    runs = [waiting(make_run_id(), gpus=2, at=1), waiting("quick", gpus=1, at=2, limit=50),
            waiting("slow", gpus=1, at=3, limit=500)]
    assert placed(plan(runs, p, [], 10 * S)) == {"quick": ("a", ("1",))}
    assert placed(plan(runs[::2], p, [], 10 * S)) == {}  # a holder without a known end: none


def test_why_runs_wait():
    p = pool(node("a", "ha", gpus=("0", "1")), node("d", "hd", queues=("cpu",), draining=True))
    decided = plan([waiting("huge", gpus=8), waiting("nobody", queue="other"),
                    waiting("drained", queue="cpu")], p, [], 0)
    assert decided.reasons == {
        "huge": "needs 8 GPUs; the largest worker of queue 'gage' has 2 GPUs",
        "nobody": "no worker consumes queue 'other'",
        "drained": "every worker of queue 'cpu' is draining",
    }
    assert placed(decided) == {}


def test_a_default_run_takes_one_gpu_on_a_gpu_node_and_none_elsewhere():
    p = pool(node("a", "ha", gpus=("0",)), node("c", "hc"))
    decided = plan([waiting("one", at=1), waiting("two", at=2)], p, [], 0)
    assert placed(decided) == {"one": ("c", ()), "two": ("a", ("0",))}


def test_a_higher_priority_run_preempts_the_fewest_lowest_preemptible_runs():
    hold = {("ha", "0"): Holder("p1", since=1, preemptible=True),
            ("ha", "1"): Holder("p1", since=1, preemptible=True),
            ("ha", "2"): Holder("p2", since=2, priority=-1, preemptible=True),
            ("ha", "3"): Holder("p2", since=2, priority=-1, preemptible=True)}
    a = node("a", "ha", gpus=("0", "1", "2", "3"))
    a.slots[:2] = [hold[("ha", "0")], hold[("ha", "2")]]  # as their keepers wrote them
    urgent, low = make_run_id(), make_run_id()
    hold = {key: Holder(low if h.run_id == "p2" else h.run_id, h.since, None, h.priority,
                        h.preemptible) for key, h in hold.items()}
    a.slots[1] = hold[("ha", "2")]
    decided = plan([waiting(urgent, gpus=2, priority=10)], pool(a, held=hold), [], 0)
    assert decided.preemptions == {low: urgent}  # one run frees two GPUs: the lowest first
    assert decided.reasons[urgent] == f"preempting {run_name_for_id(low)}"
    assert placed(decided) == {}


def test_never_for_an_equal_priority_nor_a_run_not_preemptible_nor_one_preempted_often():
    for holder in (Holder("r", preemptible=True, priority=5), Holder("r", priority=0),
                   Holder("r", preemptible=True, preempted=3)):
        a = node("a", "ha", gpus=("0",))
        a.slots[0] = holder
        decided = plan([waiting("u", gpus=1, priority=5)], pool(a, held={("ha", "0"): holder}),
                       [], 0)
        assert decided.preemptions == {}


def test_past_the_runs_explained_a_run_that_fits_is_still_found_behind_many_that_do_not():
    """The plan skips runs asking what was refused before (nothing handed out since):
    a different ask behind them, even the last of hundreds, is still placed."""
    a = node("a", "ha", gpus=("0", "1"), slots=8)
    b = node("b", "hb", gpus=("0", "1", "2", "3"), slots=8,
             busy=("x",))
    held = {("hb", g): Holder("x") for g in ("0", "1", "2", "3")}
    big = [waiting(f"big{i}", gpus=4, at=i) for i in range(300)]
    small = waiting("small", gpus=1, at=1000)
    decided = plan([*big, small], pool(a, b, held=held), [], 0)
    assert placed(decided) == {"small": ("a", ("0",))}
    assert len(decided.reasons) == 20  # the first ones explained
