"""The `gage-submit` command as a real subprocess, and a small Gage project for its tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .redis_server import REDIS_SERVER, RedisServer
from .workers import Bed

GAGE_TOML = """\
[train]
description = "Fit a tiny model"
exec = "python train.py"
config = "train.py"
default = true

[slow]
description = "Print a step every 0.2 s"
exec = "python slow.py"
config = "slow.py"

[fail]
description = "Exit with a chosen code"
exec = "python fail.py"
config = "fail.py"
"""

TRAIN_PY = """\
import json

lr = 0.1
batch = 32
optimizer = "adam"

loss = round(1 / (lr * batch), 4)
print(f"lr={lr} batch={batch} optimizer={optimizer}")
print(f"loss={loss}")
with open("summary.json", "w") as f:
    json.dump({"metrics": {"loss": loss}}, f)
"""

SLOW_PY = """\
import time

steps = 3
for i in range(steps):
    print(f"step {i}", flush=True)
    time.sleep(0.2)
print("finished", flush=True)
"""

FAIL_PY = """\
import sys

code = 3
print(f"failing with {code}", flush=True)
sys.exit(code)
"""


def write_project(project_dir: Path) -> Path:
    """A Gage project with ops `train` (default), `slow` and `fail`."""
    project_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / "gage.toml").write_text(GAGE_TOML)
    (project_dir / "train.py").write_text(TRAIN_PY)
    (project_dir / "slow.py").write_text(SLOW_PY)
    (project_dir / "fail.py").write_text(FAIL_PY)
    return project_dir


def gage_submit_command() -> list[str]:
    """The installed console script (not a shell shim), else the same entry point."""
    script = Path(sysconfig.get_path("scripts")) / "gage-submit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gage_submit.cli import main; main()"]


@dataclass(frozen=True)
class Result:
    """What one `gage-submit` call did."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def __str__(self) -> str:
        return f"gage-submit {' '.join(self.args)} -> {self.code}\n--- out\n{self.out}--- err\n{self.err}"


@dataclass
class GageSubmit:
    """Runs `gage-submit` in `cwd` with a clean environment plus `env`."""

    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 60, check: bool = False) -> Result:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
        base.pop("RUNS_DIR", None)
        proc = subprocess.run(
            [*gage_submit_command(), *args],
            cwd=self.cwd,
            env={**base, "TERM": "dumb", "COLUMNS": "200", **self.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        if check:
            assert result.code == 0, str(result)
        return result


def assert_one_line_error(result: Result, *fragments: str, code: int = 2) -> str:
    """The call failed with `code` and one `gage-submit: error:` line holding each fragment."""
    assert result.code == code, str(result)
    lines = result.err.splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("gage-submit: error: "), str(result)
    for fragment in fragments:
        assert fragment in lines[0], str(result)
    return lines[0]


def run_line_fields(line: str) -> tuple[str, str, str, str]:
    """A run line `STATUS NAME ID [DETAIL]` split into its four fields."""
    status, name, run_id, *detail = line.strip().split(maxsplit=3)
    return status, name, run_id, detail[0] if detail else ""


def submitted_run(gage_submit: GageSubmit, *args: str) -> tuple[str, str, str]:
    """(state word, name, id) of a one-run submit `gage-submit ARGS`, which must succeed."""
    (line,) = gage_submit(*args, check=True).lines()
    state, name, run_id, _ = run_line_fields(line)
    return state, name, run_id


@contextlib.contextmanager
def worker_pool(root: Path, worker_args: tuple[str, ...] = ("-c", "2"),
                ) -> Iterator[tuple[Bed, Path, GageSubmit]]:
    """A private redis-server, one `gage-worker -c 2` (or `gage-worker WORKER_ARGS`), the
    test project, and `gage-submit` pointed at them; all stopped afterwards."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"no redis-server at {REDIS_SERVER}")
    redis = RedisServer(root / "redis")
    redis.start()
    bed = Bed(root, broker_url=redis.url, redis=redis)
    try:
        bed.start_worker(*worker_args)
        project = write_project(root / "proj")
        env = {"GAGE_RUNS": str(bed.runs_dir), "GAGE_BROKER_URL": redis.url}
        yield bed, project, GageSubmit(project, env)
    finally:
        bed.close()
        redis.stop()
