"""The README's commands, run as a user would run them.

The quick start (`make demo` runs examples/demo.sh) runs from start to end,
and every `gage-submit`, `gage-worker`, `gage` and `celery` line in the
README's bash blocks runs against a real worker on the embedded broker, with
the README's placeholders (RUN, NAME, ...) filled in: RUN is a run queued by
an earlier line, except for `gage-submit queue`, whose RUN... are the runs
real Gage staged (`gage run --stage`, with the real Gage CLI on PATH).
Lines that start daemons or install things are run by other tests or by
`.ci/run`; they are listed in SKIPPED so a new README line fails here until
it is exercised.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
HELLO = REPO / "examples" / "hello"

# Lines run elsewhere: daemons (tests/test_worker_*.py, tests/test_beat.py),
# set-up (`.ci/run` runs `make test`; test_quick_start runs the demo), the
# compose stack (tests/test_deploy.py runs its commands) and the benchmarks
# (bench/).
SKIPPED = re.compile(
    r"^(make |\. \.venv|pip install|python bench/|gage-worker worker|gage-worker beat"
    r"|celery -A gage_worker flower|export |mkdir -p runs && )"
)


def on_path(env: dict[str, str]) -> dict[str, str]:
    """`env` with this interpreter's scripts (gage-submit, gage-worker) first on PATH.

    As a user who activated the venv has them, whatever PATH pytest got.
    """
    scripts = sysconfig.get_path("scripts")
    return {**env, "PATH": os.pathsep.join([scripts, env.get("PATH") or os.defpath])}


def readme_commands() -> list[str]:
    """The command lines of the README's bash blocks, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def runnable(line: str, runs: list[str], staged: list[str]) -> list[str]:
    """A README line as argv: optional [--x y] parts kept, placeholders filled.

    `gage-submit queue` gets the runs Gage staged; other lines the queued ones.
    """
    line = re.sub(r"\[(-[^\]]+)\]", r"\1", line)
    argv = shlex.split(line)
    if argv[:2] == ["gage-submit", "queue"]:
        runs, staged[:] = list(staged), []
    filled = []
    for arg in argv:
        if arg == "RUN...":
            filled.extend(runs)
        elif arg == "RUN":
            filled.append(runs[0])
        else:
            filled.append(arg)
    return filled


@pytest.fixture
def embedded(worker_bed, real_gage, tmp_path):
    """The env of a runs dir served by a real worker on the embedded broker.

    PATH has this venv's commands, then the real `gage` (alone: not its
    venv's python).
    """
    gage_bin = tmp_path / "real-gage-bin"
    gage_bin.mkdir()
    (gage_bin / "gage").symlink_to(real_gage.gage)
    env = on_path(worker_bed.worker_env())
    env["PATH"] = os.pathsep.join([env["PATH"], str(gage_bin)])
    env.update(TERM="unknown", COLUMNS="160")
    worker_bed.start_worker("--concurrency", "2", "-Q", "gage,gpu", env=env)
    return env


def test_quick_start_demo(tmp_path):
    """examples/demo.sh (what `make demo` runs) submits, follows, waits, lists."""
    env = on_path({**os.environ, "GAGE_RUNS": str(tmp_path / "runs")})
    env.pop("GAGE_BROKER_URL", None)
    proc = subprocess.run(
        ["bash", str(REPO / "examples" / "demo.sh")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "epoch 5: loss=0.6065" in proc.stdout
    assert "2 runs: 2 completed" in proc.stderr
    assert proc.stdout.count("completed") >= 5


def test_every_readme_command_runs(embedded):
    """Each README command line exits 0 against a real worker."""
    commands = [line for line in readme_commands() if not SKIPPED.match(line)]
    assert any(line.startswith("gage-submit train") for line in commands)
    # The quick start's `list` and `show 1` follow `make demo`: one run first.
    first = subprocess.run(["gage-submit", "train", "epochs=1", "--wait"], cwd=HELLO,
                           env=embedded, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    runs: list[str] = []
    staged: list[str] = []
    for line in commands:
        argv = runnable(line, runs or ["1"], staged)
        proc = subprocess.run(
            argv, cwd=HELLO, env=embedded, capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
        runs.extend(re.findall(r"^queued\s+(\S+)", proc.stdout, re.M))
        staged.extend(re.findall(r'^Run "(\S+)" is staged', proc.stdout, re.M))
    assert len(runs) >= 6
    assert any(line.startswith("gage-submit queue") for line in commands)
    assert not staged, f"runs staged by Gage but never queued: {staged}"

