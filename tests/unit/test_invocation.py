"""The invocation context the local host hands a function, as the Python worker and the Functions host do
(localdev/invocation.py names the sources)."""

from __future__ import annotations

import re

import azure.functions as func
import pytest

import create_alert_fn
import file_alerts_fn
import request_queue_fn
import tenants_fn
from localdev.functions_host import discover
from localdev.invocation import (
    FunctionLoadError,
    InvocationContext,
    child_traceparent,
    new_traceparent,
    run,
    takes_context,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
W3C = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def parts(traceparent: str) -> tuple[str, str, str]:
    match = W3C.fullmatch(traceparent)
    assert match, traceparent
    return match[1], match[2], match[3]


def test_a_request_with_a_traceparent_runs_in_a_child_of_it() -> None:
    for flags in ("01", "00"):
        trace, span, kept = parts(child_traceparent(f"00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}"))
        assert (trace, kept) == (CALLER_TRACE, flags) and span != CALLER_SPAN
    # Header values are read as the W3C text says: case-insensitive hex, surrounding spaces ignored.
    assert parts(child_traceparent(f" 00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01 "))[0] == CALLER_TRACE


@pytest.mark.parametrize("incoming", [None, "", "not-a-trace", f"01-{CALLER_TRACE}-{CALLER_SPAN}-01",
                                      f"00-{'0' * 32}-{CALLER_SPAN}-01", f"00-{CALLER_TRACE}-{'0' * 16}-01",
                                      f"00-{CALLER_TRACE}-{CALLER_SPAN}"])
def test_anything_else_starts_a_new_trace_not_marked_recorded(incoming: str | None) -> None:
    trace, _, flags = parts(child_traceparent(incoming))
    assert trace != CALLER_TRACE and flags == "00"
    assert parts(new_traceparent())[0] != trace  # each a trace of its own


def test_a_function_gets_its_context_only_when_it_declares_one() -> None:
    seen: list[func.Context] = []

    def with_context(req: str, context: func.Context) -> str:
        seen.append(context)
        return req

    def without(req: str) -> str:
        return req

    parent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    assert run("With", with_context, "r", trace_parent=parent) == "r"
    assert run("With", with_context, "r") == "r"
    assert run("Without", without, "r") == "r"
    first, second = seen
    assert isinstance(first, func.Context) and first.function_name == "With"
    assert first.trace_context.trace_parent == parent and first.trace_context.trace_state == ""
    assert parts(second.trace_context.trace_parent)[0] != CALLER_TRACE
    assert first.invocation_id != second.invocation_id
    assert first.retry_context.retry_count == 0 and first.retry_context.max_retry_count == 0


def test_a_context_annotated_with_another_type_does_not_load() -> None:
    def wrong(req: str, context: int) -> None:
        return None

    def unannotated(req, context):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(FunctionLoadError, match='"context" parameter is expected to be of type'):
        takes_context("Wrong", wrong)
    assert takes_context("Unannotated", unannotated)
    assert isinstance(InvocationContext("F", new_traceparent()), func.Context)


def test_every_entry_point_that_calls_defender_takes_its_context() -> None:
    """The gateway's spans continue the host's invocation only if the function asks the worker for it."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for module in (file_alerts_fn, create_alert_fn, tenants_fn, request_queue_fn):
        app.register_functions(module.bp)
    names = {str(function.get_function_name()): takes_context(str(function.get_function_name()),
                                                              function.get_user_function())
             for function in app.get_functions()}
    assert names == dict.fromkeys(["GetFileRelatedAlerts", "CreateAlertByReference", "GetTenantFileRelatedAlerts",
                                   "CreateTenantAlertByReference", "ProcessRequestMessage", "WaitCreateAlert",
                                   "WaitFileAlerts", "WaitFileInfo"], True)


def test_the_host_serves_the_others_when_one_function_does_not_load(caplog: pytest.LogCaptureFixture) -> None:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("Wrong")
    @bp.route(route="wrong")
    def wrong(req: func.HttpRequest, context: str) -> func.HttpResponse:
        return func.HttpResponse("never")

    @bp.function_name("Right")
    @bp.route(route="right")
    def right(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return func.HttpResponse(context.function_name)

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    (served,) = discover(app).routes
    assert served.name == "Right"
    assert any("Worker failed to load function" in r.getMessage() and "Wrong" in r.getMessage()
               for r in caplog.records)
