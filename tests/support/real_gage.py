"""The real Gage CLI (`gage==0.1.2`) in a cached venv, for interop tests and benches.

`python -m tests.support.real_gage` creates the venv (or reuses a working
one) and prints its path; `.ci/run` calls it before the tests so the tests
themselves don't pay for the install.

The venv lives at `$GAGE_QUEUE_REAL_GAGE_VENV`, else in the repo's
git-ignored `.cache/gage-0.1.2-venv` (nothing is written to the user's
home; `make clean` removes it). Typer, click and rich are pinned:
newer typer releases break `gage runs`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

VENV_ENV_VAR = "GAGE_QUEUE_REAL_GAGE_VENV"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO / ".cache" / "gage-0.1.2-venv"
GAGE_VERSION = "0.1.2"
REQUIREMENTS = [f"gage=={GAGE_VERSION}", "typer==0.12.3", "click==8.1.7", "rich==13.7.1"]


class RealGageUnavailable(Exception):
    """The venv could not be created because the package index is unreachable."""


def real_gage_venv_path() -> Path:
    """Where the real Gage venv lives (the env var wins over the default)."""
    return Path(os.environ.get(VENV_ENV_VAR) or DEFAULT_VENV).expanduser()


def _venv_works(venv: Path) -> bool:
    gage = venv / "bin" / "gage"
    if not gage.exists():
        return False
    try:
        proc = subprocess.run(
            [str(gage), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TERM": "unknown"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and GAGE_VERSION in proc.stdout


_UNREACHABLE_HINTS = (
    "Could not find a version that satisfies",
    "No matching distribution found",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


def _pip_install(venv: Path) -> None:
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
         "--disable-pip-version-check", *REQUIREMENTS],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        out = (pip.stdout + pip.stderr).strip()
        if any(hint in out for hint in _UNREACHABLE_HINTS):
            raise RealGageUnavailable(f"cannot install {' '.join(REQUIREMENTS)}: {out[-500:]}")
        raise RuntimeError(f"pip install {' '.join(REQUIREMENTS)} failed:\n{out}")


def ensure_real_gage_venv(venv: Path | None = None) -> Path:
    """A venv with real gage 0.1.2: reused if `bin/gage --version` works, else made.

    Concurrent callers serialize on a lock file beside the venv. Raises
    RealGageUnavailable if pip can't reach the package index, RuntimeError
    on any other install failure (a half-made venv is removed).
    """
    venv = (venv or real_gage_venv_path()).expanduser().absolute()
    if _venv_works(venv):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _venv_works(venv):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        try:
            # Built in place: a venv's scripts have its absolute path in `#!`.
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            _pip_install(venv)
            if not _venv_works(venv):
                raise RuntimeError(f"{venv}/bin/gage --version does not report {GAGE_VERSION}")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
    return venv


@dataclass(frozen=True)
class RealGage:
    """The real `gage` command of a venv, run against a given runs dir."""

    venv: Path

    @property
    def gage(self) -> Path:
        return self.venv / "bin" / "gage"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, runs_dir: str | os.PathLike[str]) -> dict[str, str]:
        """This process's environment, with plain wide tables and `GAGE_RUNS`."""
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("GAGE_RUNS", "RUNS_DIR", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        env.update(TERM="unknown", COLUMNS="160", GAGE_RUNS=str(runs_dir))
        return env

    def __call__(
        self,
        *args: str,
        runs_dir: str | os.PathLike[str],
        project: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run `gage [-C project] ARGS...` with `GAGE_RUNS=runs_dir`.

        `cwd` defaults to the runs dir's parent. With `check`, a non-zero
        exit fails with gage's output in the message.
        """
        cmd = [str(self.gage), *(["-C", str(project)] if project else []), *args]
        proc = subprocess.run(
            cmd,
            cwd=str(cwd or Path(runs_dir).parent),
            env=self.env(runs_dir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd[1:])} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="session")
def real_gage() -> RealGage:
    """Real gage 0.1.2 (session-wide; skips if the package index is unreachable)."""
    try:
        venv = ensure_real_gage_venv()
    except RealGageUnavailable as e:
        pytest.skip(f"real gage {GAGE_VERSION} is unavailable: {e}")
    return RealGage(venv)


def main() -> int:
    """Create (or check) the venv and print its path."""
    try:
        venv = ensure_real_gage_venv()
    except RealGageUnavailable as e:
        # The interop tests skip in this case; don't fail the CI step for it.
        print(f"warning: real gage {GAGE_VERSION} is unavailable: {e}", file=sys.stderr)
        return 0
    print(venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
