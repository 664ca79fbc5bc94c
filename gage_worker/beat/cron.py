"""Cron expressions: five fields, and the next local time they match.

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)

A field is `*` or a comma-separated list of `N`, `N-M` and either with a
step (`*/15`, `1-30/5`). Months take `jan`..`dec` and days of the week
`sun`..`sat` (any case). A range whose end is before its start wraps
around (`fri-mon`). Fields are expanded by Celery's `crontab_parser`;
this module checks the syntax strictly first (Celery accepts `jan` as a
weekday and ignores trailing text after a step), and finds the next time
itself, because Celery's `crontab` needs an app time zone and matches the
day of month AND the day of week.

Days match as in Vixie cron: when both day fields are restricted (neither
starts with `*`), a day matches if either does (`0 0 1 * mon` is the 1st
and every Monday); otherwise both must. Times are the host's local time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from celery.schedules import ParseException, crontab_parser

from gage_queue.errors import QueueError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# A list item: `*` or `N` or `N-M`, then an optional `/STEP`; N is a number or a name.
_ITEM = re.compile(r"(\*|(\d+|[a-z]+)(-(\d+|[a-z]+))?)(/\d+)?\Z")
# Long enough for the rarest date a valid expression can name (Feb 29 on a weekday).
_SEARCH_YEARS = 28


class CronError(QueueError):
    """A cron expression is malformed or never matches."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTHS),
    _Field("day of week", 0, 7, WEEKDAYS),
)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; `next_after(t)` gives its next tick."""

    expr: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_or_weekdays: bool  # both day fields restricted: either one matches

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after epoch time `t` (local time)."""
        start = datetime.fromtimestamp(t).replace(second=0, microsecond=0) + timedelta(minutes=1)
        for day in _days_from(start.date()):
            if not self._day_matches(day):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    when = datetime(day.year, day.month, day.day, hour, minute)
                    if when >= start and when.timestamp() > t:
                        return when.timestamp()
        raise CronError(f"cron {self.expr!r} never matches")

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        return in_days or in_weekdays if self.days_or_weekdays else in_days and in_weekdays


def _days_from(first: date) -> Iterator[date]:
    for n in range(366 * _SEARCH_YEARS):
        yield first + timedelta(days=n)


def parse_cron(expr: str) -> Cron:
    """Parse a 5-field cron expression; CronError naming the bad field."""
    if not isinstance(expr, str):
        raise CronError(f"cron must be a string like '0 3 * * *', not {expr!r}")
    parts = expr.split()
    if len(parts) != 5:
        raise CronError(
            f"cron {expr!r} has {len(parts)} fields; expected 5"
            " (minute hour day-of-month month day-of-week)"
        )
    minutes, hours, days, months, weekdays = (
        frozenset(_parse_field(field, text.lower())) for field, text in zip(_FIELDS, parts, strict=True)
    )
    cron = Cron(
        expr=" ".join(parts),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(day % 7 for day in weekdays),
        days_or_weekdays=not parts[2].startswith("*") and not parts[4].startswith("*"),
    )
    cron.next_after(datetime.now().timestamp())  # CronError if it never matches (Feb 30)
    return cron


def _parse_field(field: _Field, text: str) -> set[int]:
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise CronError(f"invalid {field.name} field {text!r}: bad item {item!r}")
        for name in (match.group(2), match.group(4)):
            if name and not name.isdigit() and name not in field.names:
                raise CronError(f"invalid {field.name} field {text!r}: unknown name {name!r}")
        if match.group(5) and int(match.group(5)[1:]) == 0:
            raise CronError(f"invalid {field.name} field {text!r}: a step must be at least 1")
    numbers = re.sub(r"[a-z]+", lambda m: str(field.names.index(m.group()) + field.low), text)
    try:
        return crontab_parser(field.high - field.low + 1, field.low).parse(numbers)
    except (ParseException, ValueError) as e:
        raise CronError(f"invalid {field.name} field {text!r}: {e}") from None
