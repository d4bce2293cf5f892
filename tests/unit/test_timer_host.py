"""The local host's timer trigger against the timer extension's TimerListener (localdev/timer_host.py names the
rules), on a clock of the test's own: each run moves it on by as long as the run "takes", and the runner's waits
move it to when it would wake. Nothing here sleeps or measures time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest

from localdev.timer_host import TimerFunction, TimerRunner, start_timers
from localdev.timer_schedule import (
    ConstantSchedule,
    CronSchedule,
    ScheduleMonitor,
    ScheduleStatus,
    parse_schedule,
)
from localdev.workers import IndexedFunction
from shared.asynchronous.schedule import UNRECOGNIZED

START = datetime(2026, 12, 6, 11, 59, 58, tzinfo=UTC)  # two seconds before a minute begins
NOON = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
EVERY_MINUTE = "0 */1 * * * *"


class VirtualClock:
    """The runner's clock and its wait: waiting moves the clock on; the test stops the runner after `runs` runs."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.stopped = False

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += timedelta(seconds=seconds)
        return self.stopped

    def pass_(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Job:
    """A timer function whose runs take `takes` seconds of the virtual clock each (the last figure for the runs
    past the list); records when each started, and stops the runner after `runs` runs."""

    def __init__(self, clock: VirtualClock, runs: int, takes: list[float]) -> None:
        self.clock, self.runs, self.takes = clock, runs, takes
        self.started: list[datetime] = []
        self.requests: list[TimerRequest] = []
        self.stop: Callable[[], None] = lambda: None

    def __call__(self, timer: TimerRequest) -> None:
        self.started.append(self.clock())
        self.requests.append(timer)
        self.clock.pass_(self.takes[min(len(self.started), len(self.takes)) - 1])
        if len(self.started) >= self.runs:
            self.clock.stopped = True
            self.stop()


def run_timer(schedule: str, *, runs: int, takes: float | list[float], start: datetime = START,
              on_startup: bool = False, monitor: ScheduleMonitor | None = None) -> Job:
    clock = VirtualClock(start)
    job = Job(clock, runs, takes if isinstance(takes, list) else [takes])
    runner = TimerRunner(TimerFunction(IndexedFunction("Sweep", (), job), schedule, on_startup),
                         parse_schedule(schedule), monitor=monitor, clock=clock, wait=clock.wait)
    job.stop = runner.stop
    runner.run()  # on this thread: returns once the job has stopped the clock
    return job


def minutes(*offsets: float) -> list[datetime]:
    return [NOON + timedelta(minutes=offset) for offset in offsets]


def test_runs_longer_than_a_second_skip_no_occurrence() -> None:
    job = run_timer(EVERY_MINUTE, runs=4, takes=5)
    assert job.started == minutes(0, 1, 2, 3)  # the next occurrence counts from the start of a run, not its end


def test_a_run_longer_than_the_period_is_followed_by_one_run_at_once_and_neither_is_past_due() -> None:
    job = run_timer(EVERY_MINUTE, runs=4, takes=[70, 5])
    assert job.started == [NOON, NOON + timedelta(seconds=70), *minutes(2, 3)]
    assert [request.past_due for request in job.requests] == [False, False, False, False]


def test_five_field_cron_and_timespan_schedules_are_accepted_as_the_host_accepts_them() -> None:
    assert parse_schedule("*/5 * * * *") == CronSchedule("*/5 * * * *")
    assert parse_schedule("0 */5 * * * *") == CronSchedule("0 */5 * * * *")
    assert parse_schedule("00:05:00") == ConstantSchedule(timedelta(minutes=5))
    assert parse_schedule("1.02:03:04.5") == ConstantSchedule(timedelta(days=1, hours=2, minutes=3, seconds=4.5))
    assert parse_schedule("01:30") == ConstantSchedule(timedelta(hours=1, minutes=30))
    assert parse_schedule("2") == ConstantSchedule(timedelta(days=2))  # a whole number is days, as in .NET
    assert run_timer("*/5 * * * *", runs=2, takes=5).started == minutes(0, 5)
    assert run_timer("00:05:00", runs=3, takes=5).started == [START + timedelta(minutes=5 * n) for n in (1, 2, 3)]


@pytest.mark.parametrize("expression", ["0 0 * * * * *", "61 * * * * *", "every minute", "24:00:00", "00:60",
                                        "00:00:00", ""])
def test_what_is_neither_cron_nor_a_timespan_is_refused_with_the_hosts_words(expression: str) -> None:
    with pytest.raises(ValueError, match=UNRECOGNIZED.split(" was")[0]):
        parse_schedule(expression)


def test_a_schedule_that_does_not_parse_puts_that_function_alone_in_error(caplog: pytest.LogCaptureFixture) -> None:
    runners = start_timers([TimerFunction(IndexedFunction("Bad", (), lambda timer: None), "%BAD%", False),
                            TimerFunction(IndexedFunction("Good", (), lambda timer: None), "%GOOD%", False)],
                           {"BAD": "every minute", "GOOD": "*/5 * * * *"})
    try:
        assert [runner.function.name for runner in runners] == ["Good"]
    finally:
        for runner in runners:
            runner.stop()
    assert any("'Bad' function is in error" in record.getMessage() and UNRECOGNIZED in record.getMessage()
               for record in caplog.records)


def test_past_due_comes_only_from_the_monitors_check_at_start_up() -> None:
    monitor = ScheduleMonitor()
    last = NOON - timedelta(minutes=10)  # the last host ran it ten minutes ago, then stopped
    monitor.update("Sweep", ScheduleStatus(next=last + timedelta(minutes=1), last=last, last_updated=last))
    job = run_timer(EVERY_MINUTE, runs=3, takes=5, start=NOON + timedelta(seconds=20), monitor=monitor)
    assert [request.past_due for request in job.requests] == [True, False, False]
    assert job.started == [NOON + timedelta(seconds=20), *minutes(1, 2)]
    assert job.requests[0].schedule_status == {"Last": last.isoformat(), "LastUpdated": last.isoformat(),
                                               "Next": (last + timedelta(minutes=1)).isoformat()}
    status = monitor.status("Sweep")
    assert status is not None and status.last == minutes(2)[0] and status.next == minutes(3)[0]


def test_a_new_timer_is_not_past_due_and_run_on_startup_runs_it_once_at_start() -> None:
    monitor = ScheduleMonitor()
    job = run_timer(EVERY_MINUTE, runs=3, takes=5, start=NOON + timedelta(seconds=20), on_startup=True,
                    monitor=monitor)
    assert job.started == [NOON + timedelta(seconds=20), *minutes(1, 2)]
    assert [request.past_due for request in job.requests] == [False, False, False]
    assert job.requests[0].schedule_status == {"Last": "0001-01-01T00:00:00", "Next": minutes(1)[0].isoformat(),
                                               "LastUpdated": (NOON + timedelta(seconds=20)).isoformat()}


def test_a_schedule_firing_more_than_once_a_minute_is_not_monitored() -> None:
    monitor = ScheduleMonitor()
    job = run_timer("*/10 * * * * *", runs=2, takes=1, monitor=monitor)
    assert job.started == [NOON, NOON + timedelta(seconds=10)]
    assert monitor.status("Sweep") is None and job.requests[0].schedule_status == {}
