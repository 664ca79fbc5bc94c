"""Benchmark: how busy one worker keeps its GPUs with a mixed grid, and dispatch latency.

    python bench/gpu_pool.py [--gpus 8] [--runs 200] [--sleep 0.5] [--rounds 10]
                             [--dir DIR] [--keep] [--placement-timeout S]

No GPU is needed: GPU ids are strings, and the placement (`docs/internals.md`,
"Placement") hands them out as it would real ones. One `gage-worker worker
--gpus 0,1,...,G-1 --finalize` (`--gpus` G, default 8: G slots, one run per GPU)
on the embedded broker (a folder in the runs dir), in a scratch dir under `--dir`
(default: the system's temp dir); the runs dir is printed, and removed at the end
unless `--keep`.

1. Utilisation: `--runs` R runs of `nap` (a bare `python -I -S nap.py` that
   sleeps `sleep` s, a flag set to `--sleep`), each asking for 1, 2 or 4 GPUs: a
   fixed mix (50% / 30% / 20%, which run gets which size drawn with a fixed seed),
   all submitted up front by one `gage-submit nap i=[...] sleep=S --gpus N
   --max-runs M` per size, one after the other (1, then 2, then 4 GPUs: each size
   a grid of its own, as a user would submit them). When every run is finalized,
   from their records (`gage_queue.locks.read_record`: `gpus`, `started`, `ended`):

   - makespan: the first run's start to the last run's end;
   - GPU-seconds busy: the sum over runs of len(gpus) x (ended - started), and the
     makespan's lower bound, GPU-seconds / G, with makespan / bound;
   - busy fraction while runs wait: in the window from the first start to the last
     run's start (runs wait all through it), GPU-seconds busy in the window / (G x
     the window). Target >= 95%;
   - where the idle GPU-seconds of that window went, by what each idle GPU waited
     for: *waiting for more GPUs* (freed before the others a multi-GPU run needs:
     held back for it by the placement's reservation); *lost placements* (its GPUs
     earmarked for a placement whose delivery started nothing, from the placement
     to its being given back as stale, `GAGE_PLACEMENT_TIMEOUT` later, both times
     from the worker's log; or the GPUs its run got after that, until then); *not
     submitted yet* (the run that took the GPU next was submitted after it was
     freed); *handoff* (the rest, up to the run's start: the queue's own overhead,
     keeper end -> placement pass -> message -> keeper -> spawn); *start-up* (the
     same before a GPU's first run); *left idle* (nothing more started on it before
     the window's end). Then the busy fraction as if the GPU-seconds of lost
     placements and runs not yet submitted had not been; the median handoff (from
     when the run could have been placed where it ran: GPUs freed, run submitted,
     placement given back) by how many runs had not started yet (a pass reads
     every waiting run's entry); the handoffs over 100 ms; the longest gaps between
     two runs on one GPU and what came next there; and the runs placed twice.
     `--placement-timeout` sets the worker's `GAGE_PLACEMENT_TIMEOUT` (default:
     its own, 30 s), to see the cost of a lost placement scale with it.

   Checked: every run completed, exactly once (each run writes a marker file
   `<i>.<pid>` with its start and end and its CUDA_VISIBLE_DEVICES, which must
   match the record's GPUs), with as many GPUs as it asked for, and no GPU held by
   two runs at once (each GPU's [started, ended] intervals disjoint). A failed
   check prints one `FAIL` line.
2. Dispatch latency: `--rounds` K runs of `nap sleep=0 --gpus 1`, each submitted
   to the idle worker by a new `gage-submit` process, from just before that
   process is spawned to the run's `started` (epoch us in its record, written
   right before the run's process is spawned). Median, min and max, and the
   submit command's own spawn-to-exit time for scale.

After each part, counts from the worker's log: deliveries whose keeper found the
run locked (`busy`: it starts nothing), stale placements given back, placements
given back by a keeper.

The worker and the commands get this environment less its GAGE_*, Python and venv
settings (`bench/peers.py`'s `base_environ`), with bytecode caching in the scratch
dir; every process the bench starts carries a tag (`PEERS_BENCH_TAG`) and is
stopped by pid at the end, keepers included. On a machine with few cores the
bench itself, the submits and the worker share them: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # noqa: E402
    Env,
    GageWorker,
    Skip,
    bare_python,
    base_environ,
    kill_tagged,
    load_average,
    one_line,
    tail,
)
from throughput import file_system  # noqa: E402

from gage_queue.locks import read_record  # noqa: E402
from gage_queue.queue_meta import read_submitted  # noqa: E402
from gage_queue.record import RunRecord  # noqa: E402
from gage_queue.states import RunState  # noqa: E402
from gage_runs.runs_dir import resolve_run_id  # noqa: E402

TARGET_BUSY = 0.95
SEED = 20240601
MIX = ((1, 0.5), (2, 0.3), (4, 0.2))  # GPUs per run, share of the runs
POLL = 0.05
US = 1_000_000
SLOW_HANDOFF = 100_000  # us

GAGE_TOML = """\
[nap]
exec = "{py} nap.py"
config = "nap.py"
"""

NAP_PY = """\
import os
import time

i = 0
sleep = 0.5


def mark(t0, t1):  # the marker `<i>.<pid>`; its dir is no global, so no flag
    name = "%s.%d" % (i, os.getpid())
    temp = os.path.join({markers!r}, "." + name)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, ("%r %r %s" % (t0, t1, os.environ.get("CUDA_VISIBLE_DEVICES", "-"))).encode())
    os.close(fd)
    os.rename(temp, os.path.join({markers!r}, name))


t0 = time.time()
time.sleep(sleep)
mark(t0, time.time())
"""


class GpuWorker(GageWorker):
    """`peers.GageWorker`, started with fake GPUs (one slot each) and finalizing its runs."""

    def __init__(self, env: Env, root: Path, gpus: list[str], bindir: Path):
        super().__init__(env, "gpu-pool", root, None, bindir)
        self.gpus = gpus

    def worker_args(self) -> list[str]:
        return ["--gpus", ",".join(self.gpus), "--finalize"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Done:
    """One finished run: what it asked for, its record and its markers."""

    i: int
    size: int
    run_id: str
    record: RunRecord
    markers: list[str]  # "<t0> <t1> <CUDA_VISIBLE_DEVICES>" of each time it ran
    submitted: int = 0  # epoch us, its `queue/submitted` time

    @property
    def gpus(self) -> list[str]:
        return list(self.record.gpus or [])

    @property
    def started(self) -> int:
        return self.record.started or 0

    @property
    def ended(self) -> int:
        return self.record.ended or 0


def submit(worker: GpuWorker, project: Path, args: list[str]) -> list[str]:
    """`gage-submit nap ARGS --json`: the ids of the runs it queued."""
    proc = subprocess.run([worker.command("gage-submit"), "nap", *args, "--json"],
                          env=worker.penv, cwd=project, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise Skip(f"gage-submit exited {proc.returncode}: {one_line(proc.stderr)[-300:]}")
    return [run["id"] for run in json.loads(proc.stdout)]


def idle(worker: GpuWorker) -> bool:
    """True when the queue owes nothing for any run (the active index is empty)."""
    with os.scandir(worker.runs / ".gage-queue" / "active") as entries:
        return next(entries, None) is None


def wait_idle(worker: GpuWorker, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not idle(worker):
        if not worker.alive():
            raise Skip(f"the worker exited while waiting for {what}: {tail(worker.root / 'worker.log')}")
        if time.monotonic() > deadline:
            raise Skip(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)
    return time.time()


def markers_by_i(markers: Path) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for name in os.listdir(markers):
        if not name.startswith("."):
            found.setdefault(int(name.split(".")[0]), []).append((markers / name).read_text())
    return found


def collect(worker: GpuWorker, markers: Path, ids: dict[int, str],
            sizes: dict[int, int]) -> list[Done]:
    found = markers_by_i(markers)
    done = []
    for i, run_id in sorted(ids.items()):
        run = resolve_run_id(str(worker.runs), run_id)
        submitted = (read_submitted(run) or {}).get("time") or 0
        done.append(Done(i, sizes[i], run_id, read_record(run) or RunRecord(),
                         found.get(i, []), submitted))
    return done


def check(done: list[Done], gpus: list[str]) -> list[str]:
    """What is wrong with the grid's runs: not completed once, wrong GPUs, a GPU shared."""
    problems = []
    bad = [d for d in done if d.record.state is not RunState.COMPLETED]
    if bad:
        problems.append(f"{len(bad)} runs not completed (i={bad[0].i}: {bad[0].record.state.value},"
                        f" {bad[0].record.detail})")
    counts = [len(d.markers) for d in done]
    if any(c == 0 for c in counts):
        problems.append(f"{counts.count(0)} runs left no marker (never ran)")
    if any(c > 1 for c in counts):
        problems.append(f"{sum(c > 1 for c in counts)} runs ran more than once")
    wrong = [d for d in done if len(d.gpus) != d.size or len(set(d.gpus)) != d.size
             or not set(d.gpus) <= set(gpus)]
    if wrong:
        problems.append(f"{len(wrong)} runs with the wrong GPUs (i={wrong[0].i} asked"
                        f" {wrong[0].size}, got {wrong[0].gpus})")
    env_wrong = [d for d in done if d.markers and d.markers[0].split()[2] != ",".join(d.gpus)]
    if env_wrong:
        d = env_wrong[0]
        problems.append(f"{len(env_wrong)} runs whose CUDA_VISIBLE_DEVICES is not their record's"
                        f" GPUs (i={d.i}: {d.markers[0].split()[2]} vs {d.gpus})")
    shared = 0
    for gpu, runs in per_gpu(done).items():
        for a, b in zip(runs, runs[1:], strict=False):
            if b.started < a.ended:
                shared += 1
                if shared == 1:
                    problems.append(f"GPU {gpu} held by two runs at once (i={a.i} until"
                                    f" {a.ended}, i={b.i} from {b.started})")
    if shared > 1:
        problems.append(f"{shared} overlaps in all")
    return problems


def per_gpu(done: list[Done]) -> dict[str, list[Done]]:
    """Each GPU's runs, in the order they started."""
    by_gpu: dict[str, list[Done]] = {}
    for d in sorted(done, key=lambda d: d.started):
        for gpu in d.gpus:
            by_gpu.setdefault(gpu, []).append(d)
    return by_gpu


def overlap(start: int, end: int, lo: int, hi: int) -> int:
    return max(0, min(end, hi) - max(start, lo))


@dataclass
class Gap:
    gpu: str
    start: int  # epoch us
    end: int
    before: Done | None
    after: Done | None


def gaps(done: list[Done], gpus: list[str], lo: int, hi: int) -> list[Gap]:
    """Every stretch of [lo, hi] in which a GPU ran nothing."""
    result = []
    by_gpu = per_gpu(done)
    for gpu in gpus:
        prev_end, prev = lo, None
        for d in by_gpu.get(gpu, []):
            if d.started > prev_end and prev_end < hi:
                result.append(Gap(gpu, prev_end, min(d.started, hi), prev, d))
            prev_end, prev = max(prev_end, d.ended), d
        if prev_end < hi:
            result.append(Gap(gpu, prev_end, hi, prev, None))
    return result


def idle_split(gaps_: list[Gap], freed: dict[str, int],
               lost: dict[str, Lost]) -> dict[str, float]:
    """The idle GPU-seconds of the gaps, by what the GPU waited for (`freed`: `freed_times`)."""
    split = {"start-up": 0.0, "handoff": 0.0, "waiting for more GPUs": 0.0,
             "lost placements": 0.0, "not submitted yet": 0.0, "left idle": 0.0}
    for g in gaps_:
        start = g.start
        for lp in lost.values():  # earmarked for a placement that went stale
            if g.gpu in lp.gpus and lp.placed < g.end and lp.given_back > start:
                if lp.placed > start:  # free, and not placed yet
                    split["handoff"] += (lp.placed - start) / US
                end = min(g.end, lp.given_back)
                split["lost placements"] += (end - max(start, lp.placed)) / US
                start = end
        d = g.after
        if d is None:
            split["left idle"] += (g.end - start) / US
            continue
        back = lost[d.run_id].given_back if d.run_id in lost else 0
        for what, until in (("waiting for more GPUs", freed[d.run_id]),
                            ("lost placements", back), ("not submitted yet", d.submitted)):
            end = min(max(until, start), g.end)
            split[what] += (end - start) / US
            start = end
        split["start-up" if g.before is None else "handoff"] += (g.end - start) / US
    return split


def freed_times(done: list[Done], lo: int, lost: dict[str, Lost]) -> dict[str, int]:
    """When the last GPU each run got was freed: by the run before it there (lo if none),
    or by a lost placement given back, whichever came last."""
    freed: dict[str, int] = {}
    for gpu, runs in per_gpu(done).items():
        prev_end = lo
        for d in runs:
            for lp in lost.values():
                if gpu in lp.gpus and prev_end <= lp.given_back <= d.started:
                    prev_end = lp.given_back
            freed[d.run_id] = max(freed.get(d.run_id, lo), prev_end)
            prev_end = max(prev_end, d.ended)
    return freed


def ready_times(done: list[Done], lo: int, lost: dict[str, Lost]) -> dict[str, int]:
    """When each run could have been placed where it ran: its GPUs freed, itself submitted,
    and its lost placement (if any) given back."""
    freed = freed_times(done, lo, lost)
    return {d.run_id: max(freed[d.run_id], d.submitted,
                          lost[d.run_id].given_back if d.run_id in lost else 0) for d in done}


def log_counts(worker: GpuWorker) -> dict[str, int]:
    """How often the worker's log says a delivery found its run locked, or a placement went
    stale (each costs the run GAGE_PLACEMENT_TIMEOUT, 30 s by default, before it is placed
    again)."""
    text = (worker.root / "worker.log").read_text(errors="replace")
    return {"deliveries that found the run locked (busy)": text.count(": busy: locked by"),
            "stale placements given back": text.count("went stale; placing it again"),
            "placements given back by a keeper": text.count("not started here:")}


@dataclass
class Lost:
    """A placement that went stale, from the worker's log: its GPUs, when it was made and
    when it was given back (epoch us, to the log's ms)."""

    gpus: list[str]
    placed: int
    given_back: int


LOG_LINE = r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): [^\]]*\] run %s: "


def log_time(match: re.Match) -> int:
    """The epoch us of a worker log line's local time stamp."""
    seconds = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
    return int(seconds) * US + int(match.group(2)) * 1000


def stale_runs(worker: GpuWorker) -> dict[str, Lost]:
    """The runs whose placement the worker's log says went stale, by id: the first such."""
    text = (worker.root / "worker.log").read_text(errors="replace")
    lost = {}
    for back in re.finditer(LOG_LINE % r"(\S+)" + r"its placement on \S+ went stale", text,
                            re.MULTILINE):
        run_id = back.group(3)
        if run_id in lost:
            continue
        placements = list(re.finditer(
            LOG_LINE % re.escape(run_id) + r"placed on \S+ with GPUs (\S+)",
            text[:back.start()], re.MULTILINE))
        if placements:  # the last one before it was given back
            placed = placements[-1]
            lost[run_id] = Lost(placed.group(3).split(","), log_time(placed), log_time(back))
    return lost


def print_log_counts(now: dict[str, int], before: dict[str, int] | None = None) -> None:
    before = before or {}
    print("worker log: " + ", ".join(f"{k} {v - before.get(k, 0)}" for k, v in now.items()))


def handoffs(done: list[Done], ready: dict[str, int], first: int) -> str:
    """The median handoff of the runs (not their GPUs' first) that started while 3/4 to all,
    1/2 to 3/4, ... of the grid's runs had not started yet: the pass that places a run reads
    every waiting run's entry."""
    n = len(done)
    by_quarter: dict[int, list[float]] = {}
    for k, d in enumerate(sorted(done, key=lambda d: d.started)):
        if ready[d.run_id] > first:
            by_quarter.setdefault(min(3, 4 * (n - k - 1) // n), []).append(
                (d.started - ready[d.run_id]) / 1000)
    return ", ".join(f"{q * n // 4}-{(q + 1) * n // 4}: {statistics.median(xs):.0f} ms"
                     for q, xs in sorted(by_quarter.items(), reverse=True))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def report_grid(done: list[Done], gpus: list[str], sleep: float, submit_start: float,
                submit_end: float, all_done: float, stale: dict[str, Lost]) -> list[str]:
    problems = check(done, gpus)
    done = [d for d in done if d.record.started and d.record.ended]
    if not done:
        return [*problems, "no run has both a start and an end"]
    g = len(gpus)
    first = min(d.started for d in done)
    last_start = max(d.started for d in done)
    last_end = max(d.ended for d in done)
    makespan = (last_end - first) / US
    gpu_seconds = sum(d.size * (d.ended - d.started) for d in done) / US
    bound = gpu_seconds / g
    window = (last_start - first) / US
    busy_window = sum(len(d.gpus) * overlap(d.started, d.ended, first, last_start)
                      for d in done) / US
    capacity = g * window
    busy = busy_window / capacity if capacity else float("nan")
    gaps_ = gaps(done, gpus, first, last_start)
    split = idle_split(gaps_, freed_times(done, first, stale), stale)

    print(f"\nutilisation: {len(done)} runs of `nap sleep={sleep:g}` on {g} fake GPUs, "
          f"submitted in {submit_end - submit_start:.1f} s (the last submit command ended "
          f"{submit_end - first / US:+.1f} s after the first start)")
    ready = ready_times(done, first, stale)
    print("\n| GPUs per run | runs | run time median (ended - started) | GPU-s busy |"
          " handoff median / p90 / max (ms) |")
    print("|---|---|---|---|---|")
    for size, _ in MIX:
        of = [d for d in done if d.size == size]
        if not of:
            continue
        hand = [(d.started - ready[d.run_id]) / 1000 for d in of if ready[d.run_id] > first]
        print(f"| {size} | {len(of)} | {statistics.median(d.ended - d.started for d in of) / 1000:.0f}"
              f" ms | {sum(d.size * (d.ended - d.started) for d in of) / US:.1f} |"
              f" {statistics.median(hand) if hand else float('nan'):.0f} /"
              f" {pct(hand, 0.9):.0f} / {max(hand, default=float('nan')):.0f} |")
    print(f"\nmakespan (first start to last end): {makespan:.2f} s; submit start to last run"
          f" finalized: {all_done - submit_start:.2f} s")
    print(f"GPU-seconds busy: {gpu_seconds:.1f}; lower bound of the makespan (GPU-s / {g}):"
          f" {bound:.2f} s; makespan / bound: {makespan / bound:.3f}")
    ok = busy >= TARGET_BUSY
    print(f"busy while runs wait (first start to last start, {window:.2f} s): "
          f"{busy_window:.1f} of {capacity:.1f} GPU-s = {busy * 100:.1f}% "
          f"(target >= {TARGET_BUSY * 100:.0f}%: {'OK' if ok else 'MISSED'})")
    idle_total = capacity - busy_window
    print(f"idle GPU-s in that window: {idle_total:.1f} = "
          + ", ".join(f"{k} {v:.1f}" for k, v in split.items()))
    lost = split["lost placements"] + split["not submitted yet"]
    if lost:
        print(f"busy while runs wait, less the GPU-s idle for lost placements and runs not yet"
              f" submitted (as if they had not been): {busy_window / (capacity - lost) * 100:.1f}%")
    print("handoff median by how many runs had not started yet: " + handoffs(done, ready, first))
    slow = [d for d in done if ready[d.run_id] > first and d.started - ready[d.run_id] > SLOW_HANDOFF]
    print(f"handoffs over {SLOW_HANDOFF // 1000} ms (from a lost placement's give-back, if any):"
          f" {len(slow)} runs,"
          f" {sum(d.size * (d.started - ready[d.run_id]) for d in slow) / US:.1f} GPU-s idle")
    longest = sorted(gaps_, key=lambda x: x.start - x.end)[:5]
    if longest:
        print("longest gaps on one GPU (s after the first start):")
    for x in longest:
        nxt = (f"then i={x.after.i} ({x.after.size} GPUs: {','.join(x.after.gpus)})"
               if x.after else "nothing more before the window's end")
        prev = f"after i={x.before.i} ({x.before.size} GPUs)" if x.before else "from the start"
        note = " (its placement went stale)" if x.after and x.after.run_id in stale else ""
        held = [d for d in done if d.run_id in stale and x.gpu in stale[d.run_id].gpus
                and stale[d.run_id].placed <= x.end and stale[d.run_id].given_back >= x.start]
        if held and not note:
            note = f" (earmarked for i={held[0].i}'s placement, which went stale)"
        print(f"  GPU {x.gpu}: {(x.start - first) / US:.2f} .. {(x.end - first) / US:.2f}"
              f" ({(x.end - x.start) / 1000:.0f} ms), {prev}, {nxt}{note}")
    late = [d for d in done if d.run_id in stale]
    if late:
        print("runs placed again after GAGE_PLACEMENT_TIMEOUT (the first placement went stale): "
              + ", ".join(f"i={d.i} ({d.size} GPUs, started {(d.started - first) / US:.2f} s"
                          f" after the first start; placed on GPUs {','.join(stale[d.run_id].gpus)}"
                          f" at {(stale[d.run_id].placed - first) / US:.2f} s, given back at"
                          f" {(stale[d.run_id].given_back - first) / US:.2f} s)" for d in late))
    return problems


def latency(worker: GpuWorker, project: Path, rounds: int, first_i: int) -> None:
    before = log_counts(worker)
    started: list[float] = []
    command: list[float] = []
    for k in range(rounds):
        wait_idle(worker, 120, "the worker to be idle")
        time.sleep(0.3)  # past the worker's periodic pass and the keeper launcher's spare
        t0 = time.time_ns() // 1000
        p0 = time.perf_counter()
        [run_id] = submit(worker, project, [f"i={first_i + k}", "sleep=0", "--gpus", "1"])
        command.append((time.perf_counter() - p0) * 1000)
        wait_idle(worker, 120, "a latency run")
        record = read_record(resolve_run_id(str(worker.runs), run_id))
        if record is None or record.state is not RunState.COMPLETED or record.started is None:
            raise Skip(f"latency run {run_id} did not complete: {record}")
        started.append((record.started - t0) / 1000)
    print(f"\ndispatch latency, submit command's spawn to the run's `started` ({rounds} runs,"
          f" idle worker, embedded broker): median {statistics.median(started):.0f} ms"
          f" (min {min(started):.0f}, max {max(started):.0f}); the submit command alone,"
          f" spawn to exit: median {statistics.median(command):.0f} ms")
    slow = sum(ms > 1000 for ms in started)
    if slow:
        print(f"{slow} of {rounds} latency runs started over 1 s after their submit")
    print_log_counts(log_counts(worker), before)


def mixed_sizes(runs: int) -> dict[int, int]:
    """Run i (1..runs) -> GPUs it asks for: the MIX shares, shuffled with a fixed seed."""
    counts = [round(share * runs) for _, share in MIX[:-1]]
    counts.append(runs - sum(counts))
    sizes = [size for (size, _), n in zip(MIX, counts, strict=True) for _ in range(n)]
    random.Random(SEED).shuffle(sizes)
    return {i: size for i, size in enumerate(sizes, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8, help="fake GPUs of the worker (default 8)")
    parser.add_argument("--runs", type=int, default=200, help="runs in the grid (default 200)")
    parser.add_argument("--sleep", type=float, default=0.5, help="each run sleeps this long (s)")
    parser.add_argument("--rounds", type=int, default=10, help="dispatch latency runs (default 10)")
    parser.add_argument("--dir", help="where the scratch dir goes (default: the system's temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir and runs dir")
    parser.add_argument("--placement-timeout", type=float, metavar="S",
                        help="the worker's GAGE_PLACEMENT_TIMEOUT (default: its own, 30 s)")
    args = parser.parse_args()
    if args.gpus < max(size for size, _ in MIX) or args.runs < 1 or args.rounds < 1:
        parser.error(f"--gpus must be >= {max(size for size, _ in MIX)}, --runs and --rounds >= 1")

    work = Path(tempfile.mkdtemp(prefix="gage-gpu-pool-", dir=args.dir))
    env = Env(work, work, bare_python(None), uuid.uuid4().hex[:12], 1.0, base_environ(work))
    gpus = [str(n) for n in range(args.gpus)]
    project, markers = work / "project", work / "markers"
    project.mkdir()
    markers.mkdir()
    (project / "gage.toml").write_text(GAGE_TOML.format(py=" ".join(env.bare)))
    (project / "nap.py").write_text(NAP_PY.format(markers=str(markers)))
    worker = GpuWorker(env, work, gpus, Path(sys.executable).parent)
    if args.placement_timeout is not None:
        worker.penv["GAGE_PLACEMENT_TIMEOUT"] = f"{args.placement_timeout:g}"
    print(f"{os.cpu_count()} CPUs, load {load_average()}; runs dir {worker.runs}"
          f" ({file_system(str(work))}){'' if args.keep else ', removed at the end'}")
    problems: list[str] = []
    try:
        worker.start()
        sizes = mixed_sizes(args.runs)
        ids: dict[int, str] = {}
        submit_start = time.time()
        for size, _ in MIX:
            xs = [i for i, s in sizes.items() if s == size]
            if not xs:
                continue
            grid = "i=[" + ",".join(map(str, xs)) + "]"
            queued = submit(worker, project, [grid, f"sleep={args.sleep:g}", "--gpus", str(size),
                                              "--max-runs", str(len(xs))])
            if len(queued) != len(xs):
                raise Skip(f"gage-submit queued {len(queued)} runs of {len(xs)}")
            ids.update(zip(xs, queued, strict=True))
        submit_end = time.time()
        bound = sum(sizes.values()) * args.sleep / args.gpus
        all_done = wait_idle(worker, 120 + 4 * bound, "the grid's runs to be finalized")
        done = collect(worker, markers, ids, sizes)
        problems = report_grid(done, gpus, args.sleep, submit_start, submit_end, all_done,
                               stale_runs(worker))
        print_log_counts(log_counts(worker))
        latency(worker, project, args.rounds, args.runs + 1)
        print(f"load {load_average()}")
    except Skip as e:
        problems.append(str(e))
    finally:
        worker.stop()
        kill_tagged(env.tag)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work} (runs dir {worker.runs}, worker log {work / 'worker.log'})")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
