"""Where waiting runs go: one pure decision from the waiting runs and the pool's state.

`plan()` walks the waiting runs in order (higher priority first, then the
earlier submit) and gives each the first fit it can have now: a live,
not draining node that consumes its queue, with a free slot and, on its
host, as many free GPUs as it asks for (best fit: the host left with the
fewest free GPUs, so whole hosts stay free for big runs; a run that did not ask for
GPUs prefers a node without them).

**Reservations** keep big runs from starving: a run that does not fit now
earmarks the free GPUs of the host where it can start soonest (the most
free GPUs of a host big enough), and runs after it in the order do not
take them. Only a run that provably ends first may use them (backfill, as
SLURM's): its time limit ends before the reserved run could start, which
is known when the runs holding that host's GPUs have time limits too.
So a 4-GPU run behind a stream of 1-GPU runs starts once the runs already
on its host end.

Nothing here reads a file or the clock: `gage_worker.scheduler` reads the
runs dir, calls `plan`, and acts on it under the run locks; `gage-submit
pool` and `show` call it to say why a run waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gage_queue.pool import Holder, NodeInfo, NodeState, PoolState
from gage_queue.requests import gpu_words
from gage_queue.waiting import Placement, Waiting
from gage_runs.names import run_name_for_id

MAX_RESERVATIONS = 8
MAX_PREEMPTIONS = 3  # a run preempted this many times in a row is not preempted again
EXPLAIN = 20  # reasons are given for this many waiting runs per queue


@dataclass(frozen=True)
class Assignment:
    """Start `run_id` on `node` with these GPUs (in CUDA_VISIBLE_DEVICES order)."""

    run_id: str
    node: NodeInfo
    gpus: tuple[str, ...]


@dataclass(frozen=True)
class Reservation:
    """GPUs of `host` kept for `run_id`; `start_by`: when it can start at the latest (µs),
    None if not known (a run holding them has no time limit)."""

    run_id: str
    host: str
    gpus: tuple[str, ...]
    start_by: int | None


@dataclass
class Plan:
    assignments: list[Assignment] = field(default_factory=list)
    reservations: dict[str, Reservation] = field(default_factory=dict)  # by host
    reasons: dict[str, str] = field(default_factory=dict)  # run id -> why it waits
    preemptions: dict[str, str] = field(default_factory=dict)  # victim id -> the run it frees for


@dataclass
class _Free:
    """What a plan may still hand out: free slots per node, free GPUs per host."""

    slots: dict[str, int]
    gpus: dict[str, list[str]]  # host -> free GPU ids, in the order nodes list them

    def node_gpus(self, node: NodeInfo) -> list[str]:
        free = self.gpus.get(node.host, [])
        return [gpu for gpu in node.gpus if gpu in free]


def plan(waiting: list[Waiting], pool: PoolState, placed: list[Placement], now: int) -> Plan:
    """Assignments for the runs that fit now, reservations, and why the first others wait."""
    result = Plan()
    nodes = pool.nodes
    free = _free_now(pool, placed, {w.run_id for w in waiting})
    on_their_way = {p.run_id for p in placed}
    explained: dict[str, int] = {}
    # A run asking what a run before it was refused, with nothing handed out since, is
    # refused too: past the runs to explain and reserve for, it is skipped at once.
    refused: dict[tuple, int] = {}
    handed_out = 0
    for run in sorted(waiting, key=Waiting.order):
        if run.run_id in on_their_way:
            continue
        asks = (run.queue, run.gpus, run.time_limit, run.priority)
        if explained.get(run.queue, 0) >= EXPLAIN and (
                not any(free.slots.values()) or (
                    refused.get(asks) == handed_out
                    and len(result.reservations) >= MAX_RESERVATIONS)):
            continue  # nothing it could get in this pass, nothing more to explain
        serving = [n for n in nodes if run.queue in n.info.queues]
        able = [n for n in serving if not n.draining
                and run.request.gpus_on(len(n.info.gpus)) <= len(n.info.gpus)]
        fits = [n for n in able if _fits(run, n.info, free)]
        usable = [n for n in fits if _may_use(run, n.info, free, result.reservations, now)]
        if usable:
            node = min(usable, key=lambda n: _fit_key(run, n.info, free))
            result.assignments.append(_assign(run, node.info, free))
            handed_out += 1
            continue
        refused[asks] = handed_out
        if explained.get(run.queue, 0) < EXPLAIN:
            explained[run.queue] = explained.get(run.queue, 0) + 1
            result.reasons[run.run_id] = _why(run, serving, able, fits, free, result.reservations)
        if able and not fits and len(result.reservations) < MAX_RESERVATIONS \
                and not _preempt(run, able, free, pool, result):
            _reserve(run, able, free, pool, result.reservations)
    return result


def _free_now(pool: PoolState, placed: list[Placement], waiting: set[str]) -> _Free:
    slots = {n.info.node: n.free_slots for n in pool.nodes}
    gpus = {host: [gpu for gpu, holder in held.items() if holder is None]
            for host, held in pool.gpus.items()}
    for placement in placed:  # sent, not yet started: taken
        if placement.run_id not in waiting or placement.node not in slots:
            continue
        slots[placement.node] -= 1
        host_free = gpus.get(placement.host, [])
        gpus[placement.host] = [gpu for gpu in host_free if gpu not in placement.gpus]
    return _Free(slots, gpus)


def _fits(run: Waiting, node: NodeInfo, free: _Free) -> bool:
    need = run.request.gpus_on(len(node.gpus))
    return free.slots.get(node.node, 0) > 0 and len(free.node_gpus(node)) >= need


def _may_use(run: Waiting, node: NodeInfo, free: _Free,
             reservations: dict[str, Reservation], now: int) -> bool:
    """False if taking the GPUs this run needs there would delay a reservation."""
    reservation = reservations.get(node.host)
    if reservation is None:
        return True
    need = run.request.gpus_on(len(node.gpus))
    unreserved = [g for g in free.node_gpus(node) if g not in reservation.gpus]
    if len(unreserved) >= need:
        return True
    return (reservation.start_by is not None and run.time_limit is not None
            and now + int(run.time_limit * 1_000_000) <= reservation.start_by)


def _fit_key(run: Waiting, node: NodeInfo, free: _Free) -> tuple:
    left = len(free.gpus.get(node.host, [])) - run.request.gpus_on(len(node.gpus))
    return (bool(node.gpus) and not run.request.gpus, left,
            -free.slots[node.node], node.host, node.node)


def _assign(run: Waiting, node: NodeInfo, free: _Free) -> Assignment:
    need = run.request.gpus_on(len(node.gpus))
    gpus = tuple(free.node_gpus(node)[:need])
    free.slots[node.node] -= 1
    free.gpus[node.host] = [g for g in free.gpus.get(node.host, []) if g not in gpus]
    return Assignment(run.run_id, node, gpus)


def _reserve(run: Waiting, able: list[NodeState], free: _Free, pool: PoolState,
             reservations: dict[str, Reservation]) -> None:
    """Earmark the free GPUs of the host where `run` can start soonest."""
    candidates = [n for n in able if n.info.host not in reservations]
    if not candidates:
        return
    node = max(candidates, key=lambda n: (len(free.node_gpus(n.info)), -len(n.info.gpus),
                                          n.info.host)).info
    need = run.request.gpus_on(len(node.gpus))
    kept = tuple(free.node_gpus(node)[:need])
    reservations[node.host] = Reservation(run.run_id, node.host, kept,
                                          _start_by(need - len(kept), node, pool))


def _preempt(run: Waiting, able: list[NodeState], free: _Free, pool: PoolState,
             result: Plan) -> bool:
    """Choose preemptible runs of lower priority to stop for `run`, on the node where the
    fewest (then the lowest in priority, the latest started) free enough; False if none."""
    best: tuple[tuple, NodeState, list[str]] | None = None
    for node in able:
        info = node.info
        if info.host in result.reservations:
            continue
        need = run.request.gpus_on(len(info.gpus))
        candidates = _victims(run, node, pool)
        gained, slot, chosen = len(free.node_gpus(info)), free.slots.get(info.node, 0) > 0, []
        slot_holders = {h.run_id for h in node.slots if h is not None}
        for holder, gpus in candidates:
            if gained >= need and slot:
                break
            chosen.append(holder)
            gained += len(gpus)
            slot = slot or holder.run_id in slot_holders
        if gained >= need and slot and chosen:
            key = (len(chosen), sum(h.priority for h in chosen), info.host, info.node)
            if best is None or key < best[0]:
                best = (key, node, [h.run_id for h in chosen])
    if best is None:
        return False
    _, node, victims = best
    for victim in victims:
        result.preemptions.setdefault(victim, run.run_id)
    kept = tuple(free.node_gpus(node.info))
    result.reservations[node.info.host] = Reservation(run.run_id, node.info.host, kept, None)
    result.reasons[run.run_id] = "preempting " + ", ".join(run_name_for_id(v) for v in victims)
    return True


def _victims(run: Waiting, node: NodeState, pool: PoolState) -> list[tuple[Holder, list[str]]]:
    """The runs on `node` that `run` may preempt, with their GPUs there, in the order to
    preempt them: the lowest priority first, then the latest started."""
    held = pool.gpus.get(node.info.host, {})
    found: dict[str, tuple[Holder, list[str]]] = {}
    for holder in [h for h in node.slots if h is not None]:
        found.setdefault(holder.run_id, (holder, []))
    for gpu in node.info.gpus:
        holder = held.get(gpu)
        if holder is not None:
            found.setdefault(holder.run_id, (holder, []))[1].append(gpu)
    return sorted(
        ((h, gpus) for h, gpus in found.values()
         if h.preemptible and h.priority < run.priority and h.preempted < MAX_PREEMPTIONS),
        key=lambda item: (item[0].priority, -(item[0].since or 0)))


def _start_by(more: int, node: NodeInfo, pool: PoolState) -> int | None:
    """When `more` GPUs of the node's host are free at the latest, by their holders' limits."""
    if more <= 0:
        return None
    held = pool.gpus.get(node.host, {})
    ends = sorted((h.until if h.until is not None else -1) for g in node.gpus
                  if (h := held.get(g)) is not None)
    if len(ends) < more or any(end < 0 for end in ends[:more]):
        return None
    return ends[more - 1]


def _why(run: Waiting, serving: list[NodeState], able: list[NodeState], fits: list[NodeState],
         free: _Free, reservations: dict[str, Reservation]) -> str:
    """Why `run` waits, in words: `gage-submit pool` and `show` print this."""
    queue = run.queue
    if not serving:
        return f"no worker consumes queue {queue!r}"
    if not able:
        if all(n.draining for n in serving):
            return f"every worker of queue {queue!r} is draining"
        largest = max(len(n.info.gpus) for n in serving)
        return (f"needs {run.request.words()}; the largest worker of queue {queue!r}"
                f" has {gpu_words(largest)}")
    if fits:
        holders = sorted({reservations[n.info.host].run_id for n in fits
                          if n.info.host in reservations})
        return "GPUs reserved for " + ", ".join(run_name_for_id(r) for r in holders)
    if not any(free.slots.get(n.info.node, 0) > 0 for n in able):
        return f"every slot of the workers of queue {queue!r} is taken"
    best = max(able, key=lambda n: (len(free.node_gpus(n.info)), n.info.host))
    return (f"needs {run.request.words()}; largest free:"
            f" {len(free.node_gpus(best.info))} on {best.info.host}")
