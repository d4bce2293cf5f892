"""The Python worker's one thread pool per instance, and an invocation bounded by host.json's functionTimeout.

The worker runs every sync function of an instance (HTTP, queue and timer alike) on one ThreadPoolExecutor of
`PYTHON_THREADPOOL_THREAD_COUNT` threads; unset, `max_workers=None`, i.e. Python's `min(32, cpus + 4)` (about 5 on a
2 GB Flex instance); a value that is not an integer of at least 1 is logged and the default used
(azure_functions_runtime/utils/threadpool.py). The local host makes one such pool per host and hands every trigger
`submit` (HTTP requests, queue listeners, timers), so a slow function holds up the others as it will in Azure.
`async def` functions run on the worker's event loop without a thread (this app has none).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any, TypeVar

logger = logging.getLogger("localdev.worker_pool")
_T = TypeVar("_T")

#: The worker's setting for the size of its pool.
THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"

#: What a trigger is handed to run a function on the instance's pool: `submit(callable) -> Future`.
Submit = Callable[[Callable[[], Any]], "Future[Any]"]


def thread_count(env: Mapping[str, str]) -> int:
    """The pool's size as the worker sets it: the setting when it is an integer >= 1, else `min(32, cpus + 4)`."""
    default = min(32, (os.cpu_count() or 1) + 4)
    raw = env.get(THREAD_COUNT_SETTING)
    if raw is None:
        return default
    try:
        count = int(raw)
    except ValueError:
        logger.warning("%s must be an integer", THREAD_COUNT_SETTING)
        return default
    if count < 1:
        logger.warning("%s must be set to a value between 1 and %d. Reverting to default value.",
                       THREAD_COUNT_SETTING, 2**63 - 1)
        return default
    return count


def worker_pool(env: Mapping[str, str]) -> ThreadPoolExecutor:
    """The instance's one pool, sized as the worker sizes it."""
    return ThreadPoolExecutor(thread_count(env), thread_name_prefix="worker")


class FunctionTimeoutError(Exception):
    """An invocation ran past host.json's functionTimeout (or, for HTTP, the platform's cap)."""


def format_timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def invoke_with_timeout(name: str, invocation: Future[_T], timeout: float) -> _T:
    """Wait for one invocation the worker started (`Worker.start`), as the host does, for at most `timeout` seconds
    (time spent waiting for a free thread counts: the host's clock starts when it sends the invocation).

    Past it the host logs the timeout and fails the invocation (the HTTP caller gets 500, a queue message is
    retried); Python cannot stop the thread, which runs on unobserved and keeps its pool thread, like the worker's
    thread does until the host recycles it.
    """
    try:
        return invocation.result(None if timeout == float("inf") else timeout)
    except FutureTimeoutError:
        logger.error("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
                     format_timespan(timeout), name, uuid.uuid4())
        raise FunctionTimeoutError(name) from None
