"""Submitting an op: plan its runs from the command line, then stage and queue each.

All input is checked while planning, before anything is written: the Gage
file and op, every flag name and value, the label, the queue, the grid
size and the runs dir. Submitting then stages each run and queues it at
once, so workers start on a grid while the rest is being staged.

Ctrl-C is safe at any moment (`Submission`): the first stops the
submission once the runs being staged are queued, a second stops those
too and removes them. No run is left half staged, and every run queued
was handed back to be printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gage_queue import active
from gage_queue.broker.send import Submitter
from gage_queue.durations import parse_duration
from gage_queue.errors import BrokerUnavailable
from gage_queue.requests import (
    DEFAULT_REQUEST,
    RETRY_ON,
    EarlySignal,
    RetryOn,
    RunRequest,
    parse_warning,
    request_from,
)
from gage_queue.settings import Settings, check_queue_name
from gage_queue.text import BadText, check_user_text, shown
from gage_runs.config import read_project_config
from gage_runs.errors import GageRunsError
from gage_runs.flags import FlagValue, check_flags
from gage_runs.names import make_run_id, run_name_for_id
from gage_runs.restage import RunSource
from gage_runs.staging import discard_run, op_cmd, stage_op
from gage_runs.types import OpDef, OpRef, Run

from . import PROG
from .after import resolve_after
from .errors import StagingFailed, SubmitError
from .flags import Grid, expand_grid, grid_size, parse_flags, repeated_flags
from .project import OpContext, load_op, runs_dir_for_submit
from .rerun import stage_rerun

if TYPE_CHECKING:
    from gage_queue.depends import Depends

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
    gpus: int | None = None
    priority: int | None = None
    after: tuple[str, ...] = ()  # run specs (`after.resolve_after`)
    after_any: bool = False
    retries: int | None = None
    retry_on: str | None = None
    early_signal: str | None = None  # `--signal SIG@SECONDS`
    preemptible: bool | None = None


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
    rerun: RunSource | None = None
    request: RunRequest = DEFAULT_REQUEST
    depends: Depends | None = None  # the op's `depends`, resolved once for all its runs

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
    _check_after(options)
    queue = check_queue_name(options.queue if options.queue is not None else settings.queue)
    context = load_op(options.op_name, options.project_dir)
    op_cmd(context.opdef, context.project_dir)  # an op with nothing to run is bad input
    grid = _checked_grid(options)
    project_config = read_project_config(context.project_dir, context.opdef)
    check_flags(grid, project_config, context.opdef.name)
    runs_dir = runs_dir_for_submit(context, options.runs_dir)
    flags = expand_grid(grid)
    depends = _resolve_depends(context.opdef, context.opref, runs_dir, context.project_dir)
    return Plan(
        context=context,
        runs_dir=runs_dir,
        queue=queue,
        label=label,
        time_limit=options.time_limit,
        flags=flags,
        configs=[{**project_config, **run_flags} for run_flags in flags],
        request=_with_depends(RunRequest(
            options.gpus, options.priority or 0, resolve_after(runs_dir, options.after),
            options.after_any, options.retries or 0, RetryOn(options.retry_on or RETRY_ON[0]),
            _early_signal(options, options.time_limit), bool(options.preemptible)), depends),
        depends=depends,
    )


def plan_rerun(source: RunSource, options: SubmitOptions, settings: Settings) -> Plan:
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
    _check_after(options)
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
    inherited = request_from(submitted)
    runs_dir = os.path.dirname(os.path.abspath(source.run.run_dir))
    depends = _resolve_depends(source.opdef, source.run.opref, runs_dir, None)
    request = RunRequest(
        options.gpus if options.gpus is not None else inherited.gpus,
        options.priority if options.priority is not None else inherited.priority,
        resolve_after(runs_dir, options.after), options.after_any,
        options.retries if options.retries is not None else inherited.retries,
        RetryOn(options.retry_on) if options.retry_on else inherited.retry_on,
        _early_signal(options, time_limit) if options.early_signal else inherited.warning,
        inherited.preemptible if options.preemptible is None else options.preemptible,
    )
    return Plan(
        context=None,
        runs_dir=runs_dir,
        queue=queue,
        label=label,
        time_limit=time_limit,
        flags=flags,
        configs=[{**source.config, **run_flags} for run_flags in flags],
        rerun=source,
        request=_with_depends(request, depends),
        depends=depends,
    )


def _resolve_depends(opdef: OpDef, opref: OpRef, runs_dir: str,
                     project_dir: str | None) -> Depends | None:
    """The op's `depends` resolved (`gage_queue.depends`, imported only for an op that has
    them); None for one that has none."""
    if not opdef.get_dependencies():
        return None
    from gage_queue.depends import resolve_depends

    return resolve_depends(opdef, opref, runs_dir, project_dir)


def _with_depends(request: RunRequest, depends: Depends | None) -> RunRequest:
    """The request also waiting for the runs the op's `depends` select."""
    return request if depends is None else depends.applied_to(request)


def _early_signal(options: SubmitOptions, time_limit: float | None) -> EarlySignal | None:
    """`--signal`, checked: it needs a time limit longer than its lead."""
    if options.early_signal is None:
        return None
    early = parse_warning(options.early_signal)
    if time_limit is None:
        raise SubmitError("--signal needs a time limit (--time-limit): it is sent before it")
    if early.before >= time_limit:
        raise SubmitError(f"--signal {early} comes before the run starts: the time limit is"
                          f" {time_limit:g} s")
    return early


def _check_after(options: SubmitOptions) -> None:
    if options.after_any and not options.after:
        raise SubmitError("--after-any needs --after RUN: the runs to wait for")


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

    Ctrl-C (SIGINT, in the main thread) is handled from entering to
    leaving. The first stops the submission once the run each process is
    staging is queued: no run is started after it, the runs queued are
    still yielded, and `interrupted` is True after iterating. Another
    stops the runs being staged too: each is removed (its run dir, meta
    dir and index entry) unless its submission was already recorded, and
    then it is queued and yielded like the others. So every run left in
    the runs dir is queued, and every one was yielded.
    """

    def __init__(self, plan: Plan, settings: Settings):
        self._plan = plan
        self._settings = settings.with_overrides(runs_dir=plan.runs_dir)
        self._jobs = list(zip(plan.flags, plan.configs, strict=True))
        self._processes = min(os.cpu_count() or 1, len(self._jobs) // PARALLEL_MIN_RUNS)
        self._pool: Any = None
        self._stop: Any = None
        self._submitter: Submitter | None = None
        self._interrupts = _Interrupts(self)
        self.broker_error: BrokerUnavailable | None = None
        self.interrupted = False

    def __enter__(self) -> Submission:
        self._interrupts.__enter__()  # before the fork: no Ctrl-C is lost
        try:
            os.makedirs(self._plan.runs_dir, exist_ok=True)
            if self._processes > 1:
                import multiprocessing

                context = multiprocessing.get_context("fork")
                # A flag in shared memory, no lock: set from a signal handler, it cannot
                # deadlock on a lock the interrupted code holds (an Event's would).
                self._stop = context.RawValue("b", 0)
                self._pool = context.Pool(
                    self._processes, _init_worker, (self._plan, self._settings, self._stop)
                )
            else:
                self._submitter = _submitter(self._plan, self._settings).__enter__()
        except BaseException:
            self._interrupts.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._submitter is not None:
                self._submitter.__exit__(exc_type, exc, tb)
            if self._pool is not None:
                if exc_type is None:
                    self._pool.close()
                else:
                    self._pool.terminate()  # each process removes a run it has in progress
                self._pool.join()
        finally:
            self._interrupts.__exit__(None, None, None)

    def stop(self) -> None:
        """Stop once the runs in progress are queued (the first Ctrl-C)."""
        self.interrupted = True
        if self._stop is not None:
            self._stop.value = 1

    def stop_now(self) -> None:
        """Stop the runs in progress too: removed unless recorded (another Ctrl-C)."""
        self.stop()
        if self._pool is not None:
            for process in getattr(self._pool, "_pool", ()):
                if process.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGUSR1)
        else:
            _in_progress.stop_now()

    def __iter__(self) -> Iterator[Submitted]:
        if self._submitter is not None:
            for run_flags, config in self._jobs:
                if self.interrupted:
                    break
                try:
                    yield _stage_and_queue(self._plan, self._submitter, run_flags, config)
                except _Stopped:
                    break
            self.broker_error = self._submitter.error
            return
        if self.interrupted:  # before the pool was there to tell
            self._stop.value = 1
        chunks = [self._jobs[i : i + CHUNK_RUNS] for i in range(0, len(self._jobs), CHUNK_RUNS)]
        failure = None
        for submitted, broker_error, error in self._pool.imap(_stage_chunk, chunks):
            self.broker_error = self.broker_error or broker_error
            yield from submitted
            if error is not None and failure is None:
                failure = error
                self._stop.value = 1
        if failure is not None:
            raise failure


class _Interrupts:
    """SIGINT during a submission: `stop` it the first time, `stop_now` after.

    Installed only in the main thread (where Python runs signal handlers);
    the previous handler comes back on leaving, unless the submission was
    interrupted: then SIGINT stays ignored while the command ends. A
    forked process (the pool's, before its initializer ignores SIGINT)
    does nothing with it.
    """

    def __init__(self, submission: Submission):
        self._submission = submission
        self._pid = os.getpid()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            # Once interrupted, the command is ending: a further Ctrl-C must not cut
            # the last of its output (the runs queued, how many) or its exit code.
            interrupted = self._submission.interrupted
            signal.signal(signal.SIGINT, signal.SIG_IGN if interrupted else self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: object) -> None:
        if os.getpid() != self._pid:
            return
        if self._submission.interrupted:
            self._submission.stop_now()
        else:
            self._submission.stop()


class _Stopped(KeyboardInterrupt):
    """The run in progress was stopped part way (another Ctrl-C, or the pool's end)."""


class _InProgress:
    """Whether this process is staging a run and recording its submission: only then
    can `stop_now` stop it, and the run is removed (`_stage_and_queue`)."""

    busy = False

    def stop_now(self) -> None:
        if self.busy:
            self.busy = False
            raise _Stopped


_in_progress = _InProgress()


def _submitter(plan: Plan, settings: Settings) -> Submitter:
    return Submitter(queue=plan.queue, time_limit=plan.time_limit, settings=settings,
                     request=plan.request)


def _stage_and_queue(
    plan: Plan, submitter: Submitter, run_flags: dict[str, FlagValue], config: dict[str, Any]
) -> Submitted:
    """Stage a run and queue it.

    Until its submission is recorded the run can be stopped (`_InProgress`),
    and anything that stops it then removes it (a staging failure of Gage's
    kind leaves it pending, as Gage does). Once recorded it is queued: the
    send is not stopped (a broker that does not answer fails it within
    seconds, and reconcile sends it later).
    """
    run_id = make_run_id()
    recorded = False
    _in_progress.busy = True
    try:
        run = _stage(plan, run_id, config)
        if plan.depends is not None:
            from gage_queue.depends import write_depends

            write_depends(run, plan.depends.resolved)
        submitter.record(run)
        _in_progress.busy = False
        recorded = True  # from here on the run is queued
    except BaseException as e:
        _in_progress.busy = False
        if not recorded and not isinstance(e, StagingFailed):
            _discard(plan, run_id)
        raise
    return Submitted(run, run_flags, config, submitter.send(run))


def _stage(plan: Plan, run_id: str, config: dict[str, Any]) -> Run:
    try:
        if plan.rerun is not None:
            return stage_rerun(plan.rerun, config, plan.runs_dir, label=plan.label, run_id=run_id)
        context = _context(plan)
        return stage_op(
            context.project_dir, context.opdef, context.opref, config, plan.runs_dir,
            label=plan.label, run_id=run_id,
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


def _discard(plan: Plan, run_id: str) -> None:
    """Remove a run this submission made and did not record: its dirs and index entry."""
    run_dir = os.path.join(plan.runs_dir, run_id)
    discard_run(Run(run_id, OpRef("", plan.op_name), run_dir + ".meta", run_dir,
                    run_name_for_id(run_id)))
    active.remove(plan.runs_dir, run_id)


# In each pool process: the plan, its submitter, the stop flag (a shared byte, set: stop).
_worker: dict[str, Any] = {}


def _init_worker(plan: Plan, settings: Settings, stop: Any) -> None:
    import multiprocessing.util

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGUSR1, lambda signum, frame: _in_progress.stop_now())
    signal.signal(signal.SIGTERM, _terminated)
    submitter = _submitter(plan, settings).__enter__()
    multiprocessing.util.Finalize(
        submitter, submitter.__exit__, (None, None, None), exitpriority=10
    )
    _worker.update(plan=plan, submitter=submitter, stop=stop)


def _terminated(signum: int, frame: object) -> None:
    """The pool is terminated: remove a run being staged (`_stage_and_queue`), then exit."""
    _in_progress.busy = False
    raise SystemExit(128 + signum)


def _stage_chunk(
    jobs: list[tuple[dict[str, FlagValue], dict[str, Any]]],
) -> tuple[list[Submitted], BrokerUnavailable | None, Exception | None]:
    """Stage and queue a few runs in a pool process; what it did, and any error.

    It stops between runs once the stop flag is set, and part way through
    a run on SIGUSR1 (the parent's second Ctrl-C).
    """
    plan, submitter, stop = _worker["plan"], _worker["submitter"], _worker["stop"]
    submitted: list[Submitted] = []
    try:
        for run_flags, config in jobs:
            if stop.value:
                break
            submitted.append(_stage_and_queue(plan, submitter, run_flags, config))
    except _Stopped:
        pass
    except Exception as e:
        return submitted, submitter.error, e
    return submitted, submitter.error, None
