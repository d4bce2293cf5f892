"""The invocation context the host hands a function beside its trigger, as the Python worker passes it.

- A function gets `context` when it declares a parameter of that name; its annotation, resolved as
  `typing.get_type_hints` resolves it, must be a class named `Context` (azure_functions_worker/functions.py,
  `is_context_required`). With the v2 programming model the worker indexes every function in one pass, so one
  that breaks this rule fails the indexing: the app has no function at all (localdev.functions_host).
- The worker calls the function with keyword arguments, the trigger under its parameter's name.
- `context.trace_context` is the host's activity for the invocation (`Traceparent = Activity.Current?.Id` in
  azure-functions-host's WorkerFunctionInvoker, copied to the worker by GetRpcTraceContext), in default and
  OpenTelemetry telemetry modes alike:
  - for an HTTP trigger, ASP.NET Core's request activity: a child of the caller's `traceparent` when it is one
    (same trace, a new span, the caller's flags, its `tracestate` kept), else a new trace;
  - for a queue or timer trigger, a new trace for each invocation (a storage queue message carries no trace).
  A new trace's flags are `00` here: an `Activity` started without a parent and without a sampling listener is not
  marked recorded. The gateway's samplers decide for themselves under a parent from another process
  (shared.telemetry.setup), as the Azure Monitor distro's do, so the flag never hides its spans either way.
- `function_directory` is the folder of the file that defines the function.
"""

from __future__ import annotations

import functools
import inspect
import re
import secrets
import threading
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

_T = TypeVar("_T")
#: The parameter the worker fills with the invocation context.
CONTEXT_PARAMETER = "context"
#: W3C trace context's `traceparent`: lower-case hex; a version other than 00 (and never ff) may carry more
#: fields after a "-", and its first four are read as version 00's.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


class FunctionLoadError(Exception):
    """A function the worker refuses to index."""


def takes_context(name: str, function: Callable[..., Any]) -> bool:
    """Whether the worker passes `function` a `context` (FunctionLoadError when it would not index it)."""
    if CONTEXT_PARAMETER not in inspect.signature(function).parameters:
        return False
    target = function if inspect.isfunction(function) or inspect.ismethod(function) else type(function).__call__
    try:
        annotation = typing.get_type_hints(target).get(CONTEXT_PARAMETER)
    except Exception as error:  # an annotation that does not resolve fails the indexing, as in the worker
        raise FunctionLoadError(f"{name}: {error}") from error
    if annotation is not None and not (isinstance(annotation, type) and annotation.__name__ == "Context"):
        raise FunctionLoadError(f"{name}: the \"context\" parameter is expected to be of type "
                                f"azure.functions.Context, got {annotation!r}")
    return True


@dataclass(frozen=True)
class HostActivity:
    """The host's activity for one invocation, as the worker receives it."""

    traceparent: str
    tracestate: str = ""


def request_activity(traceparent: str | None, tracestate: str | None = None) -> HostActivity:
    """The activity for an HTTP request that came with these `traceparent` and `tracestate` headers: a child of
    the caller's when `traceparent` is a valid W3C one (a version other than ff, ids not all zero), else a new
    trace (the caller's `tracestate` then dropped)."""
    match = _TRACEPARENT.fullmatch((traceparent or "").strip())
    if (match and match[1] != "ff" and (match[1] != "00" or match[5] is None)
            and match[2] != _ZERO_TRACE and match[3] != _ZERO_SPAN):
        return HostActivity(f"00-{match[2]}-{secrets.token_hex(8)}-{match[4]}", (tracestate or "").strip())
    return new_activity()


def new_activity() -> HostActivity:
    """A new trace's activity: not marked recorded (flags 00)."""
    return HostActivity(f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00")


class _TraceContext(TraceContext):
    def __init__(self, activity: HostActivity) -> None:
        self._activity = activity

    @property
    def trace_state(self) -> str:
        return self._activity.tracestate

    @property
    def trace_parent(self) -> str:
        return self._activity.traceparent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    """No retry policy: the worker's zeros."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """One invocation's context, with the fields the worker fills."""

    def __init__(self, function_name: str, function_directory: str, activity: HostActivity) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = _TraceContext(activity)
        self._thread_local_storage = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local_storage

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


@dataclass(frozen=True)
class _Call:
    trigger: str
    takes_context: bool
    directory: str


@functools.cache
def _call_of(name: str, function: Callable[..., Any]) -> _Call:
    """How the worker calls `function`, worked out once (as the worker does when it indexes)."""
    parameters = [p for p in inspect.signature(function).parameters if p != CONTEXT_PARAMETER]
    if len(parameters) != 1:
        raise FunctionLoadError(f"{name}: expected one trigger parameter besides context, got {parameters}")
    defined_in = inspect.getfile(function if inspect.isfunction(function) else type(function))
    return _Call(parameters[0], takes_context(name, function), str(Path(defined_in).parent))


def run(name: str, function: Callable[..., _T], trigger: Any, *, activity: HostActivity | None = None) -> _T:
    """Call `function` as the worker does: by keyword, its trigger under the name of its one other parameter, and
    its context when it takes one (`activity`: the host's for this invocation; a new trace when None)."""
    call = _call_of(name, function)
    arguments: dict[str, Any] = {call.trigger: trigger}
    if call.takes_context:
        arguments[CONTEXT_PARAMETER] = InvocationContext(name, call.directory, activity or new_activity())
    return function(**arguments)
