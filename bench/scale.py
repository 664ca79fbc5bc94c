"""Benchmark: what reconcile, `list` and `show` cost as the runs dir grows.

    python bench/scale.py [--sizes 1000,10000] [--big] [--active 20] [--dir DIR]

For each size, a runs dir of that many finished runs (half of them
submitted through the queue, with a `completed` record) plus `--active`
active runs (queued, running on another host, finalizing,
finalize-failed). Finished runs are written directly as meta files, with
`started`/`staged`/`initialized` timestamps a minute apart whose mtimes
match what they hold (as on a runs dir that grew over time); active runs
are made with the real helpers (`make_run`, `init_run_meta`,
`enqueue.record_submission`, the run lock).

Printed per size:

- reconcile: file opens and time of one pass over the index (the
  periodic pass), and of one full pass (the hourly repair scan);
- `gage-submit list` (latest 20), `list -a` and `list --status queued`:
  opens in-process, and wall time as a subprocess next to the real
  `gage runs` / `gage runs -a` (gage 0.1.2) on the same dir (medians);
  `list -a` first without its row cache (`gage_submit.row_cache`, emptied
  before each run), then with it, as a user who lists again finds it;
- `show <full id>` and `show <id prefix>`: opens.

Opens are counted in-process by wrapping `builtins.open`, `os.open`,
`os.listdir` and `os.scandir` (a directory listing counts as an open);
stats are `os.stat`/`os.lstat` calls. Targets: reconcile opens independent of
the finished runs (<= 40 per active run at every size, and no more than
linear in the active runs: checked by a second pass with 4x the active
runs at the first size); `list` <= 0.5x `gage runs` at 10,000; `list -a`
of 10,000 runs under 1 s (with its row cache). `--big` adds 100,000 runs
(building it takes a few minutes; real `gage runs` on it takes long too).
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gage_queue.broker.send import record_submission  # noqa: E402
from gage_queue.locks import try_lock  # noqa: E402
from gage_queue.record import RunRecord  # noqa: E402
from gage_queue.settings import Settings  # noqa: E402
from gage_queue.states import EndReason, RunState  # noqa: E402
from gage_runs.meta import init_run_meta, make_run, write_timestamp  # noqa: E402
from gage_runs.types import OpCmd, OpDef, OpRef, Run  # noqa: E402
from gage_worker.reconcile import reconcile  # noqa: E402
from tests.support.real_gage import ensure_real_gage_venv  # noqa: E402

TARGET_OPENS_PER_ACTIVE = 40
TARGET_LIST_RATIO = 0.5
TARGET_LIST_ALL_SECONDS = 1.0
MINUTE_US = 60_000_000
REPS = 3


# ---------------------------------------------------------------------
# counting


class Counts:
    opens = 0
    stats = 0


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count file opens and stats made in this process while in the block."""
    counts = Counts()
    real_open, real_os_open = builtins.open, os.open
    real_stat, real_lstat = os.stat, os.lstat
    real_listdir, real_scandir = os.listdir, os.scandir

    def listdir(*args, **kwargs):
        counts.opens += 1  # a directory open
        return real_listdir(*args, **kwargs)

    def scandir(*args, **kwargs):
        counts.opens += 1
        return real_scandir(*args, **kwargs)

    def open_(*args, **kwargs):
        counts.opens += 1
        return real_open(*args, **kwargs)

    def os_open(*args, **kwargs):
        counts.opens += 1
        return real_os_open(*args, **kwargs)

    def stat(*args, **kwargs):
        counts.stats += 1
        return real_stat(*args, **kwargs)

    def lstat(*args, **kwargs):
        counts.stats += 1
        return real_lstat(*args, **kwargs)

    builtins.open, io.open, os.open, os.stat, os.lstat = open_, open_, os_open, stat, lstat
    os.listdir, os.scandir = listdir, scandir
    try:
        yield counts
    finally:
        builtins.open, io.open, os.open = real_open, real_open, real_os_open
        os.stat, os.lstat = real_stat, real_lstat
        os.listdir, os.scandir = real_listdir, real_scandir


def measured(fn: Callable[[], object]) -> tuple[float, Counts]:
    with counting() as counts:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, counts


# ---------------------------------------------------------------------
# runs dirs


def _write(path: str, text: str, mtime_us: int | None = None) -> None:
    with open(path, "w") as f:
        f.write(text)
    if mtime_us is not None:
        os.utime(path, ns=(mtime_us * 1000, mtime_us * 1000))


def make_finished(runs_dir: str, count: int, first_us: int) -> None:
    """`count` completed runs, a minute apart from `first_us`; every other one queue-owned."""
    opdef = json.dumps({"exec": "python train.py"})
    for i in range(count):
        run_id = str(uuid.uuid4())
        meta = os.path.join(runs_dir, run_id + ".meta")
        os.makedirs(os.path.join(meta, "proc"))
        os.mkdir(os.path.join(runs_dir, run_id))
        t = first_us + i * MINUTE_US
        _write(os.path.join(meta, "opref"), "1 proj train")
        _write(os.path.join(meta, "id"), run_id)
        _write(os.path.join(meta, "__schema__"), "1")
        _write(os.path.join(meta, "opdef.json"), opdef)
        _write(os.path.join(meta, "config.json"), json.dumps({"lr": 0.1, "i": i}))
        _write(os.path.join(meta, "summary.json"), json.dumps({"metrics": {"loss": 0.5}}))
        for name, at in (("initialized", t - 2000), ("staged", t - 1000), ("started", t),
                         ("stopped", t + 30_000_000)):
            _write(os.path.join(meta, name), str(at), at)
        _write(os.path.join(meta, "proc", "exit"), "0")
        if i % 2:
            os.mkdir(os.path.join(meta, "queue"))
            submitted = {"queue": "gage", "time": t - 500, "host": "h", "schedule": None,
                         "time_limit": None}
            _write(os.path.join(meta, "queue", "submitted"), json.dumps(submitted))
            _write(os.path.join(meta, "queue", "cancel"), "")
            record = RunRecord(RunState.COMPLETED, exit_code=0, reason=EndReason.COMPLETED,
                               host="gpu-host-2", started=t, ended=t + 30_000_000)
            with open(os.path.join(meta, "queue", "lock"), "wb") as f:
                f.write(record.encode())
        ended_ns = (t + 30_000_000) * 1000  # the meta dir last changed when the run ended
        os.utime(meta, ns=(ended_ns, ended_ns))


def make_active(runs_dir: str, count: int, held: list) -> list[Run]:
    """`count` active runs made with the real helpers, newest of all.

    Per 10: 6 queued, 2 running on another host (this process holds their
    locks, as their keeper would), 1 finalizing (just exited: not due),
    1 finalize-failed.
    """
    opdef = OpDef("train", {"exec": "python train.py"})
    runs = []
    for i in range(count):
        run = make_run(OpRef("proj", "train"), runs_dir)
        init_run_meta(run, opdef, {"lr": 0.1}, OpCmd("python train.py", {}))
        write_timestamp(run, "staged")
        record_submission(run, queue="gage")
        kind = i % 10
        now = time.time_ns() // 1000
        if kind in (6, 7):
            write_timestamp(run, "started")
            lock = try_lock(run)
            lock.commit(RunRecord(RunState.RUNNING, host="gpu-host-2", started=now))
            held.append(lock)
        elif kind in (8, 9):
            write_timestamp(run, "started")
            state = RunState.FINALIZING if kind == 8 else RunState.FINALIZE_FAILED
            with try_lock(run) as lock:
                lock.commit(RunRecord(state, exit_code=0, reason=EndReason.COMPLETED,
                                      host="gpu-host-2", started=now, ended=now,
                                      finalize_attempts=3 if kind == 9 else 0,
                                      finalize_error="OSError: disk full" if kind == 9 else None,
                                      finalize_tried=now))
        else:
            with open(os.path.join(run.meta_dir, "queue", "enqueued"), "w") as f:
                f.write(str(now))  # sent just now: not stale, nothing to re-send
        runs.append(run)
    return runs


# ---------------------------------------------------------------------
# commands


def gage_submit_inproc(*args: str) -> int:
    from gage_submit.cli import run

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run(list(args))


def wall(cmd: list[str], env: dict[str, str], cwd: str,
         before: Callable[[], object] | None = None) -> float:
    """The median wall time of REPS runs of `cmd`, each after `before()`."""
    times = []
    for _ in range(REPS):
        if before is not None:
            before()
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return statistics.median(times)


def gage_submit_cmd() -> list[str]:
    script = Path(sys.executable).parent / "gage-submit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gage_submit"]


def bench_size(size: int, active: int, root: str, gage: Path, *, growth: bool) -> bool:
    runs_dir = os.path.join(root, f"runs-{size}")
    os.makedirs(runs_dir)
    held: list = []
    start = time.perf_counter()
    make_finished(runs_dir, size, time.time_ns() // 1000 - (size + 10) * MINUTE_US)
    runs = make_active(runs_dir, active, held)
    print(f"\n== {size:,} finished + {active} active runs (built in "
          f"{time.perf_counter() - start:.1f} s)")
    settings = Settings(runs_dir=runs_dir, broker_url="redis://127.0.0.1:1/0")
    ok = True
    try:
        reconcile(settings, full=True)  # warm the cache, as a steady-state dir is
        seconds, counts = measured(lambda: reconcile(settings))
        per_active = counts.opens / active
        ok &= per_active <= TARGET_OPENS_PER_ACTIVE
        print(f"reconcile pass      {counts.opens:7,} opens ({per_active:.1f} per active run,"
              f" target <= {TARGET_OPENS_PER_ACTIVE}), {counts.stats:,} stats, "
              f"{seconds * 1000:7.1f} ms")
        seconds, counts = measured(lambda: reconcile(settings, full=True))
        print(f"full pass (hourly)  {counts.opens:7,} opens, {counts.stats:,} stats,"
              f" {seconds * 1000:7.1f} ms")
        os.environ["XDG_CACHE_HOME"] = os.path.join(root, f"cache-inproc-{size}")
        for label, args in (("list", ["list"]), ("list -a (cold)", ["list", "-a"]),
                            ("list -a", ["list", "-a"]), ("list --status queued",
                                                          ["list", "--status", "queued"])):
            seconds, counts = measured(lambda a=args: gage_submit_inproc(*a, "--runs-dir", runs_dir))
            print(f"{label:19} {counts.opens:7,} opens, {counts.stats:,} stats,"
                  f" {seconds * 1000:7.1f} ms in-process")
        for spec in (runs[0].id, runs[0].id[:8]):
            _, counts = measured(
                lambda s=spec: gage_submit_inproc("show", s, "--runs-dir", runs_dir))
            print(f"show {'<full id>' if len(spec) > 8 else '<id prefix>':14} {counts.opens:7,}"
                  f" opens, {counts.stats:,} stats")

        cache = os.path.join(root, f"cache-{size}")  # list's row cache (row_cache), ours alone
        env = {**os.environ, "GAGE_RUNS": runs_dir, "TERM": "unknown", "COLUMNS": "200",
               "XDG_CACHE_HOME": cache}
        cwd = tempfile.mkdtemp(dir=root)
        ours_cmd = gage_submit_cmd()
        real = [str(gage / "bin" / "gage")]
        for label, ours_args, real_args in (
            ("list (latest 20)", ["list"], ["runs"]), ("list -a", ["list", "-a"], ["runs", "-a"]),
        ):
            if label == "list -a":  # without its row cache, then with it
                cold = wall([*ours_cmd, *ours_args], env, cwd,
                            before=lambda: shutil.rmtree(cache, ignore_errors=True))
                print(f"{label + ' (cold)':19} gage-submit {cold:6.2f} s   (no row cache yet)")
            ours = wall([*ours_cmd, *ours_args], env, cwd)
            theirs = wall([*real, *real_args], env, cwd)
            ratio = ours / theirs
            line = (f"{label:19} gage-submit {ours:6.2f} s   gage {theirs:6.2f} s   "
                    f"ratio {ratio:.2f}")
            if label.startswith("list (") and size == 10_000:
                ok &= ratio <= TARGET_LIST_RATIO
                line += f" (target <= {TARGET_LIST_RATIO})"
            if label == "list -a" and size == 10_000:
                ok &= ours < TARGET_LIST_ALL_SECONDS
                line += f" (target < {TARGET_LIST_ALL_SECONDS:g} s)"
            print(line, flush=True)
        if growth:  # last: it leaves 4x the active runs behind
            make_active(runs_dir, active * 3, held)
            _, counts4 = measured(lambda: reconcile(settings))
            print(f"reconcile, {active * 4} active {counts4.opens:5,} opens"
                  f" ({counts4.opens / (active * 4):.1f} per active run)")
            ok &= counts4.opens / (active * 4) <= per_active * 1.1
    finally:
        for lock in held:
            lock.release()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="finished runs per dir")
    parser.add_argument("--big", action="store_true", help="add a dir of 100,000 runs")
    parser.add_argument("--active", type=int, default=20, help="active runs (a multiple of 10)")
    parser.add_argument("--dir", help="where the temp dir goes (default: the system's)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([100_000] if args.big else [])
    gage = ensure_real_gage_venv()
    root = tempfile.mkdtemp(prefix="gage-scale-", dir=args.dir)
    try:
        ok = True
        for i, size in enumerate(sizes):
            ok &= bench_size(size, args.active, root, gage, growth=i == 0)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
