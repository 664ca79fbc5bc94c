"""What the commands share without click: the status choices, settings, run lookup, exit codes,
JSON (their click options are in `options`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gage_queue.states import FAILED, RunState
from gage_submit import PROG

if TYPE_CHECKING:
    from gage_queue.settings import Settings
    from gage_runs.types import Run

    from ..watch import NoWorkerNotice

STATUSES = [state.value for state in RunState]
"""`--status` choices: every state a run can be in."""


def settings_for(runs_dir: str | None, broker: str | None) -> Settings:
    """The settings from the environment, with the command line's runs dir and broker."""
    from gage_queue.settings import Settings, check_broker_url

    return Settings.from_env().with_overrides(
        runs_dir=runs_dir, broker_url=check_broker_url(broker) if broker is not None else None
    )


def select_run(spec: str, project_dir: str | None, runs_dir: str | None) -> Run:
    """The one run `spec` names (an index, id or name, or a prefix of one)."""
    from gage_runs.runs_dir import find_run

    from ..project import runs_dir_for_reading

    return find_run(runs_dir_for_reading(project_dir, runs_dir), spec)


def state_exit_code(state: RunState) -> int:
    """The exit code of `--follow`, `logs -f` and `wait` for a run that ended so: 0 or 1."""
    from gage_queue import exits

    return exits.FAILED if state in FAILED else exits.OK


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def no_worker_notice(say: Callable[[str], None] | None = None, *,
                     after: float | None = None) -> NoWorkerNotice:
    """A notice when runs wait on a queue no worker consumes: on stderr, or through `say`
    (a bar's `RunLines.notice`, which prints it above the bar). It comes `after` seconds
    (default: the settings' GAGE_NO_WORKER_NOTICE, checked as settings load)."""
    from ..watch import NoWorkerNotice

    return NoWorkerNotice(say or (lambda message: print(f"{PROG}: {message}", file=sys.stderr)),
                          after)


def run_json(run: Run, namespace: str | None) -> dict[str, Any]:
    """The JSON object of a run, as every `--json` prints it (README "Scripting"); its op
    without the namespace when that is `namespace`, the current project's."""
    from ..info import run_info

    return run_info(run, namespace=namespace, detail=True).as_json()


def print_runs_json(runs: list[Run], namespace: str | None) -> None:
    """The `--json` document of a command that reports on runs: an array of run objects."""
    from ..render import print_json

    print_json([run_json(run, namespace) for run in runs], sys.stdout)
