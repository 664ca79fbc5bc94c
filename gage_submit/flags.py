"""Flags on the command line: parsed as Gage parses them, checked, and expanded into a grid.

`NAME=VALUE` parses as `gage run` parses it (`gage_runs.flags`). A value
written as a list, `lr=[0.1,0.01]`, is a grid axis: one run per
combination of all axes, in the order the flags were given, the last axis
varying fastest. Quote a list to pass it as a string: `tags='[a,b]'`.

Names and values are checked against the op's config by
`gage_runs.flags.check_flags`, so a typo fails at submit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

from gage_queue.text import check_user_text, shown
from gage_runs.errors import GageRunsError
from gage_runs.flags import FlagValue, parse_flag_assigns, parse_flag_list, parse_flag_value

Grid = dict[str, list[FlagValue]]


def parse_flags(args: list[str]) -> Grid:
    """`["lr=[0.1,0.01]", "batch=32"]` -> `{"lr": [0.1, 0.01], "batch": [32]}`.

    A later assignment of a name replaces an earlier one, as in Gage
    (`repeated_flags` names them, for a notice). A flag name is a name:
    one with a control character is refused (`BadText`, exit 2); values
    are the program's data and are only escaped when shown.
    """
    grid: Grid = {}
    for arg in args:
        ((name, value),) = parse_flag_assigns([arg]).items()
        check_user_text(name, "flag name")
        items = parse_flag_list(value) if _unquoted_list(arg) else None
        grid[name] = items if items is not None else [value]
    return grid


def repeated_flags(args: list[str]) -> dict[str, list[str]]:
    """The names given more than once, with the value text of each time, in order.

    Gage keeps the last (`gage run train lr=0.1 lr=0.2` runs lr=0.2), and
    so does gage-submit; a grid is written `lr=[0.1,0.2]`.
    """
    given: dict[str, list[str]] = {}
    for arg in args:
        ((name, _),) = parse_flag_assigns([arg]).items()
        given.setdefault(name, []).append(arg.partition("=")[2].strip())
    return {name: values for name, values in given.items() if len(values) > 1}


def _unquoted_list(arg: str) -> bool:
    return arg.partition("=")[2].strip().startswith("[")


def grid_size(grid: Grid) -> int:
    """The number of runs a grid makes."""
    return math.prod(len(values) for values in grid.values())


def expand_grid(grid: Grid) -> list[dict[str, FlagValue]]:
    """Every combination of the grid's values, one flags dict per run."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def format_flags(flags: Mapping[str, FlagValue]) -> str:
    """`lr=0.1 batch=32`, for one line of output: control characters escaped, each
    value at most `SHOWN_LIMIT` characters (`gage_queue.text.shown`)."""
    return " ".join(f"{shown(name)}={shown(_format_value(value))}" for name, value in flags.items())


def _format_value(value: FlagValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (
        _reparses_as(value) != value or value.startswith("[") or any(c.isspace() for c in value)
    ):
        return repr(value)
    return str(value)


def _reparses_as(text: str) -> FlagValue:
    try:
        return parse_flag_value(text)
    except GageRunsError:
        return None

