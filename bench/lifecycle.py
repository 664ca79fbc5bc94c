"""Benchmark: gage_runs' run lifecycle against real gage 0.1.2's, in-process.

    python bench/lifecycle.py [--reps N] [--stage-reps N] [--gage-venv PATH]
                              [--dir DIR] [--sync] [--profile [ours|gage|both]]

Two workloads, each timed the same way for both implementations: a driver
process per implementation (this file with `--driver`, run by the real
gage venv's Python or by ours) imports its Python API
(`gage._internal.run_util`, or `gage_runs`) and times one workload per
request with `perf_counter`. After one unmeasured warm-up each, requests
alternate between the two drivers one repetition at a time (order swapped
every repetition), so both see the same machine load; medians are
reported.

(a) the whole lifecycle of a small op: `make_run`, `init_run_meta`,
    `stage_run` (source code, config applied to say.py), `exec_run` of
    `python say.py`, `finalize_run`. Target: ours/gage <= 1.0.
(b) staging a project of 500 small `.py` files plus a config file
    (`sourcecode = ["**/*.py"]`, since the default patterns cap at 500
    text files): `make_run`, `init_run_meta`, `stage_run`.
    Target: ours/gage <= 0.5. Creating 500 files costs the same for both,
    so the bench also prints that floor (plain `os` calls, same files)
    and each side's time above it. On a busy disk that floor dominates
    and varies from run to run; `--dir /dev/shm` measures on tmpfs.

`python` in the run command is the interpreter running this script (put
first on PATH, no shim) for both. `--profile [ours|gage|both]` runs a
side once more under cProfile and prints where its time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"lifecycle": 1.0, "stage500": 0.5}
STEPS = {
    "lifecycle": ["make", "init", "stage", "exec", "finalize"],
    "stage500": ["make", "init", "stage"],
}
SOURCE_FILES = 500

SAY_PY = """\
msg = "Hello"
count = 2

for _ in range(count):
    print(msg)
"""

TRAIN_PY = """\
lr = 0.1
batch = 32
epochs = 3

print(f"lr={lr} batch={batch} epochs={epochs}")
"""

MODULE_PY = '''\
"""Module {i} of a generated project."""

SCALE = {i}


def f{i}(x):
    return x * SCALE + {i}
'''

SAY_OPDEF = {"description": "Say something", "exec": "python say.py", "config": "say.py"}
TRAIN_OPDEF = {
    "description": "Train with many modules",
    "exec": "python train.py",
    "config": "train.py",
    "sourcecode": ["**/*.py"],
}


# ---------------------------------------------------------------------
# Driver: runs inside the implementation's Python (keep to stdlib imports)


def _api(impl: str) -> dict[str, Any]:
    if impl == "gage":
        from gage._internal import run_util, types
    else:
        sys.path.insert(0, str(REPO))
        import gage_runs as run_util
        import gage_runs as types
    names = ["make_run", "init_run_meta", "stage_run", "exec_run", "finalize_run"]
    api = {name: getattr(run_util, name) for name in names}
    api.update(OpDef=types.OpDef, OpRef=types.OpRef, OpCmd=types.OpCmd)
    return api


def _lifecycle(api: dict[str, Any], spec: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    opdef = api["OpDef"]("say", SAY_OPDEF)
    opref = api["OpRef"]("bench", "say")
    cmd = api["OpCmd"](SAY_OPDEF["exec"], {})
    sys_attrs = {"platform": platform.platform()}
    t0 = time.perf_counter()
    run = api["make_run"](opref, runs_dir)
    t1 = time.perf_counter()
    api["init_run_meta"](run, opdef, {"msg": "Hi", "count": 3}, cmd, sys_attrs)
    t2 = time.perf_counter()
    api["stage_run"](run, spec["small_project"])
    t3 = time.perf_counter()
    api["exec_run"](run)
    t4 = time.perf_counter()
    api["finalize_run"](run, 0)
    t5 = time.perf_counter()
    return {"make": t1 - t0, "init": t2 - t1, "stage": t3 - t2, "exec": t4 - t3,
            "finalize": t5 - t4, "total": t5 - t0, "_meta_dir": run.meta_dir}


def _stage500(api: dict[str, Any], spec: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    opdef = api["OpDef"]("train", TRAIN_OPDEF)
    opref = api["OpRef"]("bench", "train")
    cmd = api["OpCmd"](TRAIN_OPDEF["exec"], {})
    sys_attrs = {"platform": platform.platform()}
    t0 = time.perf_counter()
    run = api["make_run"](opref, runs_dir)
    t1 = time.perf_counter()
    api["init_run_meta"](run, opdef, {"lr": 0.05, "batch": 64, "epochs": 3}, cmd, sys_attrs)
    t2 = time.perf_counter()
    api["stage_run"](run, spec["big_project"])
    t3 = time.perf_counter()
    return {"make": t1 - t0, "init": t2 - t1, "stage": t3 - t2, "total": t3 - t0,
            "_meta_dir": run.meta_dir}


WORKLOADS = {"lifecycle": _lifecycle, "stage500": _stage500}


def _check_run(meta_dir: str) -> dict[str, Any]:
    """What a finished workload left: manifest entries, patch, exit code."""

    def read(*parts: str) -> str | None:
        try:
            with open(os.path.join(meta_dir, *parts)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    return {
        "manifest_entries": len((read("manifest") or "").splitlines()),
        "patched": bool(read("log", "patched")),
        "exit": read("proc", "exit"),
    }


def _fs_floor(api: dict[str, Any], spec: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    """No implementation: create, write and chmod the 500 files with plain os calls.

    The cost neither implementation can avoid on this file system.
    """
    src = spec["big_project"]
    dest = os.path.join(runs_dir, f"floor-{time.perf_counter_ns()}")
    paths = sorted(
        os.path.relpath(os.path.join(root, name), src)
        for root, _dirs, names in os.walk(src)
        for name in names
    )
    t0 = time.perf_counter()
    made = set()
    for path in paths:
        target = os.path.join(dest, path)
        parent = os.path.dirname(target)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(os.path.join(src, path), "rb") as f:
            data = f.read()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
        os.chmod(target, 0o444)
    return {"total": time.perf_counter() - t0, "_meta_dir": dest}


def serve(impl: str, spec: dict[str, Any]) -> None:
    """Answer workload requests from stdin, one JSON line per request.

    `<workload>` runs it once and answers its timings and a check of the
    run it made; `profile <workload> <reps> <file>` runs it under cProfile.
    """
    api = _api(impl)
    runs_dir = os.path.join(spec["runs_root"], f"{impl}-{os.getpid()}")
    os.makedirs(runs_dir)
    workloads = {**WORKLOADS, "floor": _fs_floor}
    for line in sys.stdin:
        name, *rest = line.split()
        if name == "profile":
            profile_workload(workloads[rest[0]], api, spec, runs_dir, int(rest[1]), rest[2])
            reply: dict[str, Any] = {}
        else:
            if spec.get("sync"):
                os.sync()
            sample = workloads[name](api, spec, runs_dir)
            meta_dir = sample.pop("_meta_dir")
            reply = {"sample": sample, "check": {} if name == "floor" else _check_run(meta_dir)}
        print(json.dumps(reply), flush=True)


def profile_workload(
    workload: Any, api: dict[str, Any], spec: dict[str, Any], runs_dir: str, reps: int, out: str
) -> None:
    """Run a workload `reps` times under cProfile and dump the stats to `out`."""
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(reps):
        workload(api, spec, runs_dir)
    profiler.disable()
    profiler.dump_stats(out)


# ---------------------------------------------------------------------
# Orchestration (our Python)


def make_projects(root: Path) -> tuple[Path, Path]:
    """The small `say` project and one with 500 modules plus `train.py`."""
    small = root / "small"
    small.mkdir()
    (small / "say.py").write_text(SAY_PY)
    (small / "gage.toml").write_text('[say]\nexec = "python say.py"\nconfig = "say.py"\n')
    big = root / "big"
    big.mkdir()
    (big / "train.py").write_text(TRAIN_PY)
    per_dir = 50
    for i in range(SOURCE_FILES - 1):
        pkg = big / f"pkg{i // per_dir:02d}"
        pkg.mkdir(exist_ok=True)
        (pkg / f"mod{i:03d}.py").write_text(MODULE_PY.format(i=i))
    return small, big


class Driver:
    """A `--driver` process of one implementation, answering one request at a time."""

    def __init__(self, impl: str, python: Path, spec_file: Path, env: dict[str, str]):
        self.impl = impl
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--driver", impl,
             "--spec", str(spec_file)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def request(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self.proc.stdout.readline()
        if not reply:
            raise SystemExit(f"{self.impl} driver died (exit {self.proc.wait()}), see above")
        return json.loads(reply)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def driver_env(python_dir: Path) -> dict[str, str]:
    """This environment, with no PYTHONPATH and our interpreter first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(python_dir), env.get("PATH", "")])
    env.pop("GAGE_RUNS", None)
    return env


def median(samples: list[dict[str, float]], step: str) -> float:
    return statistics.median(sample[step] for sample in samples)


def report(
    samples: dict[str, dict[str, list[dict[str, float]]]],
    floor: list[dict[str, float]],
    reps: dict[str, int],
) -> bool:
    """Print per-step medians and the ratios; True if every target is met."""
    titles = {
        "lifecycle": "(a) lifecycle of a small op (make, init, stage, exec `python say.py`, finalize)",
        "stage500": f"(b) staging {SOURCE_FILES} small source files + config (make, init, stage)",
    }
    all_ok = True
    for name, steps in STEPS.items():
        ours, gage = samples["ours"][name], samples["gage"][name]
        print(f"\n{titles[name]}; median of {reps[name]} reps each")
        print(f"  {'step':<10} {'ours ms':>9} {'gage ms':>9} {'ours/gage':>10}")
        for step in [*steps, "total"]:
            o, g = median(ours, step) * 1000, median(gage, step) * 1000
            print(f"  {step:<10} {o:9.2f} {g:9.2f} {o / g:10.2f}")
        ratio = median(ours, "total") / median(gage, "total")
        ok = ratio <= TARGETS[name]
        all_ok &= ok
        print(f"  => ratio {ratio:.2f}, target <= {TARGETS[name]}: {'ok' if ok else 'MISSED'}")
        if name == "stage500" and floor:
            f = median(floor, "total") * 1000
            o, g = median(ours, "total") * 1000, median(gage, "total") * 1000
            print(f"  file system floor (create, write, chmod the {SOURCE_FILES} files with plain "
                  f"os calls): {f:.2f} ms")
            print(f"  above the floor: ours {o - f:.2f} ms, gage {g - f:.2f} ms")
    return all_ok


def print_profile(stats_file: str, name: str, limit: int = 25) -> None:
    import pstats

    print(f"\ncProfile of {name} (sorted by cumulative time, top {limit}):")
    stats = pstats.Stats(stats_file, stream=sys.stdout)
    stats.strip_dirs().sort_stats("cumulative").print_stats(limit)
    print(f"cProfile of {name} (sorted by own time, top {limit}):")
    stats.sort_stats("tottime").print_stats(limit)


def _fs_type(path: Path) -> str:
    """The file system type of path, from /proc/mounts (longest mount prefix)."""
    best, kind = "", "unknown fs"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                _dev, mount, fstype, *_ = line.split()
                if str(path).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, fstype
    except OSError:
        pass
    return kind


def measure(
    drivers: list[Driver], reps: dict[str, int]
) -> tuple[dict[str, dict[str, list[dict[str, float]]]], list[dict[str, float]]]:
    """Alternate the drivers one repetition at a time (order swapped each rep).

    One unmeasured warm-up per workload and driver; its run is checked so
    both implementations are known to have done the same work. For (b),
    the file system floor is measured after each pair.
    """
    samples: dict[str, dict[str, list[dict[str, float]]]] = {d.impl: {} for d in drivers}
    floor: list[dict[str, float]] = []
    for name in WORKLOADS:
        checks = {d.impl: d.request(name)["check"] for d in drivers}
        if len({json.dumps(c, sort_keys=True) for c in checks.values()}) != 1:
            raise SystemExit(f"{name}: the implementations did different work: {checks}")
        print(f"  {name}: both did the same work: {checks[drivers[0].impl]}")
        for rep in range(reps[name]):
            for d in drivers if rep % 2 == 0 else drivers[::-1]:
                samples[d.impl].setdefault(name, []).append(d.request(name)["sample"])
            if name == "stage500":
                floor.append(drivers[-1].request("floor")["sample"])
    return samples, floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=30, help="lifecycle reps (a), default 30")
    parser.add_argument("--stage-reps", type=int, default=10, help="staging reps (b), default 10")
    parser.add_argument("--gage-venv", type=Path, help="venv with gage 0.1.2 (default: cached)")
    parser.add_argument("--dir", type=Path, help="where projects and runs go (default: temp dir)")
    parser.add_argument("--sync", action="store_true", help="os.sync() before each rep (untimed)")
    parser.add_argument(
        "--profile", nargs="?", const="ours", choices=["ours", "gage", "both"],
        help="also cProfile a side (default: ours) and print where its time goes",
    )
    parser.add_argument("--driver", choices=["gage", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.driver:
        serve(args.driver, json.loads(args.spec.read_text()))
        return 0

    if args.gage_venv:
        venv = args.gage_venv
    else:
        sys.path.insert(0, str(REPO))
        from tests.support.real_gage import ensure_real_gage_venv

        venv = ensure_real_gage_venv()
    env = driver_env(Path(os.path.realpath(sys.executable)).parent)
    reps = {"lifecycle": max(1, args.reps), "stage500": max(1, args.stage_reps)}

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gage-lifecycle-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        small, big = make_projects(root)
        runs_root = root / "runs"
        runs_root.mkdir()
        spec_file = root / "spec.json"
        spec_file.write_text(json.dumps({
            "small_project": str(small), "big_project": str(big),
            "runs_root": str(runs_root), "sync": args.sync,
        }))
        print(f"python {platform.python_version()}; gage {venv}; files in {root} "
              f"({_fs_type(root)}); reps alternate gage/ours"
              f"{'; os.sync() before each' if args.sync else ''}")
        drivers = [
            Driver("gage", venv / "bin" / "python", spec_file, env),
            Driver("ours", Path(sys.executable), spec_file, env),
        ]
        try:
            samples, floor = measure(drivers, reps)
            all_ok = report(samples, floor, reps)
            if args.profile:
                for d in drivers:
                    if args.profile not in (d.impl, "both"):
                        continue
                    for name in WORKLOADS:
                        out = str(root / f"{d.impl}.{name}.prof")
                        d.request(f"profile {name} {reps[name] // 2 or 1} {out}")
                        print_profile(out, f"{d.impl}, {name}")
        finally:
            for d in drivers:
                d.close()
    print(f"\n{'all targets met' if all_ok else 'TARGET MISSED'} "
          f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
