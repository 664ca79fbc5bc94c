"""The submit command once its arguments are read: stage and queue the runs, then wait or
follow as asked.

Click-free, so a plain submit read by `gage_submit.submit_args` loads no click;
`gage_submit.commands.submit` is its click declaration.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .commands.common import print_runs_json, settings_for, state_exit_code

if TYPE_CHECKING:  # imported where used: a submit must not pay for what list needs
    from gage_queue.errors import BrokerUnavailable, Interrupted
    from gage_queue.settings import Settings

    from .errors import StagingFailed
    from .submit import Plan, SubmitOptions, Submitted


def submit_command(args: tuple[str, ...] | list[str], *, project_dir: str | None,
                   wait: bool, follow: bool, as_json: bool, broker: str | None,
                   **run_options: Any) -> int:
    """`gage-submit [submit] OP [NAME=VALUE]...` with its options; the exit code.
    `run_options`: the options of a command that queues runs (`submit_options`)."""
    from .project import current_namespace
    from .submit import plan_submit

    check_output_options(follow=follow, as_json=as_json)
    op_name, flag_args = split_op(list(args))
    settings = settings_for(None, broker)
    options = submit_options(op_name, flag_args, project_dir=project_dir, **run_options)
    return submit_plan(plan_submit(options, settings), settings, wait=wait, follow=follow,
                       as_json=as_json, namespace=current_namespace(project_dir))


def submit_options(op_name: str | None, flag_args: list[str], *, time_limit: str | None,
                   **options: Any) -> SubmitOptions:
    """`SubmitOptions` from the options of a command that queues runs (`submit`, `rerun`:
    `commands.options.run_options`), its `--time-limit` parsed."""
    from gage_queue.durations import parse_duration

    from .submit import SubmitOptions

    return SubmitOptions(
        op_name, flag_args, **options,
        time_limit=parse_duration(time_limit) if time_limit is not None else None)


def check_output_options(*, follow: bool, as_json: bool) -> None:
    """--follow streams a run's output, which --json would mix with its document."""
    from .errors import SubmitError

    if follow and as_json:
        raise SubmitError("--follow streams output; it cannot be used with --json")


def split_op(args: list[str]) -> tuple[str | None, list[str]]:
    """The op name and the flags; a first word with `=` is a flag (as in Gage)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def submit_plan(plan: Plan, settings: Settings, *, wait: bool, follow: bool,
                as_json: bool, namespace: str | None = None) -> int:
    """Stage and queue a plan's runs, then wait or follow as asked; the exit code.

    `--json` prints the runs (`print_runs_json`), ops shown as in `namespace`.
    """
    from .errors import SubmitError

    count = len(plan.configs)
    if follow and count > 1:
        raise SubmitError(f"--follow takes a single run and the flags make {count}: use --wait")
    _say_if_too_big(plan)
    submitted, failure = _submit_all(plan, settings, quiet=as_json)
    runs = [s.run for s in submitted]
    if failure is not None:
        if as_json:
            print_runs_json(runs, namespace)
        raise failure
    if follow:
        from .commands.logs import follow_run

        return state_exit_code(follow_run(runs[0], notice_after=settings.no_worker_notice))
    code = 0
    if wait:
        from .commands.wait import wait_runs

        code = wait_runs(runs, None, quiet=as_json, notice_after=settings.no_worker_notice)
    if as_json:
        print_runs_json(runs, namespace)
    return code


def _say_if_too_big(plan: Plan) -> None:
    """One line on stderr if the live workers of the plan's queue have fewer GPUs than
    each run asks for: the runs are queued all the same, for a bigger worker to come."""
    wanted = plan.request.gpus
    if not wanted:
        return
    from gage_queue.pool import live_nodes
    from gage_queue.requests import gpu_words

    serving = [n for n in live_nodes(plan.runs_dir) if plan.queue in n.queues]
    largest = max((len(n.gpus) for n in serving), default=None)
    if largest is not None and largest < wanted:
        print(f"gage-submit: no worker of queue {plan.queue!r} has {gpu_words(wanted)}"
              f" (the largest has {largest}): the runs wait until one does", file=sys.stderr)


def _submit_all(
    plan: Plan, settings: Settings, *, quiet: bool
) -> tuple[list[Submitted], StagingFailed | BrokerUnavailable | Interrupted | None]:
    """Stage and queue the plan's runs with a line each; what was submitted, and any failure.

    The failure is a staging error, Ctrl-C (`Interrupted`: every run queued
    has its line, and the message says how many of the plan's were), or
    the broker being unreachable (then the runs stay queued for reconcile).
    """
    from gage_queue.errors import BrokerUnavailable, Interrupted

    from .errors import StagingFailed
    from .flags import format_flags
    from .progress import RunLines
    from .submit import Submission

    count = len(plan.configs)
    submitted: list[Submitted] = []
    with Submission(plan, settings) as submission, RunLines(
        sys.stdout, count, f"Submitting {count} runs", quiet=quiet
    ) as lines:
        try:
            for item in submission:
                submitted.append(item)
                lines.line(plan.request.first_state, item.run, format_flags(item.flags))
                lines.update(len(submitted))
        except StagingFailed as e:
            return submitted, e
    unsent = sum(not s.sent for s in submitted)
    if submission.interrupted:
        waits = f"; {unsent} of them wait for reconcile to send them ({submission.broker_error})" \
            if unsent else ""
        return submitted, Interrupted(
            f"interrupted: {len(submitted)} of {count} queued{waits}; the other"
            f" {count - len(submitted)} were not staged"
        )
    if submission.broker_error is None:
        return submitted, None
    return submitted, BrokerUnavailable(
        f"{submission.broker_error}; {unsent} of {count} runs stay queued in {plan.runs_dir}"
        " and reconcile sends them when the broker is back (any worker on start, or"
        " `gage-worker reconcile`)"
    )
