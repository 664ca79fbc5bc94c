"""A plain submit's command line read without click: `gage-submit [submit] OP [NAME=VALUE]...`
with the submit options, spelled out.

Importing click and what it loads (inspect, uuid, datetime, gettext) is about a
fifth of a one-run submit's time, and scripts that submit one run at a time pay
it per run. `parse` reads the plain forms of that command line into the submit
command's parameters, exactly as click would (a test holds the table and the
results equal to the click declaration's, `gage_submit.commands.submit`), and
returns None for anything else: help, `--version`, another command, completion,
`--`, a short option joined to its value, an option given twice, a value click
would refuse. Click then reads it and says what is wrong as ever.
"""

from __future__ import annotations

import os
from typing import Any

from .commands import COMMANDS

VALUE_OPTIONS: dict[str, str] = {
    "-C": "project_dir", "--project-dir": "project_dir", "--runs-dir": "runs_dir",
    "-q": "queue", "--queue": "queue", "-l": "label", "--label": "label",
    "--time-limit": "time_limit", "--gpus": "gpus", "--priority": "priority",
    "--signal": "early_signal", "--retries": "retries", "--retry-on": "retry_on",
    "--max-runs": "max_runs", "--broker": "broker",
}
"""Options that take a value, and their parameter."""

FLAGS: dict[str, str] = {
    "--after-any": "after_any", "--preemptible": "preemptible", "--wait": "wait",
    "--follow": "follow", "--json": "as_json", "-y": "yes", "--yes": "yes",
}

REPEATABLE = {"--after": "after"}

NOT_EMPTY = frozenset(("project_dir", "runs_dir", "broker"))
"""Parameters refused when given empty (click's `not_empty` callback)."""

DEFAULT_MAX_RUNS = 100
"""A grid of more runs is refused unless `--max-runs` says more."""

DEFAULTS: dict[str, Any] = {
    "args": (), "project_dir": None, "runs_dir": None, "queue": None, "label": None,
    "time_limit": None, "gpus": None, "priority": None, "after": (), "after_any": False,
    "early_signal": None, "preemptible": None, "retries": None, "retry_on": None,
    "max_runs": DEFAULT_MAX_RUNS, "wait": False, "follow": False, "as_json": False,
    "broker": None, "yes": False,
}
"""Every parameter of the submit command when not given."""


def parse(argv: list[str]) -> dict[str, Any] | None:
    """The submit command's parameters for `argv` (without the program name), or None
    when it is not a plain submit and click is to read it."""
    if any(name.startswith("_GAGE_SUBMIT_COMPLETE") for name in os.environ):
        return None
    words = argv[1:] if argv[:1] == ["submit"] else argv
    if not words or words[0].startswith("-") or words[0] in COMMANDS:
        return None
    params = dict(DEFAULTS)
    given: set[str] = set()
    args: list[str] = []
    after: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or word == "-":
            args.append(word)
            continue
        name, eq, value = word.partition("=")
        if name in REPEATABLE or name in VALUE_OPTIONS:
            if not eq:
                if i == len(words):
                    return None
                value = words[i]
                i += 1
            if name in REPEATABLE:
                after.append(value)
                continue
            param = VALUE_OPTIONS[name]
            converted = _converted(param, value)
            if converted is None or param in given or (eq and not name.startswith("--")):
                return None
            params[param] = converted
            given.add(param)
        elif name in FLAGS and not eq and FLAGS[name] not in given:
            params[FLAGS[name]] = True
            given.add(FLAGS[name])
        else:
            return None
    params["args"] = tuple(args)
    params["after"] = tuple(after)
    return params


def choices(param: str) -> tuple[str, ...] | None:
    """The values a choice parameter takes, None for any other parameter (imported here, when
    one is given: `--help` and the other commands pass through this module first)."""
    if param == "retry_on":
        from gage_queue.requests import RETRY_ON

        return RETRY_ON
    return None


def int_range(param: str) -> tuple[int, int | None] | None:
    """The bounds of an integer parameter, as its click type has them (`gage_queue.requests`'
    limits, imported as `choices` imports its values); None for any other parameter."""
    if param == "max_runs":
        return 1, None
    if param not in ("gpus", "priority", "retries"):
        return None
    from gage_queue.requests import MAX_GPUS, MAX_PRIORITY, MAX_RETRIES, MIN_PRIORITY

    return {"gpus": (0, MAX_GPUS), "priority": (MIN_PRIORITY, MAX_PRIORITY),
            "retries": (0, MAX_RETRIES)}[param]


def _converted(param: str, value: str) -> Any:
    """`value` as click makes it for `param`, or None where click would refuse it."""
    if param in NOT_EMPTY and not value.strip():
        return None
    allowed = choices(param)
    if allowed is not None:
        return value if value in allowed else None
    bounds = int_range(param)
    if bounds is not None:
        low, high = bounds
        try:
            number = int(value)
        except ValueError:
            return None
        if number < low or (high is not None and number > high):
            return None
        return number
    return value
