"""The worker's side of the local host: indexing the app, converting bindings in and out, the thread pool.

The host (localdev.functions_host) keeps the host's side: routes, keys, listeners, timers, authentication. What the
Python worker does in Azure sits behind `Worker`, in one of two forms:

- `library`: on Python 3.13 and later, `azure-functions-runtime`, the library Azure's worker runs every function
  through (localdev.library_worker): its indexing, its binding conversion, its thread pool;
- `emulation`: on 3.11 and 3.12, where that library does not install, this module's imitation of the worker.

tests/unit/test_worker_contract.py runs one suite against each form this interpreter has, so a difference between
the imitation and Azure's code is a failing test. LOCAL_WORKER=emulation chooses the imitation on 3.13 too.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import azure.functions as func
from azure.functions.http import HttpResponseConverter
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from localdev.invocation import HostActivity, _call_of, new_activity, run, takes_context
from localdev.worker_pool import Submit, invoke_with_timeout, worker_pool

logger = logging.getLogger("localdev.workers")

#: The app's script, as the worker finds it (PYTHON_SCRIPT_FILE_NAME's default).
SCRIPT_FILE = "function_app.py"
#: The local-host-only setting that chooses the worker's form ("library" or "emulation"; unset: the library when
#: this Python has it).
WORKER_SETTING = "LOCAL_WORKER"


class IndexingError(Exception):
    """The worker's indexing failed as a whole (v2 indexing is one pass): the host runs with no function."""


@dataclass(frozen=True)
class IndexedFunction:
    """One function as the worker reports it to the host: its name and its bindings (JSON, as the host reads
    them), and the user's function (what the emulation calls)."""

    name: str
    bindings: tuple[Mapping[str, Any], ...]
    handler: Callable[..., Any]

    @property
    def trigger(self) -> Mapping[str, Any]:
        return next((b for b in self.bindings if str(b.get("type", "")).endswith("Trigger")), {})


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request as the host hands it to the worker (headers and query already joined)."""

    method: str
    url: str
    headers: Mapping[str, str]
    params: Mapping[str, str]
    route_params: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class QueueCall:
    """A queue message as the queue extension hands it to the worker: its body and trigger metadata."""

    id: str
    body: bytes
    dequeue_count: int
    pop_receipt: str
    insertion_time: datetime | None = None
    expiration_time: datetime | None = None
    next_visible_time: datetime | None = None


@dataclass(frozen=True)
class TimerCall:
    """A timer's invocation as the timer extension hands it to the worker."""

    past_due: bool
    schedule_status: Mapping[str, Any] = field(default_factory=dict)


Trigger = HttpCall | QueueCall | TimerCall


class Worker(Protocol):
    """What the host asks of the worker."""

    @property
    def name(self) -> str:
        """Which form runs the app (named in the host's log)."""

    @property
    def submit(self) -> Submit:
        """The instance's one thread pool (every sync function runs on it)."""

    def index(self, app_directory: Path) -> list[IndexedFunction]:
        """Import the app's script and report its functions (IndexingError: none, the reason in the message)."""

    def start(self, function: IndexedFunction, trigger: Trigger, activity: HostActivity) -> Future[Any]:
        """Run `function` for `trigger`: an HttpAnswer for an HTTP function, else None."""


def invoke(worker: Worker, function: IndexedFunction, trigger: QueueCall | TimerCall, timeout: float) -> None:
    """One queue or timer invocation as the host runs it: handed to `worker` (the same object the HTTP path uses, so
    on 3.13 the library converts and runs it, before 3.13 the emulation), in a new trace (a message or a tick carries
    none), waited for at most `timeout` (host.json's functionTimeout: FunctionTimeoutError), and logged as the host
    logs it, naming the worker that ran it. The function's own exception is raised as it is."""
    invoke_with_timeout(function.name, worker.start(function, trigger, new_activity()), timeout)
    logger.info("Executed 'Functions.%s' (Succeeded, %s trigger, worker: %s)", function.name,
                "queue" if isinstance(trigger, QueueCall) else "timer", worker.name)


def find_app(module: Any) -> func.FunctionRegister:
    """The one FunctionApp at the top of the app's script, with the worker's errors (loader.index_function_app)."""
    found: func.FunctionRegister | None = None
    for name in dir(module):
        if isinstance(getattr(module, name, None), func.FunctionRegister):
            if found is not None:
                raise ValueError(f"More than one {type(found).__name__} or other top level function app instances "
                                 "are defined.")
            found = getattr(module, name)
    if found is None:
        raise ValueError(f"Could not find top level function app instances in {SCRIPT_FILE}.")
    return found


def app_on_path(app_directory: Path) -> None:
    """The app's directory first on sys.path, as the worker has it."""
    if str(app_directory) not in sys.path:
        sys.path.insert(0, str(app_directory))


def import_app(app_directory: Path) -> Any:
    """Import the app's script from `app_directory` as the worker does."""
    app_on_path(app_directory)
    return importlib.import_module(Path(SCRIPT_FILE).stem)


class EmulatedWorker:
    """The worker imitated (Python 3.11 and 3.12): azure.functions' own converters, the worker's rules for `context`
    and parameters (localdev.invocation), and one pool of PYTHON_THREADPOOL_THREAD_COUNT threads."""

    name = "emulation"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._pool = worker_pool(env)

    @property
    def submit(self) -> Submit:
        return self._pool.submit

    def index(self, app_directory: Path) -> list[IndexedFunction]:
        try:
            return self.index_app(find_app(import_app(app_directory)))
        except Exception as error:
            raise IndexingError(f"{type(error).__name__}: {error}") from error

    @staticmethod
    def index_app(app: func.FunctionRegister) -> list[IndexedFunction]:
        """The functions of `app` (FunctionLoadError: one the worker would not index; `get_functions()` runs once
        per app object)."""
        indexed = []
        for function in app.get_functions():
            name = function.get_function_name() or "function"
            takes_context(name, function.get_user_function())
            _call_of(name, function.get_user_function())
            indexed.append(IndexedFunction(name, tuple(json.loads(b) for b in function.get_raw_bindings()),
                                           function.get_user_function()))
        return indexed

    def start(self, function: IndexedFunction, trigger: Trigger, activity: HostActivity) -> Future[Any]:
        return self._pool.submit(lambda: self._call(function, trigger, activity))

    @staticmethod
    def _call(function: IndexedFunction, trigger: Trigger, activity: HostActivity) -> Any:
        if isinstance(trigger, HttpCall):
            request = func.HttpRequest(method=trigger.method, url=trigger.url, headers=dict(trigger.headers),
                                       params=dict(trigger.params), route_params=dict(trigger.route_params),
                                       body=trigger.body)
            return http_answer(run(function.name, function.handler, request, activity=activity))
        if isinstance(trigger, QueueCall):
            return run(function.name, function.handler, queue_message(trigger), activity=activity)
        return run(function.name, function.handler, timer_request(trigger), activity=activity)


def queue_message(call: QueueCall) -> QueueMessage:
    """The QueueMessage the worker makes of a queue message and its trigger metadata."""
    return QueueMessage(id=call.id, body=call.body, pop_receipt=call.pop_receipt,  # type: ignore[no-untyped-call]
                        dequeue_count=call.dequeue_count, insertion_time=call.insertion_time,
                        expiration_time=call.expiration_time, time_next_visible=call.next_visible_time)


def timer_request(call: TimerCall) -> TimerRequest:
    """The TimerRequest the worker makes of the TimerInfo the host sends."""
    return TimerRequest(past_due=call.past_due, schedule_status=dict(call.schedule_status) or {},
                        schedule={"AdjustForDST": True})


def http_answer(result: Any) -> HttpAnswer:
    """A function's return value as the host sends it: through azure.functions' HTTP converter."""
    datum = HttpResponseConverter.encode(result, expected_type=None).value
    body = datum["body"].value
    return HttpAnswer(int(datum["status_code"].value), [(n, str(h.value)) for n, h in datum["headers"].items()],
                      body if isinstance(body, bytes) else str(body or "").encode())


def library_available() -> bool:
    try:
        importlib.import_module("azure_functions_runtime")
    except ImportError:
        return False
    return True


def choose_worker(env: Mapping[str, str]) -> Worker:
    """The library on Python 3.13 and later (as in Azure), else the emulation; LOCAL_WORKER=emulation forces it."""
    wanted = (env.get(WORKER_SETTING) or "").strip().lower()
    if wanted != "emulation" and (wanted == "library" or library_available()):
        from localdev.library_worker import LibraryWorker  # imports azure_functions_runtime: 3.13 and later

        return LibraryWorker()
    return EmulatedWorker(env)
