"""The one duration grammar: time limits, schedule intervals, wait timeouts.

`90`, `90s`, `30m`, `2h`, `1h30m`, `1.5d` (units s, m, h, d, summed) or a
number of seconds; more than zero and at most a year (a larger figure is
a typo, not a limit).
"""

from __future__ import annotations

import math
import re

from gage_runs.errors import GageRunsError

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 366 * 86400.0


class DurationError(GageRunsError):
    """Not a duration of this grammar: `invalid duration VALUE: REASON`."""

    def __init__(self, value: object, reason: str):
        super().__init__(f"invalid duration {value!r}: {reason}")
        self.value = value
        self.reason = reason


def parse_duration(value: str | float) -> float:
    """Seconds from `value`; DurationError with a one-line reason if bad."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DurationError(value, "use seconds, or e.g. 30m, 2h, 1h30m")
    if isinstance(value, str):
        text = "".join(value.split()).lower()
        parts = list(_PART.finditer(text))
        if not parts or "".join(m.group() for m in parts) != text:
            raise DurationError(value, "use seconds, or e.g. 30m, 2h, 1h30m")
        seconds = sum(float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in parts)
    else:
        seconds = float(value)
    if not 0 < seconds < math.inf:
        raise DurationError(value, "must be more than zero")
    if seconds > MAX_SECONDS:
        raise DurationError(value, "more than a year")
    return seconds


def format_duration(seconds: float | None) -> str:
    """`0.42` -> `0.4s`, `192` -> `3m12s`, `5400` -> `1h30m`, `86400` -> `1d`; None -> ``."""
    if seconds is None:
        return ""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    total = round(seconds)
    parts = [(total // 86400, "d"), (total % 86400 // 3600, "h"), (total % 3600 // 60, "m"),
             (total % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
