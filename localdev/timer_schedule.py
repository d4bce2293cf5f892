"""Timer schedules and the schedule monitor, as the timer extension (azure-webjobs-sdk-extensions, Timers/) has them.

- A schedule is tried as NCRONTAB first, then as a .NET TimeSpan (`TimerSchedule.Create`): an expression of exactly
  five fields is cron without seconds (minute hour day month weekday), any other count is parsed with seconds, which
  NCRONTAB accepts only as six fields (`CronSchedule.HasSeconds`); failing both, the function is in error with the
  host's words. A TimeSpan (`[d.]hh:mm[:ss[.fffffff]]`, or a whole number of days) is a constant schedule: the next
  occurrence is the base time plus the interval (`ConstantSchedule`).
- The next occurrence is always computed from a base time: the listener passes the invocation time (see
  localdev.timer_host), never the time the run ended.
- The schedule monitor keeps, per timer, the last occurrence and the next one (`ScheduleStatus`), and at start-up
  says whether the recorded next occurrence has passed (`ScheduleMonitor.CheckPastDueAsync`): that check alone makes
  an invocation past due. A schedule firing more than once a minute is not monitored (`UseMonitor` set false).
  Azure keeps the statuses in the storage account; the local host keeps them in memory, so a freshly started local
  host, like a new timer in Azure, has no status and is never past due.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

#: How the host words a schedule it cannot parse (TimerSchedule.Create).
UNRECOGNIZED = "The schedule expression was not recognized as a valid cron expression or timespan string."
#: .NET TimeSpan's invariant forms: `[d.]hh:mm[:ss[.fffffff]]`, or a whole number of days.
_TIMESPAN = re.compile(r"\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?\s*")
_DAYS = re.compile(r"\s*(\d+)\s*")


@dataclass(frozen=True)
class CronSchedule:
    """An NCRONTAB expression: five fields, or six with the seconds first."""

    expression: str

    @property
    def with_seconds(self) -> bool:
        return len(self.expression.split()) != 5

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (NCrontab's GetNextOccurrence)."""
        found: datetime = croniter(self.expression, moment, second_at_beginning=self.with_seconds).get_next(datetime)
        return found

    def __str__(self) -> str:
        return f"Cron: '{self.expression}'"


@dataclass(frozen=True)
class ConstantSchedule:
    """A TimeSpan: every `interval` after the base time."""

    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def __str__(self) -> str:
        return f"Constant: {self.interval}"


Schedule = CronSchedule | ConstantSchedule


def parse_schedule(expression: str) -> Schedule:
    """The schedule the host makes of a (resolved) expression; ValueError with the host's words when none."""
    fields = expression.split()
    if len(fields) in (5, 6) and croniter.is_valid(" ".join(fields), second_at_beginning=len(fields) == 6):
        return CronSchedule(" ".join(fields))
    interval = _timespan(expression)
    if interval is None:
        raise ValueError(UNRECOGNIZED)
    if interval <= timedelta(0):  # the host would fire without pause; the local host refuses it instead
        raise ValueError(f"{UNRECOGNIZED} (a TimeSpan schedule must be longer than zero)")
    return ConstantSchedule(interval)


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


def uses_monitor(schedule: Schedule, now: datetime) -> bool:
    """Whether the host monitors this schedule: not when it fires more than once a minute (TimerSchedule.Create)."""
    if isinstance(schedule, ConstantSchedule):
        return schedule.interval >= timedelta(minutes=1)
    first = schedule.next_after(now)
    return schedule.next_after(first) > now + timedelta(minutes=1)


@dataclass(frozen=True)
class ScheduleStatus:
    """What the monitor records of a timer: its last occurrence, the next one, and when `next` was computed from
    (None where the host writes DateTime's default)."""

    next: datetime
    last: datetime | None = None
    last_updated: datetime | None = None

    def as_json(self) -> dict[str, str]:
        """As the host serializes it into the TimerInfo the worker gets (`ScheduleStatus`)."""
        return {"Last": _iso(self.last), "Next": _iso(self.next), "LastUpdated": _iso(self.last_updated)}


#: How the host writes a status time it does not have (DateTime's default, serialized).
DEFAULT_DATE_TIME = "0001-01-01T00:00:00"


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else DEFAULT_DATE_TIME


class ScheduleMonitor:
    """The statuses of the timers of one app, and the start-up check that alone makes an invocation past due."""

    def __init__(self) -> None:
        self._statuses: dict[str, ScheduleStatus] = {}
        self._lock = threading.Lock()

    def status(self, timer: str) -> ScheduleStatus | None:
        with self._lock:
            return self._statuses.get(timer)

    def update(self, timer: str, status: ScheduleStatus) -> None:
        with self._lock:
            self._statuses[timer] = status

    def check_past_due(self, timer: str, now: datetime, schedule: Schedule,
                       last: ScheduleStatus | None) -> timedelta:
        """How long ago the recorded next occurrence passed (zero when it has not); records a status for a timer
        that has none, and recomputes one whose schedule changed since it was recorded (CheckPastDueAsync)."""
        if last is None:
            last = ScheduleStatus(next=schedule.next_after(now), last_updated=now)
            self.update(timer, last)
        else:
            base = last.last or last.last_updated or now
            expected = schedule.next_after(base)
            if last.next != expected:  # the schedule changed: not past due for an occurrence it no longer has
                if now > expected:
                    expected, base = schedule.next_after(now), now
                last = ScheduleStatus(next=expected, last_updated=base)
                self.update(timer, last)
        return now - last.next if now > last.next else timedelta(0)
