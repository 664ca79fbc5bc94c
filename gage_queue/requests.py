"""What a run asks of the pool: GPUs and a priority, checked at the door.

A run takes one slot of a node and `gpus` GPUs of that node's host.
`gpus=None` (the default) keeps the behaviour of a plain run: one GPU on a
worker that has GPUs, none on one that has not. `--gpus 0` never takes a
GPU and sees none (`CUDA_VISIBLE_DEVICES` is empty on a GPU worker).
Higher priorities start first; within a priority, the earlier submit.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, replace
from typing import Any

from gage_queue.durations import DurationError, parse_duration
from gage_queue.errors import SettingsError
from gage_queue.states import RunState
from gage_runs.names import is_run_id

MAX_GPUS = 64
MAX_RETRIES = 100


class RetryOn(str, enum.Enum):
    """Which ends call for another attempt (`--retry-on`)."""

    LOST = "lost"  # its worker or its host died
    ERROR = "error"  # that, or a non-zero exit

    def __str__(self) -> str:
        return self.value


RETRY_ON = tuple(r.value for r in RetryOn)
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000


@dataclass(frozen=True)
class RunRequest:
    """A run's GPUs (None: one where there are GPUs), priority, and the runs it waits for
    (`after`: their ids; `after_any`: whatever they end as, else only if all complete;
    `any_end`: those of `after` that may end any way, such as a runs-summary's runs)."""

    gpus: int | None = None
    priority: int = 0
    after: tuple[str, ...] = ()
    after_any: bool = False
    retries: int = 0  # new attempts after a lost run (and a failed one: `RetryOn.ERROR`)
    retry_on: RetryOn = RetryOn.LOST
    warning: EarlySignal | None = None  # a signal before the time limit (`--signal`)
    preemptible: bool = False  # may be stopped for a higher-priority run, then run again
    any_end: tuple[str, ...] = ()

    @property
    def first_state(self) -> RunState:
        """What a submit commits: waiting for the runs in `after`, else queued."""
        return RunState.WAITING if self.after else RunState.QUEUED

    def without_waits(self) -> RunRequest:
        """The request once the runs it waited for ended: it waits for nothing."""
        return replace(self, after=(), after_any=False, any_end=())

    def gpus_on(self, node_gpus: int) -> int:
        """The GPUs the run takes on a node with `node_gpus` GPUs."""
        if self.gpus is None:
            return 1 if node_gpus else 0
        return self.gpus

    def words(self) -> str:
        """"4 GPUs", "1 GPU", "no GPU", "a GPU where there are GPUs"."""
        if self.gpus is None:
            return "1 GPU where there are GPUs"
        return gpu_words(self.gpus)


DEFAULT_REQUEST = RunRequest()


@dataclass(frozen=True)
class EarlySignal:
    """`--signal SIG@SECONDS`: the run gets SIG that long before its time limit."""

    signal: str  # its name: SIGUSR1
    before: float  # seconds

    def __str__(self) -> str:
        return f"{self.signal}@{self.before:g}"


_NEVER_SENT = {"SIGKILL", "SIGSTOP"}


def parse_warning(text: str) -> EarlySignal:
    """`USR1@60`, `SIGTERM@5m`; SettingsError (bad input) for anything else."""
    name, at, before = text.partition("@")
    name = name.strip().upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if not at or name in _NEVER_SENT or not isinstance(getattr(signal, name, None), int) \
            or name.startswith("SIG_"):
        raise SettingsError(
            f"invalid --signal {text!r}: expected SIG@SECONDS, e.g. USR1@60 (any signal"
            " but KILL and STOP)")
    try:
        seconds = parse_duration(before)
    except DurationError as e:
        raise SettingsError(f"invalid --signal {text!r}: {e}") from None
    return EarlySignal(name, seconds)


def gpu_words(count: int) -> str:
    return "no GPU" if count == 0 else f"{count} GPU" + ("s" if count != 1 else "")


def check_gpus(value: object) -> int | None:
    """A GPU count from a flag or a file; SettingsError (bad input) for anything else."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise SettingsError(f"invalid GPU count {value!r}: expected 0 to {MAX_GPUS}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GPUS:
        raise SettingsError(f"invalid GPU count {value!r}: expected 0 to {MAX_GPUS}")
    return value


def check_priority(value: object) -> int:
    """A priority from a flag or a file; SettingsError (bad input) for anything else."""
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise SettingsError(
                f"invalid priority {value!r}: expected an integer"
                f" from {MIN_PRIORITY} to {MAX_PRIORITY}") from None
    if isinstance(value, bool) or not isinstance(value, int) \
            or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise SettingsError(
            f"invalid priority {value!r}: expected an integer"
            f" from {MIN_PRIORITY} to {MAX_PRIORITY}")
    return value


def time_limit_of(data: dict[str, Any]) -> float | None:
    """The time limit (seconds) recorded in `queue/submitted` or a waiting entry; None if
    it has none or it is not a positive number."""
    limit = data.get("time_limit")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        return None
    return float(limit)


def request_from(data: dict[str, Any] | None) -> RunRequest:
    """The request recorded in `queue/submitted` (or a waiting entry); defaults if absent or bad."""
    data = data or {}
    after = _run_ids(data.get("after"))
    any_end = tuple(a for a in _run_ids(data.get("any_end")) if a in after)
    retries = data.get("retries")
    retries = retries if isinstance(retries, int) and 0 <= retries <= MAX_RETRIES else 0
    retry_on = RetryOn(data["retry_on"]) if data.get("retry_on") in RETRY_ON else RetryOn.LOST
    try:
        warning = parse_warning(data["signal"]) if isinstance(data.get("signal"), str) else None
    except SettingsError:
        warning = None
    try:
        return RunRequest(check_gpus(data.get("gpus")), check_priority(data.get("priority", 0)),
                          after, data.get("after_any") is True, retries, retry_on, warning,
                          data.get("preemptible") is True, any_end)
    except SettingsError:
        return RunRequest(after=after, after_any=data.get("after_any") is True,
                          retries=retries, retry_on=retry_on, warning=warning,
                          preemptible=data.get("preemptible") is True, any_end=any_end)


def _run_ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(a for a in value if isinstance(a, str) and is_run_id(a))
