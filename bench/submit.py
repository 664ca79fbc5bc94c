"""Benchmark: submitting with `gage-submit` against staging with real `gage run --stage -y`.

    python bench/submit.py [--reps 10] [--grid 1000] [--redis | --broker URL] [--dir DIR]

Two figures, both wall times of the command as a subprocess:

1. One run of a small project (a `train` op whose config is `train.py`,
   plus a few source files): `gage-submit train lr=0.05` against
   `gage run train lr=0.05 --stage -y` of real gage 0.1.2, alternated,
   medians of `--reps` each. Target: ratio <= 0.5.
2. A grid of `--grid` runs (default 1,000) in one `gage-submit` command,
   median of `--grid-reps` (default 3). Target: <= 10 s. The bench checks
   that every run is staged and queued.

Both commands see the same project and the same kind of runs dir (each its
own, in a temp dir), with bytecode caching on for both (in a temp
`PYTHONPYCACHEPREFIX`, warmed by one unmeasured call each), as an
installed package has it. `gage-submit` is the console script next to this
Python, not a shim. The broker is the embedded default (nothing to
start), or a private redis-server with `--redis`, or `--broker URL`.
Everything lives in a temp dir under `--dir` (default: the system's),
e.g. `--dir /dev/shm` to take a busy disk out of the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.real_gage import ensure_real_gage_venv  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

TARGET_RATIO = 0.5
TARGET_GRID_SECONDS = 10.0

GAGE_TOML = """\
[train]
description = "Train a tiny model"
exec = "python train.py"
config = "train.py"
"""

TRAIN_PY = """\
import json

lr = 0.1
batch = 32
epochs = 3
dropout = 0.2
optimizer = "adam"

loss = 1.0
for epoch in range(epochs):
    loss *= 1 - lr
    print(f"epoch {epoch}: loss {loss:.4f}")
with open("summary.json", "w") as f:
    json.dump({"metrics": {"loss": loss}}, f)
"""

UTIL_PY = '"""Helpers."""\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n'
README = "# tiny\n\nA small project for the submit benchmark.\n"


def make_project(root: Path) -> Path:
    project = root / "tiny"
    project.mkdir()
    (project / "gage.toml").write_text(GAGE_TOML)
    (project / "train.py").write_text(TRAIN_PY)
    (project / "util.py").write_text(UTIL_PY)
    (project / "README.md").write_text(README)
    (project / "data.csv").write_text("x,y\n" + "".join(f"{i},{i * i}\n" for i in range(50)))
    return project


def bench_env(root: Path) -> dict[str, str]:
    """The environment of both commands: no inherited runs dir, queue or broker settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GAGE_", "PYTHON", "VIRTUAL_ENV")) and name != "RUNS_DIR"
    }
    env.update(TERM="unknown", COLUMNS="160", PYTHONPYCACHEPREFIX=str(root / "pycache"))
    return env


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of one command, and its stdout; fails loudly if the command does."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return elapsed, proc.stdout


def count_runs(runs_dir: Path) -> int:
    return sum(1 for p in runs_dir.iterdir() if p.name.endswith(".meta"))


def count_queued(runs_dir: Path) -> int:
    return sum(1 for p in runs_dir.glob("*.meta/queue/enqueued"))


def report(name: str, value: str, target: str, ok: bool) -> None:
    print(f"  {name:<50} {value:>8}   target {target:<7} {'ok' if ok else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="repetitions of each single submit")
    parser.add_argument("--grid", type=int, default=1000, help="runs in the grid (a multiple of 25)")
    parser.add_argument("--grid-reps", type=int, default=3, help="repetitions of the grid")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--redis", action="store_true", help="use a private redis-server")
    group.add_argument("--broker", metavar="URL", help="use this broker")
    parser.add_argument("--dir", help="where to make the temp dir (project, runs dirs)")
    args = parser.parse_args()
    if args.grid % 25:
        parser.error("--grid must be a multiple of 25")

    gage = ensure_real_gage_venv() / "bin" / "gage"
    gage_submit = Path(sysconfig.get_path("scripts")) / "gage-submit"
    if not gage_submit.exists():
        raise SystemExit(f"{gage_submit} is missing: pip install -e {REPO}")

    root = Path(tempfile.mkdtemp(prefix="gage-submit-bench-", dir=args.dir))
    redis = None
    try:
        project = make_project(root)
        env = bench_env(root)
        broker = args.broker
        if args.redis:
            redis = RedisServer(root / "redis")
            redis.start()
            broker = redis.url
        broker_name = broker or "embedded (filesystem:// in the runs dir)"
        submit_env = {**env, **({"GAGE_BROKER_URL": broker} if broker else {})}

        gage_runs = root / "gage-runs"
        submit_runs = root / "submit-runs"
        gage_cmd = [str(gage), "run", "train", "lr=0.05", "--stage", "-y"]
        submit_cmd = [str(gage_submit), "train", "lr=0.05"]
        gage_env = {**env, "GAGE_RUNS": str(gage_runs)}
        submit_env["GAGE_RUNS"] = str(submit_runs)
        for path in (gage_runs, submit_runs):
            path.mkdir()

        print(f"python {sys.version.split()[0]}; broker: {broker_name}; project: {project}")
        timed(gage_cmd, gage_env, project)  # warm the bytecode caches
        timed(submit_cmd, submit_env, project)
        gage_times, submit_times = [], []
        for _ in range(args.reps):
            gage_times.append(timed(gage_cmd, gage_env, project)[0])
            submit_times.append(timed(submit_cmd, submit_env, project)[0])
        ratio = statistics.median(submit_times) / statistics.median(gage_times)

        lrs = ",".join(f"0.{i:03d}" for i in range(1, args.grid // 25 + 1))
        batches = ",".join(str(b) for b in range(8, 8 + 25))
        grid_cmd = [
            str(gage_submit), "train", f"lr=[{lrs}]", f"batch=[{batches}]",
            "--max-runs", str(args.grid),
        ]
        grid_times = []
        for rep in range(args.grid_reps):
            grid_runs = root / f"grid-runs-{rep}"
            grid_runs.mkdir()
            seconds, out = timed(grid_cmd, {**submit_env, "GAGE_RUNS": str(grid_runs)}, project)
            staged, queued = count_runs(grid_runs), count_queued(grid_runs)
            if not (staged == queued == len(out.splitlines()) == args.grid):
                raise SystemExit(
                    f"grid: {args.grid} runs expected, {staged} staged, {queued} queued"
                )
            grid_times.append(seconds)  # kept: deleting 1,000 runs would slow the next rep
        grid_seconds = statistics.median(grid_times)

        print(f"single run, median of {args.reps} (min..max):")
        for name, times in (("gage run --stage -y", gage_times), ("gage-submit", submit_times)):
            print(f"  {name:<22} {statistics.median(times):6.3f} s"
                  f"  ({min(times):.3f}..{max(times):.3f})")
        print("results:")
        report("ratio gage-submit / gage run --stage", f"{ratio:.2f}", f"<= {TARGET_RATIO}",
               ratio <= TARGET_RATIO)
        report(f"{args.grid}-run grid, one gage-submit (median of {args.grid_reps})",
               f"{grid_seconds:.2f} s",
               f"<= {TARGET_GRID_SECONDS:g} s", grid_seconds <= TARGET_GRID_SECONDS)
        print(f"  grid times {', '.join(f'{t:.2f}' for t in grid_times)} s;"
              f" {args.grid / grid_seconds:.0f} runs/s; every run staged and queued")
        return 0
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
