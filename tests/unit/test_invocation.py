"""The invocation context the local host hands a function, as the Python worker and the Functions host do
(localdev/invocation.py names the sources)."""

from __future__ import annotations

import re
from pathlib import Path

import azure.functions as func
import pytest

import create_alert_fn
import file_alerts_fn
import hunting_fn
import request_queue_fn
import tenants_fn
from localdev.functions_host import discover
from localdev.invocation import (
    FunctionLoadError,
    HostActivity,
    request_activity,
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
        activity = request_activity(f"00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}", "vendor=abc")
        trace, span, kept = parts(activity.traceparent)
        assert (trace, kept) == (CALLER_TRACE, flags) and span != CALLER_SPAN
        assert activity.tracestate == "vendor=abc"
    # A later version is read by its first four fields, whatever follows a "-".
    assert parts(request_activity(f"cc-{CALLER_TRACE}-{CALLER_SPAN}-01-more").traceparent)[0] == CALLER_TRACE


@pytest.mark.parametrize("incoming", [None, "", "not-a-trace", f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",
                                      f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01",
                                      f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-more",
                                      f"00-{'0' * 32}-{CALLER_SPAN}-01", f"00-{CALLER_TRACE}-{'0' * 16}-01",
                                      f"00-{CALLER_TRACE}-{CALLER_SPAN}"])
def test_anything_else_starts_a_new_trace_not_marked_recorded(incoming: str | None) -> None:
    activity = request_activity(incoming, "vendor=abc")
    trace, _, flags = parts(activity.traceparent)
    assert trace != CALLER_TRACE and flags == "00" and activity.tracestate == ""


def test_a_function_is_called_by_keyword_with_its_context_when_it_declares_one() -> None:
    seen: list[func.Context] = []

    def context_first(context: func.Context, request: str) -> str:  # the worker binds by name
        seen.append(context)
        return request

    def without(message: str) -> str:
        return message

    parent = HostActivity(f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "vendor=abc")
    assert run("With", context_first, "r", activity=parent) == "r"
    assert run("With", context_first, "r") == "r"
    assert run("Without", without, "r") == "r"
    first, second = seen
    assert first.function_name == "With" and first.function_directory == str(Path(__file__).parent)
    assert first.trace_context.trace_parent == parent.traceparent and first.trace_context.trace_state == "vendor=abc"
    assert parts(second.trace_context.trace_parent)[0] != CALLER_TRACE
    assert first.invocation_id != second.invocation_id
    assert first.retry_context.retry_count == 0 and first.retry_context.max_retry_count == 0


def test_a_context_annotated_with_another_type_or_nothing_it_resolves_to_does_not_index() -> None:
    def wrong(req: str, context: int) -> None:
        return None

    def unresolvable(req: str, context: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    def unannotated(req, context):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(FunctionLoadError, match='"context" parameter is expected to be of type'):
        takes_context("Wrong", wrong)
    with pytest.raises(FunctionLoadError, match="NoSuchType"):
        takes_context("Unresolvable", unresolvable)
    assert takes_context("Unannotated", unannotated)


def test_every_entry_point_that_calls_defender_takes_its_context() -> None:
    """The gateway's spans continue the host's invocation only if the function asks the worker for it."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for module in (file_alerts_fn, create_alert_fn, hunting_fn, tenants_fn, request_queue_fn):
        app.register_functions(module.bp)
    names = {str(function.get_function_name()): takes_context(str(function.get_function_name()),
                                                              function.get_user_function())
             for function in app.get_functions()}
    assert names == dict.fromkeys(["GetFileRelatedAlerts", "CreateAlertByReference", "GetTenantFileRelatedAlerts",
                                   "CreateTenantAlertByReference", "RunAdvancedQuery", "RunAdvancedHuntingQuery",
                                   "RunHuntingQuery", "RunTenantAdvancedQuery", "RunTenantAdvancedHuntingQuery",
                                   "RunTenantHuntingQuery", "ProcessRequestMessage", "WaitCreateAlert",
                                   "WaitFileAlerts", "WaitFileInfo", "WaitHunting"], True)


def test_a_function_that_does_not_index_leaves_the_app_with_no_function() -> None:
    """v2 indexing is one pass: the worker's metadata request fails, and the host runs with no function."""
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
    with pytest.raises(FunctionLoadError, match="Wrong"):
        discover(app)
