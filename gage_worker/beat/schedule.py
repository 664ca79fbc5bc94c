"""The schedule file of `gage-worker beat`: ops to submit on a cron or interval.

A TOML file with one `[[job]]` table per job:

    [[job]]
    name = "nightly-train"        # required, unique; runs are marked with it
    project = "hello"             # required: project dir, relative to this file's dir
    op = "train"                  # required: an op of the project's Gage file
    flags = { lr = 0.05, epochs = 3 }
    cron = "0 3 * * *"            # or: every = "30s" | "5m" | "2h" | "1d" | seconds
    queue = "gage"                # default: GAGE_QUEUE (gage)
    label = "nightly"
    time_limit = "2h"             # or seconds
    gpus = 2                      # GPUs each run takes (default: one on a GPU worker)
    priority = 5                  # higher starts first (default 0)
    retries = 2                   # a lost run runs again as a new run, up to 2 times
    overlap = false               # default: skip a tick while the last run is active

Exactly one of `every` and `cron` (see `gage_worker.beat.cron`). Flag values
keep their TOML type; a string is parsed as a Gage flag value (`"1e-3"`
is a number, `'"007"'` the string 007). Flags must be in the op's config
and fit its current values, as `gage-submit` checks them.

Ticks that fell due while no beat ran, or while a tick took longer than
the interval, are coalesced into one tick, at once; for a cron job only
if it is at most `CATCH_UP` seconds late (so a beat restarted or taking
over a moment after a tick still makes it, but a beat started at noon
does not run the 3 am job).

Every error is a one-line `ScheduleError` naming the file and the job.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

from gage_queue import durations
from gage_queue.durations import DurationError
from gage_queue.errors import QueueError, SettingsError
from gage_queue.requests import (
    DEFAULT_REQUEST,
    MAX_RETRIES,
    RETRY_ON,
    RetryOn,
    RunRequest,
    check_gpus,
    check_priority,
)
from gage_queue.settings import check_queue_name
from gage_runs.config import read_project_config
from gage_runs.errors import GageRunsError
from gage_runs.flags import FlagValue, check_flags, parse_flag_value
from gage_runs.gagefile import load_project_op
from gage_runs.types import OpDef, OpRef
from gage_worker.beat.cron import Cron, parse_cron

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

JOB_KEYS = (
    "name", "project", "op", "flags", "every", "cron", "queue", "label", "time_limit", "overlap",
    "gpus", "priority", "retries", "retry_on",
)
MIN_EVERY = 1.0
CATCH_UP = 120.0

_JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*\Z")


class ScheduleError(QueueError):
    """A schedule file is malformed, or one of its jobs cannot be loaded."""


@dataclass(frozen=True)
class Every:
    """An interval trigger."""

    seconds: float

    def next_tick(self, last: float | None, now: float) -> float:
        """When the tick after `last` (None: no tick yet) is due: at once if overdue."""
        return now if last is None else max(last + self.seconds, now)

    def __str__(self) -> str:
        return f"every {durations.format_duration(self.seconds)}"


@dataclass(frozen=True)
class CronTrigger:
    """A cron trigger."""

    cron: Cron

    def next_tick(self, last: float | None, now: float) -> float:
        """The first cron time after `last`, not more than CATCH_UP s before `now`."""
        return self.cron.next_after(max(now - CATCH_UP, -math.inf if last is None else last))

    def __str__(self) -> str:
        return f"cron '{self.cron.expr}'"


Trigger = Every | CronTrigger


@dataclass(frozen=True)
class Job:
    """One `[[job]]` of a schedule, checked."""

    name: str
    project_dir: str
    op_name: str
    flags: dict[str, FlagValue]
    trigger: Trigger
    queue: str | None = None
    label: str | None = None
    time_limit: float | None = None
    overlap: bool = False
    request: RunRequest = DEFAULT_REQUEST


@dataclass(frozen=True)
class Schedule:
    """A loaded schedule file: its absolute path and its jobs, in file order."""

    path: str
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class JobOp:
    """What staging a run of a job needs, loaded from its project now."""

    opdef: OpDef
    opref: OpRef
    config: dict[str, Any]


def load_schedule(path: str) -> Schedule:
    """Read and check a schedule file and load every job's op; ScheduleError if bad."""
    data = _read_toml(path)
    unknown = sorted(set(data) - {"job"})
    if unknown:
        hint = _did_you_mean(unknown[0], ["job"])
        raise ScheduleError(f"{path}: unknown key '{unknown[0]}'{hint}: use [[job]] tables")
    tables = data.get("job")
    if not tables:
        raise ScheduleError(f"{path}: no jobs: add a [[job]] table for each job")
    if not isinstance(tables, list):
        raise ScheduleError(f"{path}: 'job' must be an array of tables: write [[job]]")
    base_dir = os.path.dirname(os.path.abspath(path))
    jobs: list[Job] = []
    for n, table in enumerate(tables, 1):
        where = _job_where(path, n, table)
        try:
            job = _parse_job(table, base_dir)
            if any(other.name == job.name for other in jobs):
                raise ScheduleError("another job has the same name")
            load_job_op(job)
        except GageRunsError as e:
            raise ScheduleError(f"{where}: {e}") from None
        jobs.append(job)
    return Schedule(os.path.abspath(path), tuple(jobs))


def load_job_op(job: Job) -> JobOp:
    """Load the job's Gage file and op, and its config with the job's flags over it."""
    _gagefile, opdef, opref = load_project_op(job.project_dir, job.op_name)
    config = read_project_config(job.project_dir, opdef)
    check_flags({name: [value] for name, value in job.flags.items()}, config, opdef.name)
    return JobOp(opdef, opref, {**config, **job.flags})


def parse_duration(value: object, key: str) -> float:
    """Seconds from the one duration grammar (`gage_queue.durations`); ScheduleError if bad."""
    try:
        return durations.parse_duration(value)  # type: ignore[arg-type]
    except DurationError as e:
        raise ScheduleError(f"invalid {key} {value!r}: {e.reason}") from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ScheduleError(f"{path}: schedule file does not exist") from None
    except OSError as e:
        raise ScheduleError(f"{path}: cannot read the schedule file: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ScheduleError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ScheduleError(f"{path}: invalid TOML: {e}") from None


def _job_where(path: str, n: int, table: object) -> str:
    name = table.get("name") if isinstance(table, dict) else None
    return f"{path}: job '{name}'" if isinstance(name, str) and name else f"{path}: job #{n}"


def _parse_job(table: object, base_dir: str) -> Job:
    if not isinstance(table, dict):
        raise ScheduleError("a job must be a table")
    for key in table:
        if key not in JOB_KEYS:
            raise ScheduleError(f"unknown key '{key}'{_did_you_mean(key, JOB_KEYS)}")
    for key in ("name", "project", "op"):
        if key not in table:
            raise ScheduleError(f"missing key '{key}'")
    name = _string(table, "name")
    if not _JOB_NAME.match(name):
        raise ScheduleError(f"invalid name {name!r}: use letters, digits and _ . : - only")
    project_dir = os.path.join(base_dir, os.path.expanduser(_string(table, "project")))
    if not os.path.isdir(project_dir):
        raise ScheduleError(f"project dir {os.path.normpath(project_dir)} does not exist")
    queue = table.get("queue")
    time_limit = table.get("time_limit")
    return Job(
        name=name,
        project_dir=os.path.normpath(project_dir),
        op_name=_string(table, "op"),
        flags=_parse_flags(table.get("flags", {})),
        trigger=_parse_trigger(table),
        queue=check_queue_name(_string(table, "queue")) if queue is not None else None,
        label=_string(table, "label") if "label" in table else None,
        time_limit=parse_duration(time_limit, "time_limit") if time_limit is not None else None,
        overlap=_boolean(table, "overlap"),
        request=_request(table),
    )


def _request(table: dict[str, Any]) -> RunRequest:
    """`gpus` and `priority` of a job, checked as `--gpus` and `--priority` are."""
    retries = table.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise ScheduleError(f"invalid retries {retries!r}: expected 0 to {MAX_RETRIES}")
    retry_on = table.get("retry_on", RetryOn.LOST.value)
    if retry_on not in RETRY_ON:
        raise ScheduleError(f"invalid retry_on {retry_on!r}: expected one of {', '.join(RETRY_ON)}")
    try:
        return RunRequest(check_gpus(table.get("gpus")), check_priority(table.get("priority", 0)),
                          retries=retries, retry_on=RetryOn(retry_on))
    except SettingsError as e:
        raise ScheduleError(str(e)) from None


def _parse_trigger(table: dict[str, Any]) -> Trigger:
    if ("every" in table) == ("cron" in table):
        raise ScheduleError("give exactly one of 'every' and 'cron'")
    if "cron" in table:
        return CronTrigger(parse_cron(table["cron"]))
    seconds = parse_duration(table["every"], "every")
    if seconds < MIN_EVERY:
        raise ScheduleError(f"every must be at least {MIN_EVERY:g}s, not {table['every']!r}")
    return Every(seconds)


def _parse_flags(value: object) -> dict[str, FlagValue]:
    if not isinstance(value, dict):
        raise ScheduleError("'flags' must be a table, like flags = { lr = 0.1 }")
    flags: dict[str, FlagValue] = {}
    for name, flag in value.items():
        if isinstance(flag, str):
            flags[name] = parse_flag_value(flag)
        elif isinstance(flag, (bool, int, float)):
            flags[name] = flag
        else:
            raise ScheduleError(
                f"flag '{name}': expected a string, number or boolean, not {_toml_type(flag)}"
            )
    return flags


def _string(table: dict[str, Any], key: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ScheduleError(f"'{key}' must be a non-empty string, not {value!r}")
    return value


def _boolean(table: dict[str, Any], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ScheduleError(f"'{key}' must be true or false, not {value!r}")
    return value


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    matches = get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
