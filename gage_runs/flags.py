"""Flag values (`NAME=VALUE`) as `gage run` parses them, and list values for grids.

Gage 0.1.2 parses flags with a lark grammar (`lang.py`); this is the same
grammar by hand. A value, stripped of surrounding whitespace, is:

* empty -> `''`
* a quoted string, `"..."` or `'...'` -> its text, backslashes kept as
  written (the closing quote is the first one not escaped by a backslash);
  text after the closing quote is an error
* `true`, `false`, `null` (exactly) -> True, False, None
* else Python's `int()`, then `float()` if they accept it (so `1_000`,
  `1e3`, `inf` are numbers), else the text itself (`[1,2]` -> `'[1,2]'`)

A value cannot span lines. Names match `[\\w.][\\w.-]*` or are quoted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .errors import ConfigError

__all__ = ["FlagValue", "parse_flag_assigns", "parse_flag_list", "parse_flag_value"]

FlagValue = None | bool | int | float | str

_KEYWORDS: dict[str, FlagValue] = {"true": True, "false": False, "null": None}
_NAME = re.compile(r"[\w.][\w.\-]*")
_QUOTES = "\"'"
_INLINE_SPACE = " \t"


def parse_flag_value(s: str) -> FlagValue:
    """Parse a flag value as gage does: `1` -> 1, `"1"` -> '1', `hi` -> 'hi'."""
    try:
        return _parse_value(s)
    except ValueError as e:
        raise ConfigError(f"invalid flag value {s!r}: {e}") from None


def parse_flag_assigns(args: list[str]) -> dict[str, FlagValue]:
    """Parse `NAME=VALUE` items into a dict; a later item for a name wins."""
    return dict(_parse_flag_assign(arg) for arg in args)


def parse_flag_list(value: object) -> list[FlagValue] | None:
    """Return the items of a grid value written `[a,b,...]`, else None.

    Items are split on commas outside quotes and each is parsed as a flag
    value: `'[0.1, 0.01]'` -> [0.1, 0.01]. Anything else, including `[]`
    and non-strings, is not a grid and gives None. This is our extension:
    gage keeps `[1,2]` as the string `'[1,2]'`, as `parse_flag_value` does.
    """
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not (s.startswith("[") and s.endswith("]") and s[1:-1].strip()):
        return None
    items = _split_items(s[1:-1])
    try:
        return [_parse_list_item(n, item) for n, item in enumerate(items, 1)]
    except ValueError as e:
        raise ConfigError(f"invalid list {s!r}: {e}") from None


def _parse_list_item(n: int, item: str) -> FlagValue:
    if not item.strip():
        raise ValueError(f"item {n} is empty")
    if item.strip().startswith("["):
        raise ValueError("nested lists are not supported")
    try:
        return _parse_value(item)
    except ValueError as e:
        raise ValueError(f"item {n}: {e}") from None


def _parse_flag_assign(arg: str) -> tuple[str, FlagValue]:
    try:
        s = arg.strip()
        if "\n" in s:
            raise ValueError("a flag cannot span lines")
        name, value = _split_assign(s)
        return name, _parse_value(value)
    except ValueError as e:
        raise ConfigError(f"invalid flag {arg!r}: {e}") from None


def _split_assign(s: str) -> tuple[str, str]:
    """Split `NAME=VALUE` into the name and the value text."""
    quoted = _match_quoted(s)
    if quoted:
        name, rest = quoted
    else:
        m = _NAME.match(s)
        name, rest = (m.group(), s[m.end() :]) if m else ("", s)
    rest = rest.lstrip(_INLINE_SPACE)
    if not rest.startswith("="):
        if "=" not in s:
            raise ValueError("expected NAME=VALUE")
        raise ValueError(f"invalid name {s.split('=', 1)[0].strip(_INLINE_SPACE)!r}")
    if not name:
        raise ValueError("the name is empty")
    return name, rest[1:]


def _parse_value(s: str) -> FlagValue:
    s = s.strip()
    if "\n" in s:
        raise ValueError("a value cannot span lines")
    quoted = _match_quoted(s)
    if quoted:
        text, rest = quoted
        if rest:
            raise ValueError(f"unexpected {rest.lstrip(_INLINE_SPACE)!r} after the closing quote")
        return text
    if s in _KEYWORDS:
        return _KEYWORDS[s]
    return _number_or_text(s)


def _match_quoted(s: str) -> tuple[str, str] | None:
    """Split a leading quoted string into its text and the rest, if it has one."""
    if not s or s[0] not in _QUOTES:
        return None
    end = 0
    while True:
        end = s.find(s[0], end + 1)
        if end < 0:
            return None
        if _backslashes_before(s, end) % 2 == 0:
            return s[1:end], s[end + 1 :]


def _backslashes_before(s: str, pos: int) -> int:
    return pos - len(s[:pos].rstrip("\\"))


def _number_or_text(s: str) -> int | float | str:
    for convert in (int, float):
        try:
            return convert(s)
        except ValueError:
            pass
    return s


def _split_items(s: str) -> list[str]:
    """Split on commas outside quoted items (a quote opens only at an item's start)."""
    items, start, quote, escaped = [], 0, "", False
    for i, c in enumerate(s):
        if escaped:
            escaped = False
        elif quote:
            escaped = c == "\\"
            quote = "" if c == quote else quote
        elif c in _QUOTES and not s[start:i].strip():
            quote = c
        elif c == ",":
            items.append(s[start:i])
            start = i + 1
    items.append(s[start:])
    return items


def check_flags(
    flags: Mapping[str, Iterable[FlagValue]], config: Mapping[str, FlagValue], op_name: str
) -> None:
    """ConfigError for a flag the op's config lacks, or a value that cannot
    replace the current one (a number for a number, true/false for a
    boolean; null always, and anything for a string or null config).

    Gage 0.1.2 checks neither: it records the flag and changes nothing, so
    a typo would fail an hour later on a worker instead of at submit.
    """
    for name, values in flags.items():
        if name not in config:
            raise ConfigError(_unknown_flag_message(name, config, op_name))
        for value in values:
            _check_flag_value(name, value, config[name])


def _unknown_flag_message(name: str, config: Mapping[str, FlagValue], op_name: str) -> str:
    if not config:
        return f"unknown flag '{name}': operation '{op_name}' has no flags (its config is empty)"
    from difflib import get_close_matches  # only for a name that is not there

    close = get_close_matches(name, list(config), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"unknown flag '{name}' for operation '{op_name}'{hint};"
        f" valid flags: {', '.join(sorted(config))}"
    )


def _check_flag_value(name: str, value: FlagValue, current: FlagValue) -> None:
    if value is None:
        return
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"invalid value for flag '{name}': expected true or false, got {value!r}")
    if _is_number(current) and not _is_number(value):
        raise ConfigError(
            f"invalid value for flag '{name}': expected a number"
            f" (currently {current!r}), got {value!r}"
        )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
