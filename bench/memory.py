"""Benchmark: the memory of gage-queue's processes.

    python bench/memory.py [--list-runs 100000] [--gage REV] [--scratch DIR] [--dir DIR]
                           [--rebuild] [--no-redis]

Printed, on the embedded broker and on a private redis-server:

- an idle `gage-worker -c 2`: RSS, USS and PSS of its main process and of
  each pool process, and their sum (the pool is forked from the main
  process, so the RSS sum counts shared pages twice; the USS sum does not,
  the PSS sum shares them out);
- the same worker with 2 runs running (a bare `python -I -S` program that
  waits), and its keeper processes: the keeper launcher (`python -m
  ...keeper --serve`, adopted by init), each run's keeper (a launcher's
  child with the run under it) and the waiting spare, found by their
  command line among this bench's processes; USS is psutil's
  `memory_full_info().uss`, what a process alone holds;

and `gage-submit list -a` on a runs dir of `--list-runs` finished runs:
its peak RSS (`ru_maxrss` of that one child, from `wait4`) and wall time,
without its row cache and then with it.

gage-queue is driven through its commands only, like bench/peers.py: by
default the commit HEAD of this checkout, installed from `git archive`
into its own venv under `--scratch` (shared with peers.py), or `--gage
worktree` for this venv's commands. The big runs dir is made by
`bench/scale.py`'s `make_finished` of the same commit (its helpers are
imported from that commit's source, run by this venv, which has the test
extras scale.py imports), and kept under `--scratch` for the next
invocation (`--rebuild` makes it again; 100,000 runs take ~1.5 min to
make and ~6 GB).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # noqa: E402
    SLOTS,
    Env,
    GageWorker,
    Skip,
    bench_env,
    gage_install,
    kill_tagged,
    tagged_pids,
)

HOLD_PY = """\
import os
import time

x = 0
print("holding", x, flush=True)
open(os.path.join({markers!r}, "%s.started" % x), "w").close()
deadline = time.time() + 300
while not os.path.exists({release!r}) and time.time() < deadline:
    time.sleep(0.05)
"""

GAGE_TOML = """\
[hold]
exec = "{py} hold.py"
config = "hold.py"
"""


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def mem(proc: psutil.Process) -> tuple[int, int, int]:
    """RSS, USS and PSS of a process, bytes."""
    info = proc.memory_full_info()
    return info.rss, info.uss, getattr(info, "pss", 0)


def row(name: str, values: tuple[int, int, int], count: int = 1) -> None:
    rss, uss, pss = values
    label = f"{name} (x{count}, each)" if count > 1 else name
    print(f"| {label} | {mib(rss)} | {mib(uss)} | {mib(pss)} |")


def keeper_kind(proc: psutil.Process) -> str | None:
    """'launcher', 'keeper', 'spare' or 'one-shot keeper' for a gage keeper process, else None.

    A keeper process runs `python -m <package>.keeper ...`; the launcher
    (`--serve`) forks spares, and the spare that takes a job becomes the
    run's keeper, the parent of the run's command.
    """
    def is_keeper(p: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            cmd = p.cmdline()
            return any(a == "-m" and b.split(".")[-1] == "keeper" for a, b in zip(cmd, cmd[1:], strict=False))
        return False

    if not is_keeper(proc):
        return None
    parent = proc.parent()
    if parent is None or not is_keeper(parent):
        return "launcher" if "--serve" in proc.cmdline() else "one-shot keeper"
    return "keeper" if proc.children() else "spare"


def worker_tree(worker: subprocess.Popen) -> list[psutil.Process]:
    main = psutil.Process(worker.pid)
    return [main, *main.children(recursive=True)]


def worker_table(title: str, worker: subprocess.Popen) -> None:
    procs = worker_tree(worker)
    values = [mem(p) for p in procs]
    print(f"\n{title}\n")
    print("| process | RSS | USS | PSS |\n|---|---|---|---|")
    row("worker main process", values[0])
    for i, v in enumerate(values[1:], 1):
        row(f"worker pool process {i}", v)
    total = tuple(sum(v[i] for v in values) for i in range(3))
    row(f"worker, all {len(procs)} processes (sum)", total)  # type: ignore[arg-type]


def keepers_table(tag: str) -> None:
    kinds: dict[str, list[tuple[int, int, int]]] = {}
    runs: list[tuple[str, tuple[int, int, int]]] = []
    for pid in tagged_pids(tag):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            kind = keeper_kind(proc)
            if kind:
                kinds.setdefault(kind, []).append(mem(proc))
            elif any(a.endswith("hold.py") for a in proc.cmdline()):
                shell = os.path.basename(proc.cmdline()[0]) in ("sh", "dash", "bash")
                runs.append(("its /bin/sh -c" if shell else "the program, bare python -I -S",
                             mem(proc)))
    for kind in ("launcher", "keeper", "spare", "one-shot keeper"):
        for i, v in enumerate(sorted(kinds.get(kind, [])), 1):
            n = len(kinds[kind])
            name = "run keeper" if kind == "keeper" else f"keeper {kind}"
            row(name + (f" {i} of {n}" if n > 1 else ""), v)
    if "launcher" not in kinds or "keeper" not in kinds:
        print(f"| (found {', '.join(f'{k}: {len(v)}' for k, v in kinds.items()) or 'no keeper'}"
              " processes by command line) | | | |")
    for what, v in sorted(runs):
        row(f"a run: {what} (for scale)", v)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise Skip(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure_worker(env: Env, name: str, broker: str | None, bindir: Path) -> None:
    root = env.work / name
    project = root / "project"
    markers = root / "markers"
    for d in (project, markers):
        d.mkdir(parents=True)
    release = root / "release"
    (project / "hold.py").write_text(HOLD_PY.format(markers=str(markers), release=str(release)))
    (project / "gage.toml").write_text(GAGE_TOML.format(py=" ".join(env.bare)))
    worker = GageWorker(env, name, root, broker, bindir)
    worker.start()
    try:
        assert worker.proc is not None
        time.sleep(2.0)  # settle: start-up reconcile and the pool's first tasks done
        worker_table(f"## {name}: idle gage-worker -c {SLOTS}", worker.proc)
        subprocess.run([worker.command("gage-submit"), "hold", "x=[1,2]"], cwd=project,
                       env=worker.penv, check=True, stdout=subprocess.DEVNULL, timeout=120)
        wait_for(lambda: len(os.listdir(markers)) >= 2, 60, "2 runs to start")
        time.sleep(1.0)  # the launchers fork their next spares once their keepers started
        worker_table(f"## {name}: gage-worker -c {SLOTS} with 2 running runs", worker.proc)
        keepers_table(f"{env.tag}:{name}")
        release.touch()
        active = worker.runs / ".gage-queue" / "active"
        wait_for(lambda: not active.is_dir() or not os.listdir(active), 60, "the runs to end")
    finally:
        release.touch()
        worker.stop()
        kill_tagged(f"{env.tag}:{name}")


def build_runs(env: Env, src: Path, count: int, rebuild: bool) -> Path:
    """A runs dir of `count` finished runs made by `make_finished` of `src`/bench/scale.py."""
    runs = env.scratch / f"runs-{count}"
    stamp = runs / ".memory-bench-ok"
    if stamp.exists() and not rebuild:
        print(f"runs dir of {count:,} runs: {runs} (kept from {stamp.read_text().strip()})")
        return runs
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    print(f"making a runs dir of {count:,} finished runs in {runs} ...", flush=True)
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(src / 'bench')!r})\n"
        "from scale import make_finished\n"
        f"make_finished({str(runs)!r}, {count}, time.time_ns() // 1000"
        f" - ({count} + 10) * 60_000_000)\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, env=env.environ("build"))
    stamp.write_text(f"{src.name}, made in {time.perf_counter() - started:.0f} s\n")
    return runs


def list_all(env: Env, bindir: Path, runs: Path, cache: Path) -> tuple[float, float]:
    """Peak RSS (bytes) and wall time of one `gage-submit list -a` as a child process."""
    penv = env.environ("list", GAGE_RUNS=str(runs), XDG_CACHE_HOME=str(cache))
    started = time.perf_counter()
    proc = subprocess.Popen([str(bindir / "gage-submit"), "list", "-a"], env=penv,
                            cwd=env.work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise Skip(f"gage-submit list -a exited {proc.returncode}: {err.strip()[-300:]}")
    return usage.ru_maxrss * 1024, seconds  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list-runs", type=int, default=100_000)
    parser.add_argument("--list-reps", type=int, default=3)
    parser.add_argument("--gage", default="HEAD", metavar="REV",
                        help="a commit of this checkout (default HEAD) or `worktree`")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--scratch", default=str(cache / "gage-queue-bench"))
    parser.add_argument("--dir", help="where this invocation's files go (default: system temp)")
    parser.add_argument("--rebuild", action="store_true", help="make the big runs dir again")
    parser.add_argument("--no-redis", action="store_true", help="the embedded broker only")
    args = parser.parse_args()

    with bench_env(args.scratch, args.dir, "gage-memory-") as (env, python, redis):
        try:
            install = gage_install(env, args.gage, python)
            bindir, src = install.bindir, install.src
            print(f"{install.version}; {os.cpu_count()} CPUs;"
                  f" {psutil.virtual_memory().total / 2**30:.0f} GiB RAM", flush=True)
            measure_worker(env, "embedded", None, bindir)
            if not args.no_redis:
                redis.start()
                measure_worker(env, "redis", redis.url(0), bindir)
            if args.list_runs:
                runs = build_runs(env, src, args.list_runs, args.rebuild)
                row_cache = env.work / "list-cache"
                cold, warm = [], []
                for _ in range(args.list_reps):
                    shutil.rmtree(row_cache, ignore_errors=True)
                    cold.append(list_all(env, bindir, runs, row_cache))
                    warm.append(list_all(env, bindir, runs, row_cache))
                print(f"\n## gage-submit list -a, {args.list_runs:,} finished runs"
                      f" (median of {args.list_reps})\n")
                print("| row cache | peak RSS | wall |\n|---|---|---|")
                for label, values in (("none (emptied first)", cold), ("kept from the last list",
                                                                      warm)):
                    print(f"| {label} | {mib(statistics.median(v[0] for v in values))} |"
                          f" {statistics.median(v[1] for v in values):.2f} s |")
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(f"\n(this bench's own peak RSS: {mib(own * 1024)})")
        except Skip as e:
            print(f"memory bench failed: {e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
