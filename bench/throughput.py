"""Benchmark: trivial runs through staging, the broker and 2 worker slots.

    python bench/throughput.py [--runs 200] [--latency-runs 50] [--embedded | --broker URL]
                               [--dir DIR] [--python PY]

Three figures, all from this one invocation:

1. Floor: the same `say.py` spawned `--runs` times, 2 at a time, by a
   plain Python loop (the run's whole cost with no queue at all),
   measured before and after the queue figure; the ratio uses their mean,
   so a load change on a shared machine skews it less. The floor and the
   runs' command both use a bare interpreter with nothing installed
   (`--python`, default: the interpreter this venv was made from, started
   `-I -S`, as in bench/peers.py), never a venv's `python`: a venv's
   start-up (its site-packages, an editable install's finder) would add to
   the floor's every run and flatter the ratio.
2. Queue: `--runs` runs staged (`gage_runs.stage_op`), submitted
   (`gage_queue.broker.send.submit_run`) and executed and finalized by one
   `gage-worker -c 2`, timed from the first staging to the last `stopped`.
   Printed as the wall-time ratio to the floor (target <= 2.0) and runs/s,
   and as the busy CPU time of the whole machine per run in both (from
   /proc/stat): a steadier figure on a shared machine, where the floor's
   wall time alone can drift by a third within one invocation. That CPU
   is split by process (psutil): staging and submitting (this process),
   the worker's main and pool processes, the keeper launchers, and the
   rest (keepers, setpriv, sh, the runs, the kernel), less the floor's
   CPU per run for what the queue adds around each run. The last lines
   give both ratios as bench/peers.py does: wall time / x floor, and CPU
   per run with what it adds beyond the floor's run.
3. Dispatch latency, enqueue to process start: `--latency-runs` runs
   submitted one at a time to the idle worker, from just before
   `submit_run` to the run's `started` timestamp (written right before the
   run process is spawned). Median and p95; target median <= 20 ms on Redis.

The broker is a private redis-server on a free loopback port (default) or
`--broker URL`. `--embedded` measures the embedded broker (the default of
a worker with no broker configured: a folder in the runs dir) and then the
private Redis, each with its own worker and runs dir, and prints both with
the embedded targets: wall-time ratio <= 2.0, dispatch median <= 10 ms.

`--dir` says where the runs dirs go (default: the system's temp dir). The
floor writes no files and the queue writes ~30 per run, so the file
system shows in the ratio: on an ext4 without a journal (this project's
build machines) every new inode skips the inodes deleted in the last few
minutes (`recently_deleted` in the kernel), so a run made right after a
big delete (an earlier benchmark's clean-up) costs up to twice the CPU.
Run it on a quiet file system, or compare with `--dir /dev/shm`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gage_queue.broker.send import submit_run  # noqa: E402
from gage_queue.settings import Settings  # noqa: E402
from gage_runs import OpDef, OpRef, Run, stage_op  # noqa: E402
from gage_runs.meta import meta_timestamp  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import bare_python  # noqa: E402

SLOTS = 2
TARGET_RATIO = 2.0
TARGET_LATENCY_MS = 20.0
TARGET_EMBEDDED_MS = 10.0
SAY_PY = 'print("Hi there")\n'
BARE: list[str] = []  # the floor's and the runs' interpreter, [python, -I, -S] (`bare_python`)


def say_command() -> str:
    return f"{shlex.join(BARE)} say.py"


def file_system(path: str) -> str:
    """The file system `path` is on, as /proc/mounts says, and whether an ext4 one has a journal."""
    real, best = os.path.realpath(path), ("?", "?", "")
    with open("/proc/mounts") as f:
        for line in f:
            device, point, fstype = line.split()[:3]
            if (real + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best[1]):
                best = (fstype, point, device)
    fstype, point, device = best
    if fstype == "ext4":
        name = os.path.basename(device)
        journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
        journal = any(e.startswith(name + "-") for e in journals)
        fstype += "" if journal else ", no journal: slow to create files for minutes after a big delete"
    return f"{fstype} (on {point})"


def busy_seconds() -> float:
    """CPU seconds this machine has spent not idle since boot (all processes)."""
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def process_cpu(worker: subprocess.Popen) -> dict[str, float]:
    """CPU seconds so far of this process (staging, submitting), the worker (main and pool
    processes) and the keeper launchers (the processes that fork keepers)."""
    totals = {"bench": time.process_time(), "worker": 0.0, "launchers": 0.0}
    main = psutil.Process(worker.pid)
    for proc in [main, *main.children()]:
        with contextlib.suppress(psutil.Error):
            totals["worker"] += sum(proc.cpu_times()[:2])
    for proc in psutil.process_iter(["cmdline"]):
        if (proc.info["cmdline"] or [])[1:4] == ["-m", "gage_worker.keeper", "--serve"]:
            with contextlib.suppress(psutil.Error):
                totals["launchers"] += sum(proc.cpu_times()[:2])
    return totals


def floor_seconds(project: Path, runs: int) -> float:
    """`runs` x `say.py` by the bare interpreter, 2 at a time, from a plain loop."""

    def one(_: int) -> None:
        subprocess.run([*BARE, "say.py"], cwd=project, check=True,
                       stdout=subprocess.DEVNULL)

    started = time.perf_counter()
    with ThreadPoolExecutor(SLOTS) as pool:
        list(pool.map(one, range(runs)))
    return time.perf_counter() - started


def start_worker(root: Path, settings: Settings) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env["GAGE_RUNS"] = settings.runs_dir or ""
    if settings.broker_url:
        env["GAGE_BROKER_URL"] = settings.broker_url
    log = root / "worker.log"
    beside = Path(sys.executable).parent / "gage-worker"  # this venv's, activated or not
    script = str(beside) if beside.exists() else shutil.which("gage-worker") or "gage-worker"
    proc = subprocess.Popen([script, "-c", str(SLOTS)], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while " ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return proc


def wait_stopped(runs: list[Run], timeout: float = 600) -> float:
    """When every run in `runs` has its `stopped` timestamp.

    One stat per check while the oldest unfinished run is unfinished: the
    harness must not compete for the CPU with what it measures (listing
    the whole runs dir every 20 ms cost a quarter of a core at 200 runs).
    """
    deadline = time.monotonic() + timeout
    pending = [os.path.join(run.meta_dir, "stopped") for run in runs]
    while pending:
        while pending and os.path.exists(pending[0]):
            pending.pop(0)
        if not pending:
            break
        if time.monotonic() > deadline:
            raise SystemExit("runs did not finish in time")
        time.sleep(0.02)
    return time.perf_counter()


def queue_seconds(project: Path, settings: Settings, runs: int) -> float:
    opdef = OpDef("say", {"exec": say_command()})
    started = time.perf_counter()
    submitted = []
    for _ in range(runs):
        run = stage_op(str(project), opdef, OpRef("project", "say"), {}, settings.runs_dir)
        submit_run(run, settings=settings)
        submitted.append(run)
    return wait_stopped(submitted) - started


def latencies_ms(project: Path, settings: Settings, runs: int) -> list[float]:
    opdef = OpDef("say", {"exec": say_command()})
    result = []
    for _ in range(runs):
        run = stage_op(str(project), opdef, OpRef("project", "say"), {}, settings.runs_dir)
        sent = time.time_ns() // 1000
        submit_run(run, settings=settings)
        while meta_timestamp(run, "stopped") is None:
            time.sleep(0.005)
        result.append((meta_timestamp(run, "started") - sent) / 1000)
    return result


@dataclass
class Figures:
    """One broker's figures: floor and queue seconds, dispatch latencies."""

    broker: str
    runs: int
    floor_before: float
    queue: float
    floor_after: float
    latencies: list[float]
    floor_cpu: float  # busy CPU seconds of both floor passes
    queue_cpu: float
    split: dict[str, float]  # CPU seconds of the queue phase by process (`process_cpu`)

    @property
    def cpu_ratio(self) -> float:
        return (self.queue_cpu / self.runs) / (self.floor_cpu / (2 * self.runs))

    @property
    def floor(self) -> float:
        return (self.floor_before + self.floor_after) / 2

    @property
    def ratio(self) -> float:
        return self.queue / self.floor

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p95(self) -> float:
        lat = self.latencies
        return statistics.quantiles(lat, n=20)[-1] if len(lat) > 1 else lat[0]


def measure(root: Path, name: str, broker: str | None, runs: int, latency_runs: int) -> Figures:
    """The figures of one broker (None: the embedded one), in its own runs dir and worker."""
    root.mkdir()
    project = root / "project"
    project.mkdir()
    (project / "say.py").write_text(SAY_PY)
    settings = Settings.from_env({"GAGE_RUNS": str(root / "runs")}).with_overrides(
        broker_url=broker)
    os.makedirs(settings.runs_dir or "", exist_ok=True)
    worker = start_worker(root, settings)
    try:
        cpu = [busy_seconds()]
        floor_before = floor_seconds(project, runs)
        cpu.append(busy_seconds())
        split = process_cpu(worker)
        queue = queue_seconds(project, settings, runs)
        cpu.append(busy_seconds())
        split = {k: v - split[k] for k, v in process_cpu(worker).items()}
        floor_after = floor_seconds(project, runs)
        cpu.append(busy_seconds())
        lat = latencies_ms(project, settings, latency_runs)
    finally:
        worker.terminate()
        worker.wait(30)
    floor_cpu = (cpu[1] - cpu[0]) + (cpu[3] - cpu[2])
    return Figures(name, runs, floor_before, queue, floor_after, lat, floor_cpu, cpu[2] - cpu[1],
                   split)


def verdict(value: float, target: float) -> str:
    return f"<= {target:g} {'OK' if value <= target else 'MISSED'}"


def report(figures: Figures, target_ratio: float, target_ms: float) -> None:
    f = figures
    print(f"{f.broker}:")
    print(f"  floor (plain loop, {f.runs} x {say_command()}, {SLOTS} at a time): {f.floor:.2f} s "
          f"(before {f.floor_before:.2f} s, after {f.floor_after:.2f} s)")
    print(f"  queue (stage + submit + exec + finalize, {f.runs} runs): {f.queue:.2f} s, "
          f"{f.runs / f.queue:.1f} runs/s")
    print(f"  wall-time ratio: {f.ratio:.2f} (target {verdict(f.ratio, target_ratio)})")
    print(f"  busy CPU per run, whole machine: floor {f.floor_cpu / (2 * f.runs) * 1000:.1f} ms,"
          f" queue {f.queue_cpu / f.runs * 1000:.1f} ms, ratio {f.cpu_ratio:.2f}")
    per_run = {k: v / f.runs * 1000 for k, v in f.split.items()}
    rest = f.queue_cpu / f.runs * 1000 - sum(per_run.values())
    print(f"  of which: staging and submitting {per_run['bench']:.1f} ms, worker main and pool"
          f" {per_run['worker']:.1f} ms (finalize included), keeper launchers"
          f" {per_run['launchers']:.1f} ms; keepers, runs and the rest {rest:.1f} ms,"
          f" {rest - f.floor_cpu / (2 * f.runs) * 1000:.1f} ms of it beyond the floor's run")
    print(f"  dispatch latency, enqueue to process start ({len(f.latencies)} runs, idle worker):"
          f" median {f.median:.1f} ms (target {verdict(f.median, target_ms)}),"
          f" p95 {f.p95:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--latency-runs", type=int, default=50)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--embedded", action="store_true",
                       help="measure the embedded broker, then a private Redis")
    group.add_argument("--broker", metavar="URL")
    parser.add_argument("--dir", help="where the runs dirs go (default: the system's temp dir)")
    parser.add_argument("--python", help="the floor's and the runs' bare interpreter (default:"
                        " this venv's base interpreter), run with -I -S")
    args = parser.parse_args()
    BARE[:] = bare_python(args.python)

    root = Path(tempfile.mkdtemp(prefix="gage-throughput-", dir=args.dir))
    redis = None
    figures = []
    try:
        if args.embedded:
            figures.append(measure(root / "embedded", "embedded broker (runs dir)", None,
                                   args.runs, args.latency_runs))
        broker = args.broker
        if not broker:
            redis = RedisServer(root / "redis-server")
            redis.start()
            broker = redis.url
        figures.append(measure(root / "redis", f"broker {broker}", broker,
                               args.runs, args.latency_runs))
    finally:
        if redis:
            redis.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{SLOTS} worker slots; {os.cpu_count()} CPUs; runs dirs on {file_system(str(root.parent))}")
    if args.embedded:
        embedded, redis_figures = figures
        report(embedded, TARGET_RATIO, TARGET_EMBEDDED_MS)
        report(redis_figures, TARGET_RATIO, TARGET_LATENCY_MS)
        print(f"embedded / Redis: wall-time ratio {embedded.ratio / redis_figures.ratio:.2f}x,"
              f" dispatch median {embedded.median / redis_figures.median:.2f}x")
    else:
        report(figures[0], TARGET_RATIO, TARGET_LATENCY_MS)
    peers_table(figures)


def peers_table(figures: list[Figures]) -> None:
    """Both ratios as bench/peers.py prints them: wall / x floor, CPU per run beyond the floor's."""
    runs = figures[0].runs
    print(f"\n| broker | {runs} trivial runs: wall / x floor | CPU per run, machine"
          " (beyond the floor's) / x floor |")
    print("|---|---|---|")
    for f in figures:
        floor_ms = f.floor_cpu / (2 * f.runs) * 1000
        queue_ms = f.queue_cpu / f.runs * 1000
        print(f"| {f.broker} | {f.queue:.2f} s / {f.ratio:.2f}x (floor {f.floor:.2f} s) |"
              f" {queue_ms:.1f} ms (+{queue_ms - floor_ms:.1f}) / {f.cpu_ratio:.2f}x |")


if __name__ == "__main__":
    main()
