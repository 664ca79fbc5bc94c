"""Submitting an op: plan its runs from the command line, then stage and queue each.

All input is checked while planning, before anything is written: the Gage
file and op, every flag name and value, the label, the queue, the grid
size and the runs dir. Submitting then stages each run and queues it at
once, so workers start on a grid while the rest is being staged.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from gage_queue.broker.send import Submitter
from gage_queue.durations import parse_duration
from gage_queue.errors import BrokerUnavailable
from gage_queue.settings import Settings, check_queue_name
from gage_queue.text import BadText, check_user_text, shown
from gage_runs.config import read_project_config
from gage_runs.errors import GageRunsError
from gage_runs.flags import FlagValue, check_flags
from gage_runs.staging import op_cmd, stage_op
from gage_runs.types import Run

from . import PROG
from .errors import StagingFailed, SubmitError
from .flags import Grid, expand_grid, grid_size, parse_flags, repeated_flags
from .project import OpContext, load_op, runs_dir_for_submit
from .rerun import RerunSource, stage_rerun

# A grid of at least this many runs per CPU is staged by a pool of processes.
PARALLEL_MIN_RUNS = 20
CHUNK_RUNS = 10


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
    """The runs to submit: one config per run, all checked.

    Runs are staged from the project (`context`), or, for a rerun, from
    an old run's source code (`rerun`).
    """

    context: OpContext | None
    runs_dir: str
    queue: str
    label: str | None
    time_limit: float | None
    flags: list[dict[str, FlagValue]]
    configs: list[dict[str, Any]]
    rerun: RerunSource | None = None

    @property
    def op_name(self) -> str:
        opdef = self.rerun.opdef if self.rerun is not None else _context(self).opdef
        return opdef.name


def _context(plan: Plan) -> OpContext:
    assert plan.context is not None
    return plan.context


@dataclass(frozen=True)
class Submitted:
    """A staged and queued run; `sent` is False if its task waits for reconcile."""

    run: Run
    flags: dict[str, FlagValue]
    config: dict[str, Any]
    sent: bool


def plan_submit(options: SubmitOptions, settings: Settings) -> Plan:
    """Load the op and check the flags; SubmitError (or another GageRunsError) if bad."""
    if options.op_name is not None:
        check_user_text(options.op_name, "op name")
    label = _checked_label(options.label)
    queue = check_queue_name(options.queue if options.queue is not None else settings.queue)
    context = load_op(options.op_name, options.project_dir)
    op_cmd(context.opdef, context.project_dir)  # an op with nothing to run is bad input
    grid = _checked_grid(options)
    project_config = read_project_config(context.project_dir, context.opdef)
    check_flags(grid, project_config, context.opdef.name)
    runs_dir = runs_dir_for_submit(context, options.runs_dir)
    flags = expand_grid(grid)
    return Plan(
        context=context,
        runs_dir=runs_dir,
        queue=queue,
        label=label,
        time_limit=options.time_limit,
        flags=flags,
        configs=[{**project_config, **run_flags} for run_flags in flags],
    )


def plan_rerun(source: RerunSource, options: SubmitOptions, settings: Settings) -> Plan:
    """Runs of an old run's op: its config overlaid by the flags, in its runs dir.

    The queue and time limit default to the old run's; the label too. What
    is taken from the old run is checked as if typed: a label with a
    control character, a time limit or queue that is not one is refused,
    naming the option that sets it.
    """
    from gage_queue.queue_meta import read_submitted
    from gage_runs.sidecars import run_label

    from .progress import run_ref

    label = _checked_label(options.label)
    grid = _checked_grid(options)
    check_flags(grid, source.config, source.opdef.name)
    flags = expand_grid(grid)
    submitted = read_submitted(source.run) or {}
    old = f"run {run_ref(source.run)}'s"
    if label is None:
        label = _inherited(old, "label", "--label", lambda: _checked_label(run_label(source.run)))
    time_limit = options.time_limit
    if time_limit is None and submitted.get("time_limit") is not None:
        time_limit = _inherited(old, "time limit", "--time-limit",
                                lambda: parse_duration(submitted["time_limit"]))
    if options.queue is not None:
        queue = check_queue_name(options.queue)
    elif submitted.get("queue") is not None:
        queue = _inherited(old, "queue", "--queue", lambda: check_queue_name(
            submitted["queue"] if isinstance(submitted["queue"], str) else ""))
    else:
        queue = check_queue_name(settings.queue)
    return Plan(
        context=None,
        runs_dir=os.path.dirname(os.path.abspath(source.run.run_dir)),
        queue=queue,
        label=label,
        time_limit=time_limit,
        flags=flags,
        configs=[{**source.config, **run_flags} for run_flags in flags],
        rerun=source,
    )


def _checked_label(label: str | None) -> str | None:
    """A label fit to show others (no control character, at most LABEL_LIMIT); BadText if not."""
    return None if label is None else check_user_text(label, "label")


def _inherited(old: str, what: str, option: str, check: Any) -> Any:
    """`check()` of a value a rerun takes from the old run; BadText naming the option."""
    try:
        return check()
    except (BadText, GageRunsError) as e:
        raise BadText(f"{old} {what} cannot be reused ({e}): pass {option}") from None


def _checked_grid(options: SubmitOptions) -> Grid:
    grid = parse_flags(options.flag_args)
    for name, values in repeated_flags(options.flag_args).items():
        print(
            f"{PROG}: flag {shown(name)} given {len(values)} times: the last,"
            f" {shown(name)}={shown(values[-1])}, is used, as in Gage;"
            f" for a grid, write {shown(name)}=[{shown(','.join(values))}]",
            file=sys.stderr,
        )
    count = grid_size(grid)
    if count > options.max_runs:
        raise SubmitError(
            f"the flags make {count} runs, more than the limit of {options.max_runs}:"
            f" pass --max-runs {count} to submit them"
        )
    return grid


class Submission:
    """Stages and queues a plan's runs; iterate it for each run, in plan order.

    Runs are queued by a `gage_queue.broker.send.Submitter`: one broker
    connection, and once the broker is found down the rest are only
    recorded as submitted, for reconcile to send. A big grid is staged by
    a pool of processes, one per CPU, each with its own submitter: staging
    is CPU and file-system work, and a 1,000-run grid should take
    seconds. The pool is forked on entering, so
    enter before starting a progress display (no threads at fork time).
    `broker_error` is set after iterating if the broker could not be
    reached: those runs stay queued for reconcile. A staging failure stops
    the submission and propagates after the runs staged before it are
    yielded (that run stays pending, as Gage leaves it).
    """

    def __init__(self, plan: Plan, settings: Settings):
        self._plan = plan
        self._settings = settings.with_overrides(runs_dir=plan.runs_dir)
        self._jobs = list(zip(plan.flags, plan.configs, strict=True))
        self._processes = min(os.cpu_count() or 1, len(self._jobs) // PARALLEL_MIN_RUNS)
        self._pool: Any = None
        self._stop: Any = None
        self._submitter: Submitter | None = None
        self.broker_error: BrokerUnavailable | None = None

    def __enter__(self) -> Submission:
        os.makedirs(self._plan.runs_dir, exist_ok=True)
        if self._processes > 1:
            import multiprocessing

            context = multiprocessing.get_context("fork")
            self._stop = context.Event()
            self._pool = context.Pool(
                self._processes, _init_worker, (self._plan, self._settings, self._stop)
            )
        else:
            self._submitter = _submitter(self._plan, self._settings).__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._submitter is not None:
            self._submitter.__exit__(exc_type, exc, tb)
        if self._pool is not None:
            if exc_type is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()

    def __iter__(self) -> Iterator[Submitted]:
        if self._submitter is not None:
            for run_flags, config in self._jobs:
                yield _stage_and_queue(self._plan, self._submitter, run_flags, config)
            self.broker_error = self._submitter.error
            return
        chunks = [self._jobs[i : i + CHUNK_RUNS] for i in range(0, len(self._jobs), CHUNK_RUNS)]
        failure = None
        for submitted, broker_error, error in self._pool.imap(_stage_chunk, chunks):
            self.broker_error = self.broker_error or broker_error
            yield from submitted
            if error is not None and failure is None:
                failure = error
                self._stop.set()
        if failure is not None:
            raise failure


def _submitter(plan: Plan, settings: Settings) -> Submitter:
    return Submitter(queue=plan.queue, time_limit=plan.time_limit, settings=settings)


def _stage_and_queue(
    plan: Plan, submitter: Submitter, run_flags: dict[str, FlagValue], config: dict[str, Any]
) -> Submitted:
    try:
        if plan.rerun is not None:
            run = stage_rerun(plan.rerun, config, plan.runs_dir, label=plan.label)
        else:
            context = _context(plan)
            run = stage_op(
                context.project_dir, context.opdef, context.opref, config, plan.runs_dir,
                label=plan.label,
            )
    except GageRunsError as e:
        raise StagingFailed(
            f"staging a run of {plan.op_name} failed: {e}"
            f" (the run stays pending in {plan.runs_dir}; nothing was queued for it)"
        ) from None
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        raise StagingFailed(
            f"staging a run of {plan.op_name} failed: {e.strerror or e}{where}"
            f" (the partial run was removed from {plan.runs_dir}; nothing was queued for it)"
        ) from None
    return Submitted(run, run_flags, config, submitter.submit(run))


# In each pool process: the plan, its submitter, the stop flag.
_worker: dict[str, Any] = {}


def _init_worker(plan: Plan, settings: Settings, stop: Any) -> None:
    import multiprocessing.util

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    submitter = _submitter(plan, settings).__enter__()
    multiprocessing.util.Finalize(
        submitter, submitter.__exit__, (None, None, None), exitpriority=10
    )
    _worker.update(plan=plan, submitter=submitter, stop=stop)


def _stage_chunk(
    jobs: list[tuple[dict[str, FlagValue], dict[str, Any]]],
) -> tuple[list[Submitted], BrokerUnavailable | None, Exception | None]:
    """Stage and queue a few runs in a pool process; what it did, and any error."""
    plan, submitter, stop = _worker["plan"], _worker["submitter"], _worker["stop"]
    submitted: list[Submitted] = []
    try:
        for run_flags, config in jobs:
            if stop.is_set():
                break
            submitted.append(_stage_and_queue(plan, submitter, run_flags, config))
    except Exception as e:
        return submitted, submitter.error, e
    return submitted, submitter.error, None
