"""Benchmark: the read-and-plan part of one placement pass, with many waiting runs.

    python bench/placement.py [--runs 10000] [--hosts 8] [--gpus-per-host 8]
                              [--rounds 7] [--dir DIR] [--keep]

A runs dir (printed) with `--runs` waiting entries written directly with
`waiting.add_waiting` (GPU requests 1/2/4/8, a few priorities, half with a
time limit), `--hosts` hosts of one live node each (`gage@<host>`: queue
`gage`, one slot per GPU, GPUs "0".."N-1"; this process holds the node
locks, as their workers would) and a partly busy pool: on most hosts some
GPUs and slots are held by this process with holders written (runs of up
to 2 GPUs; on even hosts with a time limit, so reservations get a start
time), and one placement per host not started yet.

Measured over `--rounds` rounds after one warm-up (median and min), what
`gage_worker.scheduler._pass` does before it touches a run lock or the
broker: (a) `read_waiting`, (b) `read_pool`, (c) `read_placements`, (d)
`plan` alone (pure CPU, on inputs read once), and (e) the whole: the
cancel listing, (a), (b), (c) and (d) in a row. Next to them the floor of
any index read, measured in the same run: `os.listdir` plus open and read
of `--runs` files of the same sizes in another folder; (e) is given as a
ratio to it.

File operations per pass are counted with `strace -f -c` where strace is
installed (syscalls openat, newfstatat, statx, getdents64, read, fcntl;
`--seccomp-bpf` where strace has it, so other syscalls run untraced): a
child process starts, reads `plan`'s inputs for that phase, and runs the
phase once or not at all; the difference is one pass (start-up and
imports cancel out; a second pass counts the same as the first). Without
strace those columns are left out. Time is noisy on a shared machine; the
counts are not.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gage_queue.cancel import requested_ids  # noqa: E402
from gage_queue.layout import gpu_lock, node_lock, slot_lock  # noqa: E402
from gage_queue.locks import lock_fd, open_lock_file  # noqa: E402
from gage_queue.placement import plan  # noqa: E402
from gage_queue.pool import Holder, NodeInfo, read_pool, write_holder, write_node_info  # noqa: E402
from gage_queue.waiting import (  # noqa: E402
    Placement,
    Waiting,
    add_waiting,
    read_placements,
    read_waiting,
    write_placement,
)
from gage_runs.meta import make_run_timestamp  # noqa: E402
from gage_runs.names import make_run_id  # noqa: E402

QUEUE = "gage"
GPU_MIX = (1, 1, 1, 1, 2, 2, 4, 8)
PRIORITY_MIX = (0, 0, 0, 0, 0, 0, 1, 1, 5, -1)
MINUTE_US = 60_000_000
SYSCALLS = ("openat", "newfstatat", "statx", "getdents64", "read", "fcntl")
COLUMNS = (("openat", ("openat",)), ("stat", ("newfstatat", "statx")),
           ("getdents", ("getdents64",)), ("read", ("read",)), ("fcntl", ("fcntl",)))
PHASES = ("waiting", "pool", "placements", "plan", "total", "baseline")
LABELS = {
    "waiting": "(a) read_waiting",
    "pool": "(b) read_pool",
    "placements": "(c) read_placements",
    "plan": "(d) plan",
    "total": "(e) total",
    "baseline": "floor: listdir + read",
}


# ---------------------------------------------------------------------
# the runs dir


def host_name(i: int) -> str:
    return f"gpu-host-{i}"


def busy_gpus(i: int, gpus: int) -> int:
    """How many GPUs of host `i` are held: a spread from none to all."""
    return (i * 5 + 3) % (gpus + 1)


def make_waiting(runs_dir: str, count: int, now: int) -> list[Waiting]:
    rng = random.Random(0)
    entries = []
    for i in range(count):
        entry = Waiting(run_id=make_run_id(), queue=QUEUE,
                        submitted=now - (count - i) * 1000,
                        gpus=rng.choice(GPU_MIX), priority=rng.choice(PRIORITY_MIX),
                        time_limit=3600.0 if rng.random() < 0.5 else None)
        add_waiting(runs_dir, entry)
        entries.append(entry)
    return entries


def make_pool(runs_dir: str, hosts: int, gpus: int, now: int, held: list[int]) -> int:
    """Live nodes, held GPUs and slots; the number of GPUs held."""
    total = 0
    for i in range(hosts):
        host = host_name(i)
        node = f"gage@{host}"
        info = NodeInfo(node=node, host=host, queues=(QUEUE,), slots=gpus,
                        gpus=tuple(str(g) for g in range(gpus)), pid=os.getpid(), started=now)
        fd = open_lock_file(node_lock(runs_dir, host, node), create=True)
        if not lock_fd(fd):
            raise SystemExit(f"node lock of {node} is held already")
        held.append(fd)
        write_node_info(runs_dir, info)
        busy = busy_gpus(i, gpus)
        total += busy
        until = now + (i + 1) * 10 * MINUTE_US if i % 2 == 0 else None
        for slot, first in enumerate(range(0, busy, 2)):  # runs of up to 2 GPUs
            holder = Holder(make_run_id(), now - 10 * MINUTE_US, until)
            paths = [slot_lock(runs_dir, host, node, slot)]
            paths += [gpu_lock(runs_dir, host, str(g)) for g in range(first, min(first + 2, busy))]
            for path in paths:
                fd = open_lock_file(path, create=True)
                if not lock_fd(fd):
                    raise SystemExit(f"{path} is held already")
                held.append(fd)
                write_holder(fd, holder)
    return total


def make_placements(runs_dir: str, hosts: int, gpus: int, waiting: list[Waiting],
                    now: int) -> int:
    """One placement per host with a free GPU, for the first waiting runs; how many."""
    count = 0
    for i in range(hosts):
        busy = busy_gpus(i, gpus)
        if busy >= gpus or count >= len(waiting):
            continue
        host = host_name(i)
        write_placement(runs_dir, Placement(waiting[count].run_id, host, f"gage@{host}",
                                            (str(busy),), now))
        count += 1
    return count


def make_floor_files(runs_dir: str, floor_dir: str) -> None:
    """A copy of every waiting entry in `floor_dir`: the same names and sizes."""
    src = os.path.join(runs_dir, ".gage-queue", "waiting")
    os.makedirs(floor_dir)
    for name in os.listdir(src):
        shutil.copyfile(os.path.join(src, name), os.path.join(floor_dir, name))


def floor_dir_of(runs_dir: str) -> str:
    return os.path.join(os.path.dirname(runs_dir), "floor")


# ---------------------------------------------------------------------
# the phases


def read_floor(folder: str) -> int:
    size = 0
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as f:
            size += len(f.read())
    return size


def total_pass(runs_dir: str) -> object:
    """What `scheduler._pass` does before it takes a run lock (no stale placements here)."""
    cancelled = set(requested_ids(runs_dir))
    waiting = [w for w in read_waiting(runs_dir) if w.run_id not in cancelled]
    pool = read_pool(runs_dir)
    placed = read_placements(runs_dir)
    return plan(waiting, pool, placed, make_run_timestamp())


def phase_fn(phase: str, runs_dir: str) -> Callable[[], object]:
    """The call a phase times; `plan`'s inputs are read here, once."""
    if phase == "waiting":
        return lambda: read_waiting(runs_dir)
    if phase == "pool":
        return lambda: read_pool(runs_dir)
    if phase == "placements":
        return lambda: read_placements(runs_dir)
    if phase == "total":
        return lambda: total_pass(runs_dir)
    if phase == "baseline":
        folder = floor_dir_of(runs_dir)
        return lambda: read_floor(folder)
    waiting, pool, placed = read_waiting(runs_dir), read_pool(runs_dir), read_placements(runs_dir)
    now = make_run_timestamp()
    return lambda: plan(waiting, pool, placed, now)


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------
# counting file operations


def strace_options() -> list[str]:
    """`--seccomp-bpf` if this strace has it: only the traced syscalls stop the child."""
    probe = subprocess.run(["strace", "-f", "--seccomp-bpf", "-c", "-o", os.devnull,
                            "-e", "trace=openat", "true"], capture_output=True)
    return ["--seccomp-bpf"] if probe.returncode == 0 else []


def strace_counts(phase: str, runs_dir: str, passes: int, out: str,
                  options: list[str]) -> dict[str, int]:
    """Syscall counts of a child that does `phase` `passes` times (start-up included)."""
    cmd = ["strace", "-f", *options, "-c", "-o", out, "-e", "trace=" + ",".join(SYSCALLS),
           sys.executable, __file__, "--count-phase", phase, "--passes", str(passes),
           "--runs-dir", runs_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-500:])
    counts: dict[str, int] = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in SYSCALLS and parts[3].isdigit():
                counts[parts[-1]] = int(parts[3])
    return counts


def per_pass_counts(phase: str, runs_dir: str, scratch: str,
                    options: list[str]) -> dict[str, int]:
    """Each column's count for one pass: once less not at all."""
    none = strace_counts(phase, runs_dir, 0, os.path.join(scratch, f"{phase}-0.strace"), options)
    once = strace_counts(phase, runs_dir, 1, os.path.join(scratch, f"{phase}-1.strace"), options)
    return {col: sum(once.get(s, 0) - none.get(s, 0) for s in calls) for col, calls in COLUMNS}


def count_child(phase: str, runs_dir: str, passes: int) -> int:
    fn = phase_fn(phase, runs_dir)
    for _ in range(passes):
        fn()
    return 0


# ---------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="waiting runs")
    parser.add_argument("--hosts", type=int, default=8, help="hosts, one node each")
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per phase")
    parser.add_argument("--dir", default=None, help="where the scratch dir goes (default: a tmp dir)")
    parser.add_argument("--keep", action="store_true", help="leave the scratch dir behind")
    parser.add_argument("--count-phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--runs-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_phase:  # the child strace counts
        return count_child(args.count_phase, args.runs_dir, args.passes)

    root = tempfile.mkdtemp(prefix="bench-placement-", dir=args.dir)
    runs_dir = os.path.join(root, "runs")
    os.mkdir(runs_dir)
    held: list[int] = []
    try:
        start = time.perf_counter()
        now = make_run_timestamp()
        waiting = make_waiting(runs_dir, args.runs, now)
        busy = make_pool(runs_dir, args.hosts, args.gpus_per_host, now, held)
        placed = make_placements(runs_dir, args.hosts, args.gpus_per_host, waiting, now)
        make_floor_files(runs_dir, floor_dir_of(runs_dir))
        print(f"runs dir: {runs_dir}" + ("" if args.keep else " (removed at the end)"))
        print(f"{args.runs:,} waiting runs, {args.hosts} hosts x {args.gpus_per_host} GPUs"
              f" ({busy} held), {placed} placed; built in {time.perf_counter() - start:.1f} s")

        decided = total_pass(runs_dir)
        print(f"plan: {len(decided.assignments)} assignments, {len(decided.reservations)}"
              f" reservations, {len(decided.reasons)} reasons\n")

        times = {phase: timed(phase_fn(phase, runs_dir), args.rounds) for phase in PHASES}

        counts: dict[str, dict[str, int]] = {}
        note = ""
        if shutil.which("strace") is None:
            note = "strace not found: file operations not counted"
        else:
            try:
                options = strace_options()
                counts = {phase: per_pass_counts(phase, runs_dir, root, options)
                          for phase in PHASES}
            except RuntimeError as e:
                note = f"strace failed, file operations not counted: {e}"

        header = f"{'phase':22} {'median ms':>9} {'min ms':>8}"
        if counts:
            header += "".join(f" {col:>8}" for col, _ in COLUMNS)
        print(header)
        for phase in PHASES:
            line = (f"{LABELS[phase]:22} {statistics.median(times[phase]) * 1000:9.1f}"
                    f" {min(times[phase]) * 1000:8.1f}")
            if counts:
                line += "".join(f" {counts[phase][col]:8,}" for col, _ in COLUMNS)
            print(line)
        if note:
            print(note)
        elif counts:
            print(f"(file operations per pass, from strace -f -c; {args.runs:,} files in each index)")

        floor_med = statistics.median(times["baseline"])
        floor_min = min(times["baseline"])
        print(f"\n(e) / floor: {statistics.median(times['total']) / floor_med:.2f} (medians),"
              f" {min(times['total']) / floor_min:.2f} (mins)")
        if counts:
            ops = sum(counts["total"].values())
            floor_ops = sum(counts["baseline"].values())
            print(f"(e) file operations / floor: {ops / max(floor_ops, 1):.2f}"
                  f" ({ops:,} / {floor_ops:,})")
    finally:
        for fd in held:
            os.close(fd)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
