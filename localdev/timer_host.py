"""Timer triggers as the Functions host runs them (Core Tools can't be installed here).

- the schedule is a six-field NCRONTAB expression (second minute hour day month weekday), in UTC;
  `%NAME%` in it is the app setting NAME, and a setting that does not exist puts that function alone
  in error, as the host does (see localdev.queue_host.resolve);
- invocations of one timer function never overlap: one that is due while the last still runs waits
  for it (and is then past due); `runOnStartup` runs it once at start;
- host.json's functionTimeout bounds each invocation; an exception is logged, and the schedule goes on.

In Azure the host also runs each timer function on one instance at a time (a blob lease); here each
local host runs its own, which the maintenance sweep is written to allow (its writes are conditional).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.functions.timer import TimerRequest
from croniter import croniter

from localdev.invocation import run
from localdev.queue_host import UnresolvedSettingError, resolve
from localdev.worker_pool import FunctionTimeoutError, Submit, invoke_with_timeout, worker_pool

logger = logging.getLogger("localdev.timer_host")


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: str
    run_on_startup: bool
    handler: Callable[..., None]  # called as the worker calls it (localdev.invocation.run)


class TimerRunner:
    """Runs one timer function on its schedule until `stop()`."""

    def __init__(self, function: TimerFunction, schedule: str, *, function_timeout: float = float("inf"),
                 submit: Submit | None = None) -> None:
        self.function = function
        self._submit = submit or worker_pool({}).submit  # the instance's pool (localdev.worker_pool)
        self.schedule = schedule
        self._function_timeout = function_timeout
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer-{function.name}", daemon=True)
        self.invocations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        if self.function.run_on_startup:
            self._invoke(past_due=False)
        schedule = croniter(self.schedule, datetime.now(UTC), second_at_beginning=True)
        while not self._stopping.is_set():
            due = schedule.get_next(float)
            if self._stopping.wait(max(0.0, due - time.time())):
                return
            self._invoke(past_due=time.time() - due > 1.0)
            while schedule.get_current(float) < time.time() - 1.0:  # occurrences missed while it ran: one run
                schedule.get_next(float)

    def _invoke(self, *, past_due: bool) -> None:
        self.invocations += 1
        request = TimerRequest(past_due=past_due)  # what the worker hands a timer function
        try:
            invoke_with_timeout(self.function.name, lambda: run(self.function.name, self.function.handler, request),
                                self._function_timeout, self._submit)
        except FunctionTimeoutError:
            pass
        except Exception:
            logger.exception("Executed 'Functions.%s' (Failed)", self.function.name)


def start_timers(functions: list[TimerFunction], env: Mapping[str, str], *,
                 function_timeout: float = float("inf"), submit: Submit | None = None) -> list[TimerRunner]:
    """A running TimerRunner per timer function whose schedule resolves; one that does not is reported in error."""
    runners = []
    for function in functions:
        try:
            schedule = resolve(function.schedule, env)
            if not croniter.is_valid(schedule, second_at_beginning=True) or len(schedule.split()) != 6:
                raise ValueError(f"'{schedule}' is not a valid CRON expression.")
        except (UnresolvedSettingError, ValueError) as error:
            logger.error("The '%s' function is in error: Microsoft.Azure.WebJobs.Host: Error indexing method "
                         "'Functions.%s'. Microsoft.Azure.WebJobs.Host: %s", function.name, function.name, error)
            continue
        runner = TimerRunner(function, schedule, function_timeout=function_timeout, submit=submit)
        runner.start()
        runners.append(runner)
    return runners
