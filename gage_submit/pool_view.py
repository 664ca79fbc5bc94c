"""The pool as `gage-submit pool` and `show` tell it, read from the runs dir alone.

What is live and who holds what comes from `gage_queue.pool` (node
files and locks, the holders keepers write into their lock files); why a
run waits from one `gage_queue.placement.plan` over the waiting index
(`gage_queue.waiting`), read once, as the scheduler's pass would make it
now. So the view costs one small read per waiting run and one plan, at
10,000 waiting runs too; only the runs it lists are opened, to leave out
an entry whose run started meanwhile (the index is a hint).

Every text from the runs dir (hosts, nodes, queues, holders, reasons) is
escaped (`gage_queue.text.shown`) in the text; `--json` gives it as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gage_queue.durations import format_duration
from gage_queue.placement import Plan, plan
from gage_queue.pool import Holder, NodeState, PoolState, read_pool
from gage_queue.states import waiting_words
from gage_queue.text import shown
from gage_queue.waiting import Placement, Waiting, read_placements, waiting_to_plan
from gage_runs.meta import make_run_timestamp
from gage_runs.names import is_run_id, run_name_for_id

from .info import iso_time

SHOWN_WAITING = 5
"""How many waiting runs `pool` lists per queue, first in line first."""


@dataclass(frozen=True)
class WaitingRun:
    """A waiting run as `pool` lists it: its entry, name, and why it waits."""

    entry: Waiting
    reason: str
    placed: Placement | None = None

    @property
    def name(self) -> str:
        return run_name_for_id(self.entry.run_id)


@dataclass
class QueueView:
    """A queue's waiting runs: how many, the oldest submit, the first in line."""

    queue: str
    count: int = 0
    oldest: int | None = None  # epoch µs
    nodes: list[str] = field(default_factory=list)  # live nodes consuming it
    first: list[WaitingRun] = field(default_factory=list)


@dataclass
class PoolView:
    pool: PoolState
    queues: list[QueueView]
    now: int  # epoch µs


class Waits:
    """The waiting index read once and planned once: why each run waits. Cancelled runs
    are left out, as a pass leaves them out, and so are runs that hold a slot or GPU."""

    def __init__(self, runs_dir: str, now: int | None = None):
        self.now = make_run_timestamp() if now is None else now
        self.pool = read_pool(runs_dir)
        self.waiting = waiting_to_plan(runs_dir, self.pool)
        live = {n.info.node for n in self.pool.nodes}
        ids = {w.run_id for w in self.waiting}
        # a placement on a node that died is redone by the next pass: not on its way
        self.placed = {p.run_id: p for p in read_placements(runs_dir)
                       if p.run_id in ids and p.node in live}
        ready = [w for w in self.waiting if not w.after]  # the others wait for runs
        self.plan: Plan = plan(ready, self.pool, list(self.placed.values()), self.now)
        self._assigned = {a.run_id: a for a in self.plan.assignments}
        self.by_queue: dict[str, list[Waiting]] = {}
        for entry in sorted(self.waiting, key=Waiting.order):
            self.by_queue.setdefault(entry.queue, []).append(entry)

    def serves(self, queue: str) -> bool:
        """True if a live node consumes `queue`."""
        return any(queue in n.info.queues for n in self.pool.nodes)

    def reason(self, entry: Waiting, ahead: int) -> str:
        """Why the run waits, in words (not escaped); `ahead`: runs before it in its queue."""
        if entry.after:
            return waiting_words([run_name_for_id(a) for a in entry.after])
        placed = self.placed.get(entry.run_id)
        if placed is not None:
            return f"placed on {placed.node}, starting"
        why = self.plan.reasons.get(entry.run_id)
        if why is not None:
            return why
        assigned = self._assigned.get(entry.run_id)
        if assigned is not None:
            return f"fits on {assigned.node.node} now: the next placement pass sends it there"
        return f"behind {ahead} run{'s' if ahead != 1 else ''} of queue {entry.queue!r}"

    def reason_for(self, run_id: str) -> str | None:
        """Why the run waits; None if it is not in the waiting index (or cancelled)."""
        for entries in self.by_queue.values():
            for ahead, entry in enumerate(entries):
                if entry.run_id == run_id:
                    return self.reason(entry, ahead)
        return None


def read_view(runs_dir: str, *, listed: int = SHOWN_WAITING, now: int | None = None) -> PoolView:
    """The pool and each queue's waiting runs, the first `listed` of each explained."""
    waits = Waits(runs_dir, now)
    queues: dict[str, QueueView] = {}
    for node in waits.pool.nodes:
        for queue in node.info.queues:
            queues.setdefault(queue, QueueView(queue)).nodes.append(node.info.node)
    for queue, entries in waits.by_queue.items():
        view = queues.setdefault(queue, QueueView(queue))
        view.count = len(entries)
        view.oldest = min(e.submitted for e in entries)
        for ahead, entry in enumerate(entries):
            if len(view.first) >= listed:
                break
            if not _still_waiting(runs_dir, entry.run_id):  # started meanwhile: a stale entry
                view.count -= 1
                continue
            view.first.append(WaitingRun(entry, waits.reason(entry, ahead),
                                         waits.placed.get(entry.run_id)))
    return PoolView(waits.pool, [queues[q] for q in sorted(queues)], waits.now)


def _still_waiting(runs_dir: str, run_id: str) -> bool:
    from gage_queue.snapshots import read_queue_state
    from gage_queue.states import WAITING_TO_START
    from gage_runs.errors import RunLookupError
    from gage_runs.runs_dir import resolve_run_id

    try:
        run = resolve_run_id(runs_dir, run_id)
    except RunLookupError:
        return False
    return read_queue_state(run).state in WAITING_TO_START


# ---------------------------------------------------------------------
# text


def age(since: int | None, now: int) -> str:
    """How long ago an epoch-µs time was, coarsely: `40s`, `3m`, `2h5m`, `1d3h`; `` if None."""
    if since is None:
        return ""
    seconds = max(0, (now - since) // 1_000_000)
    if seconds >= 86400:
        seconds -= seconds % 3600
    elif seconds >= 60:
        seconds -= seconds % 60
    return format_duration(seconds)


def holder_words(holder: Holder, now: int) -> str:
    """`gidik-livih 3m`, escaped; a holder with no readable run is a run starting."""
    if not holder.run_id:
        return "a run starting"
    since = age(holder.since, now)
    return f"{_holder_name(holder)}  {since}".rstrip()


def _holder_name(holder: Holder) -> str:
    if is_run_id(holder.run_id):
        return run_name_for_id(holder.run_id)
    return shown(holder.run_id, 40)


def gpus_asked(entry: Waiting) -> str:
    return "default" if entry.gpus is None else str(entry.gpus)


def pool_lines(view: PoolView) -> list[str]:
    """`gage-submit pool` as plain lines: hosts, then queues."""
    from .render import plain_table

    lines: list[str] = []
    now = view.now
    if not view.pool.nodes:
        lines.append("no live worker: no gage-worker shares this runs dir now")
    for host, nodes in _by_host(view.pool.nodes):
        if lines:
            lines.append("")
        lines.append(f"host {shown(host)}")
        rows = [("node", "queues", "slots", "state")]
        busy: list[str] = []
        for node in nodes:
            info = node.info
            used = sum(holder is not None for holder in node.slots)
            rows.append((shown(info.node), shown(",".join(info.queues)),
                         f"{used}/{info.slots}", "draining" if node.draining else "serving"))
            busy += [f"    {shown(info.node)} slot {n}: {holder_words(h, now)}"
                     for n, h in enumerate(node.slots) if h is not None]
        lines += [f"  {line}" for line in plain_table(rows)]
        lines += busy
        gpus = view.pool.gpus.get(host, {})
        if gpus:
            cells = [("gpu", "run", "since")]
            for gpu, holder in gpus.items():
                if holder is None:
                    cells.append((shown(gpu), "free", ""))
                elif not holder.run_id:
                    cells.append((shown(gpu), "a run starting", ""))
                else:
                    cells.append((shown(gpu), _holder_name(holder), age(holder.since, now)))
            lines += [f"  {line}" for line in plain_table(cells)]
    for queue in view.queues:
        if lines:
            lines.append("")
        lines += _queue_lines(queue, now)
    if not view.queues and view.pool.nodes:
        lines += ["", "no run waits"]
    return lines


def _queue_lines(queue: QueueView, now: int) -> list[str]:
    from .render import plain_table

    workers = f"{len(queue.nodes)} worker{'s' if len(queue.nodes) != 1 else ''}" \
        if queue.nodes else "no worker"
    if not queue.count:
        return [f"queue {shown(queue.queue)} ({workers}): none waiting"]
    head = (f"queue {shown(queue.queue)} ({workers}): {queue.count} waiting,"
            f" the oldest for {age(queue.oldest, now)}")
    rows = [("name", "priority", "gpus", "waited", "why it waits")]
    rows += [(run.name, str(run.entry.priority), gpus_asked(run.entry),
              age(run.entry.submitted, now), shown(run.reason)) for run in queue.first]
    lines = [head, *(f"  {line}" for line in plain_table(rows))]
    if queue.count > len(queue.first):
        lines.append(f"  and {queue.count - len(queue.first)} more")
    return lines


def _by_host(nodes: list[NodeState]) -> list[tuple[str, list[NodeState]]]:
    hosts: dict[str, list[NodeState]] = {}
    for node in nodes:
        hosts.setdefault(node.info.host, []).append(node)
    return list(hosts.items())


# ---------------------------------------------------------------------
# JSON


def pool_json(view: PoolView) -> dict[str, Any]:
    """`gage-submit pool --json`: hosts (their nodes and GPUs), queues (their waiting runs)."""
    now = view.now
    hosts = []
    for host, nodes in _by_host(view.pool.nodes):
        hosts.append({
            "host": host,
            "nodes": [_node_json(node) for node in nodes],
            "gpus": [{"gpu": gpu, "run": _holder_json(holder)}
                     for gpu, holder in view.pool.gpus.get(host, {}).items()],
        })
    queues = [{
        "queue": queue.queue,
        "nodes": queue.nodes,
        "waiting": queue.count,
        "oldest_submitted": iso_time(queue.oldest),
        "oldest_wait": None if queue.oldest is None else max(0, now - queue.oldest) / 1e6,
        "runs": [_waiting_json(run, now) for run in queue.first],
    } for queue in view.queues]
    return {"hosts": hosts, "queues": queues}


def _node_json(node: NodeState) -> dict[str, Any]:
    info = node.info
    return {
        "node": info.node,
        "queues": list(info.queues),
        "slots": info.slots,
        "used": sum(holder is not None for holder in node.slots),
        "draining": node.draining,
        "gpus": list(info.gpus),
        "started": iso_time(info.started),
        "runs": [{"slot": n, **_holder_json(holder)}
                 for n, holder in enumerate(node.slots) if holder is not None],
    }


def _holder_json(holder: Holder | None) -> dict[str, Any] | None:
    if holder is None:
        return None
    known = is_run_id(holder.run_id)
    return {
        "id": holder.run_id or None,
        "name": run_name_for_id(holder.run_id) if known else None,
        "since": iso_time(holder.since),
        "until": iso_time(holder.until),
    }


def _waiting_json(run: WaitingRun, now: int) -> dict[str, Any]:
    entry, placed = run.entry, run.placed
    return {
        "id": entry.run_id,
        "name": run.name,
        "priority": entry.priority,
        "gpus": entry.gpus,
        "time_limit": entry.time_limit,
        "submitted": iso_time(entry.submitted),
        "waited": max(0, now - entry.submitted) / 1e6,
        "reason": run.reason,
        "placed": None if placed is None else {
            "host": placed.host, "node": placed.node, "gpus": list(placed.gpus)},
    }


def gpu_request_words(gpus: int | None) -> str:
    """`show`'s `gpus` line: `2`, `0`, `1 on a GPU worker (default)`."""
    return "1 on a GPU worker (default)" if gpus is None else str(gpus)
