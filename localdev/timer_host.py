"""Timer triggers as the Functions host runs them (Core Tools can't be installed here).

Follows the timer extension's TimerListener (azure-webjobs-sdk-extensions, Timers/Listener):
- the schedule is NCRONTAB (six fields with seconds, or five without) or a TimeSpan, in UTC
  (localdev.timer_schedule); `%NAME%` in it is the app setting NAME, and a setting that does not exist
  or a schedule that does not parse puts that function alone in error, as the host does (see
  localdev.queue_host.resolve);
- the next occurrence is computed from the invocation time (the time the run started; a scheduled run that
  fired a little early counts from the occurrence it was for), never from when the run ended; when that
  occurrence has already passed as the run ends, the next run starts at once: a one-minute schedule with
  5 s runs fires every minute, and one run longer than the period is followed by one run straight away;
- invocations of one timer function never overlap (the listener waits for a run before it schedules the next);
- `past_due` is true only for the start-up invocation the schedule monitor asks for (the recorded next
  occurrence passed while no host ran); a run that starts late because the last one ran long is not past due;
  without a past-due occurrence, `runOnStartup` runs it once at start;
- host.json's functionTimeout bounds each invocation; an exception is logged, and the schedule goes on;
- the function gets the TimerInfo the host sends (`Schedule`, `ScheduleStatus` when monitored, `IsPastDue`),
  converted and run by the instance's worker (localdev.workers), the same object the HTTP path uses: on 3.13
  azure-functions-runtime, before 3.13 the emulation.

In Azure the host also runs each timer function on one instance at a time (a blob lease); here each
local host runs its own, which the maintenance sweep is written to allow (its writes are conditional).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from localdev.queue_host import UnresolvedSettingError, resolve
from localdev.timer_schedule import Schedule, ScheduleMonitor, ScheduleStatus, parse_schedule, uses_monitor
from localdev.worker_pool import FunctionTimeoutError
from localdev.workers import EmulatedWorker, IndexedFunction, TimerCall, Worker, invoke

logger = logging.getLogger("localdev.timer_host")


@dataclass(frozen=True)
class TimerFunction:
    function: IndexedFunction  # what the worker runs for each tick (localdev.workers)
    schedule: str
    run_on_startup: bool

    @property
    def name(self) -> str:
        return self.function.name


def utc_now() -> datetime:
    return datetime.now(UTC)


class TimerRunner:
    """Runs one timer function on its schedule until `stop()`.

    `clock` gives the time and `wait(seconds)` waits for it, answering whether the runner is stopping (by default
    the wall clock and the stop event); the unit tests pass a clock of their own.
    """

    def __init__(self, function: TimerFunction, schedule: Schedule, *, function_timeout: float = float("inf"),
                 monitor: ScheduleMonitor | None = None, clock: Callable[[], datetime] = utc_now,
                 wait: Callable[[float], bool] | None = None, worker: Worker | None = None) -> None:
        self.function = function
        # The instance's worker, the one the HTTP path uses (localdev.workers); an emulated one of its own by default.
        self._worker: Worker = worker or EmulatedWorker({})
        self.schedule = schedule
        self._function_timeout = function_timeout
        self._clock = clock
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        self._monitor = monitor if monitor is not None and uses_monitor(schedule, clock()) else None
        self._thread = threading.Thread(target=self.run, name=f"timer-{function.name}", daemon=True)
        self.status: ScheduleStatus | None = None
        self.invocations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """The listener: the start-up check, then each occurrence in turn (the thread's body)."""
        now = self._clock()
        past_due = False
        if self._monitor is not None:
            self.status = self._monitor.status(self.function.name)
            past_due = bool(self._monitor.check_past_due(self.function.name, now, self.schedule, self.status))
            self.status = self._monitor.status(self.function.name)
        if self.status is None:
            self.status = ScheduleStatus(next=self.schedule.next_after(now))
        if past_due:
            logger.info("Timer for '%s' is past due (the next occurrence recorded, %s, has passed).",
                        self.function.name, self.status.next.isoformat())
            self._invoke(self._clock(), past_due=True)
        elif self.function.run_on_startup:
            self._invoke(self._clock(), on_startup=True)
        while not self.stopping:
            delay = (self.status.next - self._clock()).total_seconds()
            if delay > 0 and self._wait(delay):
                return
            if self.stopping:
                return
            self._invoke(self._clock())

    def _invoke(self, invocation_time: datetime, *, past_due: bool = False, on_startup: bool = False) -> None:
        """One run, then the status for the next, computed from the invocation time (InvokeJobFunction)."""
        self.invocations += 1
        status = self.status.as_json() if self.status is not None and self._monitor is not None else {}
        try:
            invoke(self._worker, self.function.function, TimerCall(past_due, status), self._function_timeout)
        except FunctionTimeoutError:
            pass
        except Exception:
            logger.exception("Executed 'Functions.%s' (Failed)", self.function.name)
        base = invocation_time
        if not past_due and not on_startup and self.status is not None and self.status.next > invocation_time:
            base = self.status.next  # fired a little early: count from the occurrence it ran for
        self.status = ScheduleStatus(next=self.schedule.next_after(base), last=base, last_updated=base)
        if self._monitor is not None:
            self._monitor.update(self.function.name, self.status)


def start_timers(functions: list[TimerFunction], env: Mapping[str, str], *,
                 function_timeout: float = float("inf"), worker: Worker | None = None,
                 monitor: ScheduleMonitor | None = None) -> list[TimerRunner]:
    """A running TimerRunner per timer function whose schedule resolves and parses; one whose schedule does not is
    reported in error. `worker`: the instance's worker (localdev.workers); `monitor`: the schedule statuses (a new,
    empty one by default, as for a new app)."""
    monitor = monitor if monitor is not None else ScheduleMonitor()
    runners = []
    for function in functions:
        try:
            schedule = parse_schedule(resolve(function.schedule, env))
        except (UnresolvedSettingError, ValueError) as error:
            logger.error("The '%s' function is in error: Microsoft.Azure.WebJobs.Host: Error indexing method "
                         "'Functions.%s'. Microsoft.Azure.WebJobs.Host: %s", function.name, function.name, error)
            continue
        runner = TimerRunner(function, schedule, function_timeout=function_timeout, monitor=monitor, worker=worker)
        runner.start()
        runners.append(runner)
    return runners
