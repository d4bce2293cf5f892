"""Timer schedules as the Functions host reads them (the timer extension's `TimerSchedule.Create`): one parser for the
app's settings check (MAINTENANCE_SCHEDULE) and the local host's timers (localdev.timer_schedule).

- A schedule is tried as NCRONTAB first, then as a .NET TimeSpan: an expression of exactly five fields is cron
  without seconds (minute hour day month weekday), any other count is parsed with seconds, which NCRONTAB accepts only
  as six fields (`CronSchedule.HasSeconds`). Each field is NCrontab's: `*`, a value, a range `a-b`, either with a
  step `/n`, or a comma-separated list of those; months and weekdays may be named (JAN, MON; case ignored); weekdays
  run 0-6 from Sunday.
- A TimeSpan is `[d.]hh:mm[:ss[.fffffff]]` or a whole number of days (`TimeSpan.TryParse`, invariant culture), and
  must be longer than zero (the host would fire without pause).
- Failing both, the host's words (`UNRECOGNIZED`).

This module only reads a schedule; computing occurrences is the local host's (croniter, a development dependency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

#: How the host words a schedule it cannot parse (TimerSchedule.Create).
UNRECOGNIZED = "The schedule expression was not recognized as a valid cron expression or timespan string."
#: .NET TimeSpan's invariant forms: `[d.]hh:mm[:ss[.fffffff]]`, or a whole number of days.
_TIMESPAN = re.compile(r"\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?\s*", re.ASCII)
_DAYS = re.compile(r"\s*(\d+)\s*", re.ASCII)
#: One item of an NCRONTAB field: `*` or `a` or `a-b`, then an optional `/step`.
_ITEM = re.compile(r"(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/([0-9]+))?", re.ASCII)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS_OF_WEEK = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Field:
    low: int
    high: int
    names: tuple[str, ...] = ()

    def value(self, text: str) -> int | None:
        if text.isdigit():
            number = int(text)
        elif self.names and text[:3].upper() in self.names:
            number = self.names.index(text[:3].upper()) + self.low
        else:
            return None
        return number if self.low <= number <= self.high else None

    def accepts(self, text: str) -> bool:
        for item in text.split(","):
            match = _ITEM.fullmatch(item)
            if not match or (match[2] is not None and int(match[2]) < 1):
                return False
            if match[1] == "*":
                continue
            ends = [self.value(end) for end in match[1].split("-")]
            low, high = ends[0], ends[-1]
            if low is None or high is None or low > high:
                return False
        return True


_SECOND, _MINUTE, _HOUR = _Field(0, 59), _Field(0, 59), _Field(0, 23)
_CRON_FIELDS = (_MINUTE, _HOUR, _Field(1, 31), _Field(1, 12, _MONTHS), _Field(0, 6, _DAYS_OF_WEEK))


@dataclass(frozen=True)
class CronExpression:
    """An NCRONTAB expression: five fields, or six with the seconds first (fields joined by one space)."""

    expression: str


@dataclass(frozen=True)
class TimeSpanInterval:
    """A TimeSpan schedule: every `interval`."""

    interval: timedelta


def parse_schedule(expression: str) -> CronExpression | TimeSpanInterval:
    """What the host makes of a (resolved) schedule expression; ValueError with the host's words when nothing."""
    fields = expression.split()
    shape = (_SECOND, *_CRON_FIELDS) if len(fields) == 6 else _CRON_FIELDS if len(fields) == 5 else ()
    if shape and all(field.accepts(text) for field, text in zip(shape, fields, strict=True)):
        return CronExpression(" ".join(fields))
    interval = _timespan(expression)
    if interval is None:
        raise ValueError(UNRECOGNIZED)
    if interval <= timedelta(0):
        raise ValueError(f"{UNRECOGNIZED} (a TimeSpan schedule must be longer than zero)")
    return TimeSpanInterval(interval)


def _timespan(text: str) -> timedelta | None:
    """.NET `TimeSpan.TryParse` (invariant culture) for the forms a schedule uses; None when it is not one."""
    if days := _DAYS.fullmatch(text):
        return timedelta(days=int(days[1]))
    match = _TIMESPAN.fullmatch(text)
    if not match:
        return None
    hours, minutes, seconds = int(match[2]), int(match[3]), int(match[4] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    fraction = float(f"0.{match[5]}") if match[5] else 0.0
    return timedelta(days=int(match[1] or 0), hours=hours, minutes=minutes, seconds=seconds + fraction)
