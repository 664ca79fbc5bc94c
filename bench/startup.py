"""Benchmark: what one `gage-submit` costs from a new process, and what its imports cost.

    python bench/startup.py [--reps 15] [--gage REV] [--scratch DIR] [--top 15]

On the embedded broker and on a private redis-server, each with a
`gage-worker -c 2` running on its own runs dir, `--reps` times (medians,
and min):

- submit: `gage-submit say x=I` as a new process, spawn to exit;
- first line: from just before that spawn to the time the run's program
  (a bare `python -I -S`) prints its first line;
- on a terminal: the same submit with its output on a terminal (a pty,
  `TERM=xterm-256color`), where its run line is in colour;
- for scale: `gage-submit --help` and `python -c pass` of the same venv.

Then `python -X importtime -c 'import gage_submit.cli'` (median of 5 runs
for the total; the list from the last) with the top `--top` imports by
their own time and by their cumulative time.

gage-queue is driven through its commands, as in bench/peers.py (`--gage
REV`: a commit of this checkout installed in its own venv, default HEAD,
or `worktree`); bytecode caching is on (`PYTHONPYCACHEPREFIX` in the
scratch dir, warmed first).
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # noqa: E402
    GAGE_TOML,
    PROGRAM,
    Env,
    GageWorker,
    Skip,
    bench_env,
    gage_install,
    kill_tagged,
)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise Skip(f"{' '.join(cmd[-3:])} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return seconds


def broker_figures(env: Env, name: str, broker: str | None, bindir: Path, reps: int,
                   first_x: int) -> tuple[dict[str, list[float]], str]:
    """The figures of `reps` submits, and the -X importtime output of one more."""
    root = env.work / name
    project, markers = root / "project", root / "markers"
    project.mkdir(parents=True)
    markers.mkdir()
    for op, sleep in (("say", ""), ("nap", "time.sleep(1.0)")):
        (project / f"{op}.py").write_text(PROGRAM.format(sleep=sleep, markers=str(markers)))
    (project / "gage.toml").write_text(GAGE_TOML.format(py=" ".join(env.bare)))
    worker = GageWorker(env, name, root, broker, bindir)
    worker.start()
    submit = worker.command("gage-submit")
    out: dict[str, list[float]] = {"submit": [], "first line": [], "on a terminal": [],
                                   "--help": [], "python": []}
    terminal = {k: v for k, v in worker.penv.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    terminal.update(TERM="xterm-256color", COLUMNS="150")
    try:
        python = str(bindir / "python")
        for i in range(reps + 1):  # the first one warms the caches and is dropped
            x = first_x + i
            sent = time.time()
            seconds = timed([submit, "say", f"x={x}"], worker.penv, project)
            first = float(wait_for_marker(markers, x).read_text()) - sent
            time.sleep(0.2)  # the run ends and is finalized before the next submit
            tty_s = timed_on_terminal([submit, "say", f"x={x + 500}"], terminal, project)
            wait_for_marker(markers, x + 500)
            help_s = timed([submit, "--help"], worker.penv, project)
            pass_s = timed([python, "-c", "pass"], worker.penv, project)
            if i:
                out["submit"].append(seconds)
                out["first line"].append(first)
                out["on a terminal"].append(tty_s)
                out["--help"].append(help_s)
                out["python"].append(pass_s)
            time.sleep(0.2)
        profile = subprocess.run([submit, "say", f"x={first_x + reps + 1}"], cwd=project,
                                 env=dict(worker.penv, PYTHONPROFILEIMPORTTIME="1"),
                                 capture_output=True, text=True, timeout=120)
        time.sleep(0.5)
    finally:
        worker.stop()
        kill_tagged(f"{env.tag}:{name}")
    return out, profile.stderr


def timed_on_terminal(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """`timed`, with stdout and stderr on a terminal (a pty) read to the end."""
    leader, follower = pty.openpty()
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=follower, stderr=follower)
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        code = proc.wait(120)
        seconds = time.perf_counter() - started
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    if code != 0:
        raise Skip(f"{' '.join(cmd[-3:])} on a terminal exited {code}: {out[-300:]!r}")
    return seconds


def wait_for_marker(markers: Path, x: int) -> Path:
    """The marker file of run x=`x`, once its program wrote it (Skip after 60 s)."""
    deadline = time.monotonic() + 60
    while not (found := [n for n in os.listdir(markers) if n.startswith(f"{x}.")]):
        if time.monotonic() > deadline:
            raise Skip(f"run x={x} did not start in 60 s")
        time.sleep(0.002)
    return markers / found[0]


LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) per line of -X importtime output."""
    return [(int(m[1]), int(m[2]), len(m[3]) // 2, m[4])
            for m in map(LINE.match, stderr.splitlines()) if m]


def importtime(env: Env, bindir: Path, top: int) -> None:
    cmd = [str(bindir / "python"), "-X", "importtime", "-c", "import gage_submit.cli"]
    penv = env.environ("importtime")
    totals, rows = [], []
    for _ in range(6):  # the first warms the bytecode cache
        proc = subprocess.run(cmd, env=penv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise Skip(f"import gage_submit.cli failed: {proc.stderr.strip()[-300:]}")
        rows = parse_importtime(proc.stderr)
        totals.append(sum(r[0] for r in rows))
    total = statistics.median(totals[1:])
    print_imports(f"python -X importtime -c 'import gage_submit.cli': {total / 1000:.0f} ms of"
                  " imports (sum of own times, median of 5)", rows, top)


def print_imports(title: str, rows: list[tuple[int, int, int, str]], top: int) -> None:
    print(f"\n## {title}, {len(rows)} modules\n")
    gage = sum(r[0] for r in rows if r[3].split(".")[0] in
               ("gage_submit", "gage_queue", "gage_runs", "gage_worker"))
    print(f"of which gage-queue's own modules: {gage / 1000:.1f} ms\n")
    print("| by own time | ms | | by cumulative time (top-level imports) | ms |")
    print("|---|---|---|---|---|")
    by_self = sorted(rows, key=lambda r: -r[0])[:top]
    by_cum = sorted((r for r in rows if r[2] <= 1), key=lambda r: -r[1])[:top]
    for a, b in zip(by_self, by_cum, strict=False):
        print(f"| {a[3]} | {a[0] / 1000:.1f} | | {b[3]} | {b[1] / 1000:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--gage", default="HEAD", metavar="REV")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--scratch", default=str(cache / "gage-queue-bench"))
    parser.add_argument("--dir")
    args = parser.parse_args()
    with bench_env(args.scratch, args.dir, "gage-startup-") as (env, python, redis):
        try:
            install = gage_install(env, args.gage, python)
            print(f"{install.version}; {os.cpu_count()} CPUs; medians of {args.reps} (min)")
            redis.start()
            results = {"embedded broker": broker_figures(env, "embedded", None, install.bindir,
                                                         args.reps, 1),
                       "Redis": broker_figures(env, "redis", redis.url(0), install.bindir,
                                               args.reps, 1000)}
            print("\n| broker | gage-submit say x=I: spawn to exit | submit to the run's first line"
                  " | the submit on a terminal | gage-submit --help | python -c pass |")
            print("|---|---|---|---|---|---|")
            for name, (f, _) in results.items():
                cells = [f"{ms(statistics.median(v))} ({ms(min(v))})" for v in f.values()]
                print(f"| {name} | " + " | ".join(cells) + " |")
            importtime(env, install.bindir, args.top)
            for name, (_, profile) in results.items():
                rows = parse_importtime(profile)
                print_imports(f"imports of one `gage-submit say x=I` on the {name}"
                              f" (PYTHONPROFILEIMPORTTIME=1): {sum(r[0] for r in rows) / 1000:.0f} ms",
                              rows, args.top)
        except Skip as e:
            print(f"startup bench failed: {e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
