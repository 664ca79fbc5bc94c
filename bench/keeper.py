"""Benchmark: what a run keeper costs per run, against a bare spawn of the same command.

    python bench/keeper.py [--runs 40] [--dir DIR]

Both measured in this one invocation: the keeper round trip
(`gage_worker.launch.run_keeper` on a staged, submitted run whose command
is `true`: launcher fork, lock, record commits, slot and host locks,
`started`, spawn, output capture, reaping, the exit commit) and a plain
`subprocess.run(["true"])`. Prints medians and the difference, the cost
the keeper adds to every run (target: a few ms; it shows in
bench/throughput.py's dispatch latency).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gage_queue.broker.send import record_submission  # noqa: E402
from gage_queue.settings import Settings  # noqa: E402
from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run, stage_run  # noqa: E402
from gage_worker.launch import run_keeper  # noqa: E402


@contextlib.contextmanager
def quiet_fd(fd: int) -> Iterator[None]:
    """Point `fd` at /dev/null for the block (processes started in it inherit that)."""
    saved = os.dup(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--dir", default=None, help="where the runs dir goes (default: a tmp dir)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-keeper-", dir=args.dir))
    try:
        runs_dir, project = root / "runs", root / "project"
        runs_dir.mkdir()
        project.mkdir()
        settings = Settings(runs_dir=str(runs_dir))
        opdef = OpDef("true", {"exec": "true"})

        def keep_one() -> float:
            run = make_run(OpRef("bench", "true"), str(runs_dir))
            init_run_meta(run, opdef, {}, OpCmd(["true"], {}))
            stage_run(run, str(project))
            record_submission(run, queue="gage")
            started = time.perf_counter()
            outcome = run_keeper(run.id, settings, node="bench@host", slots=1)
            elapsed = time.perf_counter() - started
            assert outcome.verdict.value == "finalize", outcome
            return elapsed

        def spawn_one() -> float:
            started = time.perf_counter()
            subprocess.run(["true"], check=True)
            return time.perf_counter() - started

        with quiet_fd(2):  # keepers log a line each to the launcher's stderr
            keep_one()  # starts the launcher
            kept = [keep_one() for _ in range(args.runs)]
        spawned = [spawn_one() for _ in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    keeper_ms = statistics.median(kept) * 1000
    spawn_ms = statistics.median(spawned) * 1000
    print(f"keeper round trip (median of {args.runs}): {keeper_ms:.1f} ms")
    print(f"bare spawn of the same command: {spawn_ms:.1f} ms")
    print(f"the keeper adds {keeper_ms - spawn_ms:.1f} ms per run ({keeper_ms / spawn_ms:.1f}x)")


if __name__ == "__main__":
    main()
