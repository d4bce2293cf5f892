"""The invocation context the host hands a function beside its trigger, as the Python worker passes it.

- A function gets `context` when it declares a parameter of that name; one annotated with anything but a class
  named `Context` does not load (azure_functions_worker/functions.py, `is_context_required`).
- `context.trace_context.trace_parent` is the W3C id of the host's activity for the invocation
  (`Activity.Current.Id`, azure-functions-host ScriptInvocationContextExtensions.GetRpcTraceContext):
  - for an HTTP trigger, ASP.NET Core's request activity: a child of the caller's `traceparent` when it sent a
    valid one (same trace, a new span, the caller's flags), else a new trace;
  - for a queue or timer trigger, a new trace for each invocation (a storage queue message carries no trace).
  A new trace's flags are `00`: an `Activity` started with no parent and no sampling listener is not marked
  recorded. The gateway decides sampling itself under a remote parent (shared.telemetry.setup), as the Azure
  Monitor distro does, so the flag never hides its spans.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Callable
from inspect import Parameter, signature
from pathlib import Path
from typing import Any, TypeVar

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

_T = TypeVar("_T")
ROOT = Path(__file__).resolve().parent.parent
#: The parameter the worker fills with the invocation context.
CONTEXT_PARAMETER = "context"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


class FunctionLoadError(Exception):
    """A function the worker would refuse to load (the host puts it in error and runs the others)."""


def takes_context(name: str, function: Callable[..., Any]) -> bool:
    """Whether the worker passes `function` a `context` (and FunctionLoadError when it would not load it)."""
    parameter = signature(function).parameters.get(CONTEXT_PARAMETER)
    if parameter is None:
        return False
    annotation = parameter.annotation  # a string under `from __future__ import annotations`: the name it gives
    named = annotation.rsplit(".", 1)[-1] if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if annotation is not Parameter.empty and not (isinstance(annotation, (type, str)) and named == "Context"):
        raise FunctionLoadError(f"{name}: the \"context\" parameter is expected to be of type "
                                f"azure.functions.Context, got {annotation!r}")
    return True


def child_traceparent(incoming: str | None) -> str:
    """The host's activity id for a request that came with `incoming` as its `traceparent` header: its child
    when it is a valid W3C traceparent (version 00, ids not all zero), else a new trace."""
    match = _TRACEPARENT.fullmatch((incoming or "").strip().lower())
    if match and match[1] != _ZERO_TRACE and match[2] != _ZERO_SPAN:
        return f"00-{match[1]}-{secrets.token_hex(8)}-{match[3]}"
    return new_traceparent()


def new_traceparent() -> str:
    """A new trace's activity id: not marked recorded (flags 00)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


class _TraceContext(TraceContext):
    def __init__(self, trace_parent: str) -> None:
        self._trace_parent = trace_parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

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

    def __init__(self, function_name: str, trace_parent: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._trace_context = _TraceContext(trace_parent)
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
        return str(ROOT)

    @property
    def trace_context(self) -> TraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


def run(name: str, function: Callable[..., _T], trigger: Any, *, trace_parent: str | None = None) -> _T:
    """Call `function` with its trigger value, and its context when it takes one (`trace_parent`: the invocation's
    activity id; a new trace when None)."""
    if takes_context(name, function):
        context = InvocationContext(name, trace_parent or new_traceparent())
        return function(trigger, **{CONTEXT_PARAMETER: context})
    return function(trigger)
