"""Submitting an op: plan its runs from the command line, then stage and queue each.

All input is checked while planning, before anything is written: the Gage
file and op, every flag name and value, the grid size and the runs dir.
Submitting then stages one run at a time and queues it at once, so
workers start on a grid while the rest is being staged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gage_runs.config import read_project_config
from gage_runs.flags import FlagValue
from gage_runs.staging import stage_op
from gage_runs.types import Run
from gage_worker.errors import BrokerUnavailable
from gage_worker.settings import Settings, check_queue_name

from .errors import SubmitError
from .flags import check_flags, expand_grid, grid_size, parse_flags
from .project import OpContext, load_op, runs_dir_for_submit
from .sender import Sender


@dataclass(frozen=True)
class SubmitOptions:
    """What the command line asks for."""

    op_name: str | None
    flag_args: list[str] = field(default_factory=list)
    project_dir: str | None = None
    runs_dir: str | None = None
    queue: str | None = None
    label: str | None = None
    time_limit: float | None = None
    max_runs: int = 100


@dataclass(frozen=True)
class Plan:
    """The runs to submit: one config per run, all checked."""

    context: OpContext
    runs_dir: str
    queue: str
    label: str | None
    time_limit: float | None
    flags: list[dict[str, FlagValue]]
    configs: list[dict[str, Any]]


@dataclass(frozen=True)
class Submitted:
    """A staged and queued run; `sent` is False if its task waits for reconcile."""

    run: Run
    flags: dict[str, FlagValue]
    config: dict[str, Any]
    sent: bool


def plan_submit(options: SubmitOptions, settings: Settings) -> Plan:
    """Load the op and check the flags; SubmitError (or another GageRunsError) if bad."""
    context = load_op(options.op_name, options.project_dir)
    grid = parse_flags(options.flag_args)
    count = grid_size(grid)
    if count > options.max_runs:
        raise SubmitError(
            f"the flags make {count} runs, more than the limit of {options.max_runs}:"
            f" pass --max-runs {count} to submit them"
        )
    project_config = read_project_config(context.project_dir, context.opdef)
    check_flags(grid, project_config, context.opdef.name)
    runs_dir = runs_dir_for_submit(context, options.runs_dir)
    flags = expand_grid(grid)
    return Plan(
        context=context,
        runs_dir=runs_dir,
        queue=check_queue_name(options.queue or settings.queue),
        label=options.label,
        time_limit=options.time_limit,
        flags=flags,
        configs=[{**project_config, **run_flags} for run_flags in flags],
    )


def submit(
    plan: Plan,
    settings: Settings,
    on_submitted: Callable[[Submitted], None] = lambda submitted: None,
) -> tuple[list[Submitted], BrokerUnavailable | None]:
    """Stage and queue every run of the plan, calling `on_submitted` after each.

    Returns the runs and the broker error, if the broker could not be
    reached: those runs stay queued for reconcile. A staging failure
    propagates (that run stays pending, as Gage leaves it; the runs
    before it are queued).
    """
    context = plan.context
    submitted = []
    with Sender(settings.with_overrides(runs_dir=plan.runs_dir)) as sender:
        for run_flags, config in zip(plan.flags, plan.configs, strict=True):
            run = stage_op(
                context.project_dir, context.opdef, context.opref, config, plan.runs_dir,
                label=plan.label,
            )
            sent = sender.submit(run, plan.queue, plan.time_limit)
            submitted.append(Submitted(run, run_flags, config, sent))
            on_submitted(submitted[-1])
        return submitted, sender.error
