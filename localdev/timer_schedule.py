"""Timer schedules and the schedule monitor, as the timer extension (azure-webjobs-sdk-extensions, Timers/) has them.

- A schedule is read as the host reads it, NCRONTAB (five or six fields) or a TimeSpan, by the app's own parser
  (shared.asynchronous.schedule, which the app's settings check uses too); failing both, the function is in error
  with the host's words. A TimeSpan is a constant schedule: the next occurrence is the base time plus the interval
  (`ConstantSchedule`).
- The next occurrence is always computed from a base time: the listener passes the invocation time (see
  localdev.timer_host), never the time the run ended.
- The schedule monitor keeps, per timer, the last occurrence and the next one (`ScheduleStatus`), and at start-up
  says whether the recorded next occurrence has passed (`ScheduleMonitor.CheckPastDueAsync`): that check alone makes
  an invocation past due. A schedule firing more than once a minute is not monitored (`UseMonitor` set false).
  Azure keeps the statuses in the storage account; the local host keeps them in memory, so a freshly started local
  host, like a new timer in Azure, has no status and is never past due.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from shared.asynchronous import schedule as schedules
from shared.asynchronous.schedule import CronExpression, TimeSpanInterval


@dataclass(frozen=True)
class CronSchedule(CronExpression):
    """An NCRONTAB expression: five fields, or six with the seconds first."""

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
class ConstantSchedule(TimeSpanInterval):
    """A TimeSpan: every `interval` after the base time."""

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def __str__(self) -> str:
        return f"Constant: {self.interval}"


Schedule = CronSchedule | ConstantSchedule


def parse_schedule(expression: str) -> Schedule:
    """The schedule the host makes of a (resolved) expression; ValueError with the host's words when none."""
    parsed = schedules.parse_schedule(expression)
    if isinstance(parsed, CronExpression):
        return CronSchedule(parsed.expression)
    return ConstantSchedule(parsed.interval)


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
