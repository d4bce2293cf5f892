"""The local host behaves like Azure's where a test could tell them apart (azure-functions-host, the Python worker
and library, the queue extension; see localdev/functions_host.py and localdev/queue_host.py for the sources' rules).

The HTTP rules run against localdev's own server with echo functions, so each rule is seen directly; the queue
rules run the real listener against Azurite; the app-level ones run function_app in a local host.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from localdev.azurite import Azurite
from localdev.functions_host import (
    DEFAULT_LOCAL_KEY,
    FunctionsHost,
    RawHeadersHandler,
    Route,
    _route_regex,
    function_timeout,
)
from localdev.queue_host import DEFAULT_LEASE_SECONDS, QueueFunction, QueueListener, QueueOptions, start_listeners
from localdev.servers import RunningServer, quiet_server
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.worker_pool import THREAD_COUNT_SETTING
from localdev.workers import EmulatedWorker, IndexedFunction
from tests.support.servers import FUNCTION_KEY, HostFactory, IdentityAdmin, SimulatorAdmin

ROOT = Path(__file__).resolve().parents[2]
KEY = "echo-key"


def echo(req: func.HttpRequest) -> func.HttpResponse:
    """Everything the function was handed, as JSON."""
    document = {"headers": dict(req.headers.items()), "params": dict(req.params), "body": req.get_body().decode(),
                "url": req.url}
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


def text(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("plain")


def slow(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(3)
    return func.HttpResponse("too late")


def invocation(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The invocation context the function was handed, as JSON."""
    document = {"traceparent": context.trace_context.trace_parent, "tracestate": context.trace_context.trace_state,
                "invocation_id": context.invocation_id, "function_name": context.function_name}
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


def route(name: str, template: str, handler: Callable[..., func.HttpResponse],
          methods: tuple[str, ...] = ("GET", "POST")) -> Route:
    return Route(name, _route_regex(template), frozenset(methods), "function", IndexedFunction(name, (), handler))


@pytest.fixture(scope="module")
def echo_host() -> Iterator[RunningServer]:
    host = FunctionsHost([route("Echo", "echo", echo), route("Text", "text", text, ("GET",)),
                          route("Slow", "slow", slow, ("GET",)), route("Invocation", "invocation", invocation)],
                         KEY, "master-" + uuid.uuid4().hex,
                         function_timeout=1.0)
    server = quiet_server(host, request_handler=RawHeadersHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    running = RunningServer(server, thread)
    yield running
    running.stop()


def raw_request(server: RunningServer, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes | None = None, *, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One request with headers exactly as listed (repeats and all)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if chunked and body is not None:
            connection.send(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        elif body is not None:
            connection.send(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def echoed(server: RunningServer, path: str = "/api/echo", headers: list[tuple[str, str]] | None = None,
           **kwargs: Any) -> dict[str, Any]:
    status, _, body = raw_request(server, kwargs.pop("method", "GET"), path,
                                  [("x-functions-key", KEY), *(headers or [])], **kwargs)
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    return document


# --- HTTP -------------------------------------------------------------------------------------------------------------

CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
W3C = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def test_a_function_that_takes_a_context_runs_in_a_child_of_the_callers_trace(echo_host: RunningServer) -> None:
    followed = echoed(echo_host, "/api/invocation", [("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
                                                     ("tracestate", "vendor=abc")])
    match = W3C.fullmatch(followed["traceparent"])
    assert match and (match[1], match[3]) == (CALLER_TRACE, "01") and match[2] != CALLER_SPAN
    assert followed["tracestate"] == "vendor=abc" and followed["function_name"] == "Invocation"
    fresh = [echoed(echo_host, "/api/invocation") for _ in range(2)]
    traces = {W3C.fullmatch(found["traceparent"]) for found in fresh}
    assert all(m and m[1] != CALLER_TRACE and m[3] == "00" for m in traces)  # a new trace, not marked recorded
    assert len({found["invocation_id"] for found in fresh}) == 2
    assert set(echoed(echo_host)["headers"]) >= {"x-functions-key"}  # a function without one runs as before


def test_a_method_the_route_does_not_take_is_404(echo_host: RunningServer) -> None:
    for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):
        status, headers, _ = raw_request(echo_host, method, "/api/text", [("x-functions-key", KEY)])
        assert status == 404 and "allow" not in headers, method


def test_repeated_headers_reach_the_function_once_joined_with_a_comma(echo_host: RunningServer) -> None:
    got = echoed(echo_host, headers=[("X-Twice", "first"), ("X-Twice", "second"), ("X-Empty", "")])["headers"]
    assert got["x-twice"] == "first,second"
    assert got["x-empty"] == ""


def test_header_names_reach_the_function_in_lower_case_underscores_kept(echo_host: RunningServer) -> None:
    got = echoed(echo_host, headers=[("X-Mixed-Case", "a"), ("x_under_score", "b")])["headers"]
    assert got["x-mixed-case"] == "a" and got["x_under_score"] == "b"


def test_repeated_query_parameters_are_joined_and_empty_ones_dropped(echo_host: RunningServer) -> None:
    params = echoed(echo_host, "/api/echo?a=1&a=2&empty=&b=x")["params"]
    assert params == {"a": "1,2", "b": "x"}


def test_the_code_query_parameter_reaches_the_function(echo_host: RunningServer) -> None:
    got = echoed(echo_host, f"/api/echo?code={KEY}&x=1", headers=[])
    assert got["params"] == {"code": KEY, "x": "1"} and f"code={KEY}" in got["url"]


def test_a_functions_key_header_wins_over_the_code_parameter(echo_host: RunningServer) -> None:
    status, _, _ = raw_request(echo_host, "GET", f"/api/echo?code={KEY}", [("x-functions-key", "wrong")])
    assert status == 401
    status, _, _ = raw_request(echo_host, "GET", f"/api/echo?code={KEY}", [("x-functions-key", "")])
    assert status == 401


def test_the_body_reaches_the_function_only_with_a_content_length(echo_host: RunningServer) -> None:
    assert echoed(echo_host, method="POST", body=b'{"a": 1}')["body"] == '{"a": 1}'
    assert echoed(echo_host, method="POST", body=b'{"a": 1}', chunked=True)["body"] == ""


def test_json_answers_carry_no_charset_and_text_answers_do(echo_host: RunningServer) -> None:
    _, headers, _ = raw_request(echo_host, "GET", "/api/echo", [("x-functions-key", KEY)])
    assert headers["content-type"] == "application/json"
    _, headers, _ = raw_request(echo_host, "GET", "/api/text", [("x-functions-key", KEY)])
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_the_function_timeout_ends_an_invocation_with_an_empty_500(echo_host: RunningServer) -> None:
    status, _, body = raw_request(echo_host, "GET", "/api/slow", [("x-functions-key", KEY)])
    assert (status, body) == (500, b"")  # not the function's own late 200 "too late": the timeout ended it


def test_host_json_function_timeout_is_read_as_the_host_reads_it() -> None:
    host_json = json.loads((ROOT / "host.json").read_text())
    assert function_timeout(host_json) == 240.0
    assert function_timeout({"functionTimeout": "00:00:02.5"}) == 2.5
    assert function_timeout({"functionTimeout": "-1"}) == float("inf")
    assert function_timeout({}) == 30 * 60.0


# --- queues -----------------------------------------------------------------------------------------------------------

class Recorder:
    """A queue function that records what it ran, and can be held while it runs."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, message: func.QueueMessage) -> None:
        self.ran.append(message.get_body().decode())
        self.started.set()
        self.release.wait(30)


class CountingQueueClient(QueueClient):
    """A real queue client that counts the listener's polls (each a receive_messages call)."""

    receives = 0

    def receive_messages(self, *args: Any, **kwargs: Any) -> Any:
        self.receives += 1
        return super().receive_messages(*args, **kwargs)


def queue_pair(azurite: Azurite, name: str) -> tuple[QueueClient, QueueClient]:
    return (QueueClient.from_connection_string(azurite.connection_string, name),
            QueueClient.from_connection_string(azurite.connection_string, name + "-poison"))


def queued(name: str, queue: str, handler: Callable[..., None],
           connection: str = "AzureWebJobsStorage") -> QueueFunction:
    """A queue function as the host reads it from the worker's metadata, run by the emulated worker."""
    return QueueFunction(IndexedFunction(name, (), handler), queue, connection)


FAST = QueueOptions(batch_size=4, new_batch_threshold=2, max_dequeue_count=5, visibility_timeout=0.0,
                    max_polling_interval=0.2, message_encoding="none")


def test_a_message_over_the_dequeue_count_goes_to_poison_without_running(azurite: Azurite) -> None:
    name = "over-" + uuid.uuid4().hex[:12]
    client, poison = queue_pair(azurite, name)
    client.create_queue()
    client.send_message("tired")
    for _ in range(FAST.max_dequeue_count + 1):  # taken (and dropped) by others as often as that
        (taken,) = list(client.receive_messages(visibility_timeout=1))
        client.update_message(taken, visibility_timeout=0)
    recorder = Recorder()
    listener = QueueListener(queued("Over", name, recorder), client, poison, FAST)
    listener.start()
    try:
        deadline = time.monotonic() + 15
        while not (_exists(poison) and list(poison.peek_messages())):
            assert time.monotonic() < deadline, "never moved to the poison queue"
            time.sleep(0.1)
    finally:
        listener.stop()
    assert recorder.ran == []
    assert [m.content for m in poison.peek_messages()] == ["tired"]
    assert list(client.peek_messages()) == []


def _exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def test_a_listener_does_not_create_the_queue_it_watches(azurite: Azurite) -> None:
    name = "missing-" + uuid.uuid4().hex[:12]
    client = CountingQueueClient.from_connection_string(azurite.connection_string, name)
    assert isinstance(client, CountingQueueClient)
    poison = QueueClient.from_connection_string(azurite.connection_string, name + "-poison")
    recorder = Recorder()
    listener = QueueListener(queued("Missing", name, recorder), client, poison, FAST)
    listener.start()
    try:
        deadline = time.monotonic() + 15
        while client.receives < 3:  # several polls of the missing queue
            assert time.monotonic() < deadline, f"only {client.receives} polls"
            time.sleep(0.05)
        assert not _exists(client) and not _exists(poison)
        client.create_queue()  # the deployment creates it: the listener finds it and runs its messages
        client.send_message("hello")
        deadline = time.monotonic() + 15
        while recorder.ran != ["hello"]:
            assert time.monotonic() < deadline, recorder.ran
            time.sleep(0.1)
    finally:
        listener.stop()


def test_a_queue_function_that_takes_a_context_gets_a_new_trace_per_message(azurite: Azurite) -> None:
    name = "context-" + uuid.uuid4().hex[:12]
    client, poison = queue_pair(azurite, name)
    client.create_queue()
    seen: list[tuple[str, str]] = []

    def handler(message: func.QueueMessage, context: func.Context) -> None:
        seen.append((message.get_body().decode(), context.trace_context.trace_parent))

    listener = QueueListener(queued("Traced", name, handler), client, poison, FAST)
    listener.start()
    try:
        for body in ("one", "two"):
            client.send_message(body)
        deadline = time.monotonic() + 15
        while len(seen) < 2:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
    finally:
        listener.stop()
    assert sorted(body for body, _ in seen) == ["one", "two"]
    matches = [W3C.fullmatch(traceparent) for _, traceparent in seen]
    assert all(m and m[3] == "00" for m in matches) and len({m[1] for m in matches if m}) == 2


def test_the_default_lease_is_azures_ten_minutes_renewed_at_half(azurite: Azurite) -> None:
    name = "lease-" + uuid.uuid4().hex[:12]
    client, _ = queue_pair(azurite, name)
    client.create_queue()
    recorder = Recorder()
    recorder.release.clear()
    env = {"AzureWebJobsStorage": azurite.connection_string, "LEASE_QUEUE": name}
    (listener,) = start_listeners([queued("Lease", "%LEASE_QUEUE%", recorder)], FAST, env)
    try:
        assert listener.lease_seconds == DEFAULT_LEASE_SECONDS == 600
        client.send_message("held")
        assert recorder.started.wait(15)
        (message,) = listener.in_flight()
        assert message.next_visible_on is not None
        lease = message.next_visible_on.timestamp() - time.time()
        assert 590 < lease <= 601, lease
        assert list(client.peek_messages()) == []  # invisible to everyone else while it runs
    finally:
        recorder.release.set()
        listener.stop()


def test_an_unresolved_binding_puts_that_function_alone_in_error(azurite: Azurite,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    name = "resolved-" + uuid.uuid4().hex[:12]
    QueueClient.from_connection_string(azurite.connection_string, name).create_queue()
    env = {"AzureWebJobsStorage": azurite.connection_string, "GOOD_QUEUE": name}
    functions = [queued("Bad", "%MISSING_QUEUE%-x", Recorder()),
                 queued("NoConnection", "%GOOD_QUEUE%", Recorder(), "NoSuchConnection"),
                 queued("Good", "%GOOD_QUEUE%", Recorder())]
    listeners = start_listeners(functions, FAST, env)
    try:
        assert [listener.function.name for listener in listeners] == ["Good"]
        assert listeners[0].queue_name == name
    finally:
        for listener in listeners:
            listener.stop()
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert any("'Bad' function is in error" in e and "'%MISSING_QUEUE%' does not resolve to a value" in e
               for e in errors), errors
    assert any("'NoConnection' function is in error" in e and "NoSuchConnection" in e for e in errors), errors


def test_a_queue_function_waits_for_the_instances_one_thread_held_by_an_http_function(azurite: Azurite) -> None:
    """One pool per instance (PYTHON_THREADPOOL_THREAD_COUNT=1 here), shared by HTTP and queue functions."""
    held, release = threading.Event(), threading.Event()

    def slow_http(req: func.HttpRequest) -> func.HttpResponse:
        held.set()
        release.wait(30)
        return func.HttpResponse("done")

    host = FunctionsHost([Route("Held", _route_regex("held"), frozenset({"GET"}), "anonymous",
                                IndexedFunction("Held", (), slow_http))], KEY, "master-" + uuid.uuid4().hex,
                         worker=EmulatedWorker({THREAD_COUNT_SETTING: "1"}))
    server = quiet_server(host, request_handler=RawHeadersHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    running = RunningServer(server, threading.Thread())
    name = "shared-" + uuid.uuid4().hex[:12]
    client, poison = queue_pair(azurite, name)
    client.create_queue()
    recorder = Recorder()
    listener = QueueListener(queued("Shared", name, recorder), client, poison, FAST,
                             worker=host.worker)
    answered: list[int] = []
    request = threading.Thread(target=lambda: answered.append(
        requests.get(f"{running.url}/api/held", timeout=30).status_code))
    try:
        request.start()
        assert held.wait(30)
        client.send_message("waits")
        listener.start()
        deadline = time.monotonic() + 15
        while not listener.in_flight():  # taken from the queue, handed to the worker ...
            assert time.monotonic() < deadline, "never taken"
            time.sleep(0.05)
        assert recorder.ran == []  # ... whose one thread runs the HTTP function
        release.set()
        assert recorder.started.wait(30)
        assert recorder.ran == ["waits"]
        request.join(30)
        assert answered == [200]
    finally:
        release.set()
        listener.stop()
        server.shutdown()
        server.server_close()


def test_the_host_names_the_worker_that_indexed_the_app(host_factory: HostFactory) -> None:
    """On 3.13 and later azure-functions-runtime indexes the app and runs it, as in Azure; before, the emulation."""
    gateway = host_factory()
    expected = "azure-functions-runtime " if sys.version_info >= (3, 13) else "emulation "
    assert f"Worker: {expected}" in gateway.host.log()


def test_queue_messages_and_timer_ticks_run_through_the_worker_that_runs_http(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """One worker object per host runs every invocation: on 3.13 and later azure-functions-runtime converts and runs
    HTTP, queue and timer invocations alike (its own log names each function it runs), before 3.13 the emulation."""
    gateway = host_factory(MAINTENANCE_SCHEDULE="*/1 * * * * *")
    accepted = gateway.get_alerts(SEED_FILE_SHA1, headers={"Prefer": "respond-async"})  # HTTP, then the queue
    assert accepted.status_code == 202, accepted.text
    assert gateway.wait_for_operation(accepted.headers["Location"]).status_code == 200
    worker = "azure-functions-runtime " if sys.version_info >= (3, 13) else "emulation"
    expected = [f"Executed 'Functions.ProcessRequestMessage' (Succeeded, queue trigger, worker: {worker}",
                f"Executed 'Functions.MaintenanceSweep' (Succeeded, timer trigger, worker: {worker}"]
    if sys.version_info >= (3, 13):  # the library's own line for each invocation it ran, HTTP included
        expected += [f"Function name: {name}, Function Type: sync"
                     for name in ("GetFileRelatedAlerts", "ProcessRequestMessage", "MaintenanceSweep")]
    deadline = time.monotonic() + 30
    while missing := [line for line in expected if line not in gateway.host.log()]:
        assert time.monotonic() < deadline, missing
        time.sleep(0.2)


# --- the app in a local host ------------------------------------------------------------------------------------------

def test_a_host_without_a_bound_setting_serves_http_and_names_the_queue_functions_in_error(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    gateway = host_factory(unset=("REQUESTS_QUEUE",))  # an app setting removed by hand
    assert gateway.get_alerts(SEED_FILE_SHA1).status_code == 200
    log = gateway.host.log()
    for name in ("ProcessRequestMessage", "WaitCreateAlert", "WaitFileAlerts", "WaitFileInfo"):
        assert f"The '{name}' function is in error" in log, log
    assert "'%REQUESTS_QUEUE%' does not resolve to a value" in log


def test_location_keeps_a_code_that_came_as_a_query_parameter(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    gateway = host_factory()
    accepted = requests.get(f"{gateway.url}/api/files/{SEED_FILE_SHA1}/alerts", params={"code": FUNCTION_KEY},
                            headers={"Prefer": "respond-async"}, timeout=30)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert location.endswith(f"?code={FUNCTION_KEY}")
    deadline = time.monotonic() + 30
    while (polled := requests.get(location, timeout=30)).status_code == 202:  # no header: Location as it is
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert polled.status_code == 200 and "value" in polled.json()


def test_the_master_key_is_not_guessable_from_the_function_key(host_factory: HostFactory) -> None:
    gateway = host_factory()
    for guess in (FUNCTION_KEY + "-master", DEFAULT_LOCAL_KEY + "-master", "master"):
        response = requests.get(f"{gateway.url}/api/health", headers={"x-functions-key": guess}, timeout=30)
        assert response.status_code == 401, guess


def _console_spans(log: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed to the host's log (each a JSON object over several lines)."""
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := log.find('{\n    "name": "mdegw.', at)) != -1:
        span, end = decoder.raw_decode(log, at)
        spans.append(span)
        at = end
    return spans


def test_the_gateways_spans_continue_the_hosts_invocation_and_a_queued_request_keeps_its_trace(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """End to end through the local host (TELEMETRY_CONSOLE): the caller's traceparent, the host's activity under
    it, the request's span under that, and the operation it queued run later in the same trace, linked to the
    host's invocation of the queue function."""
    gateway = host_factory(TELEMETRY_CONSOLE="true")
    traceparent = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    assert gateway.get_alerts(SEED_FILE_SHA1, headers=traceparent).status_code == 200
    accepted = gateway.get_alerts(SEED_FILE_SHA1, headers={**traceparent, "Prefer": "respond-async"})
    assert accepted.status_code == 202, accepted.text
    assert gateway.wait_for_operation(accepted.headers["Location"]).status_code == 200
    deadline = time.monotonic() + 30  # the console exporter prints in batches, every 5 s
    while True:
        spans = _console_spans(gateway.host.log())
        requests_, queued = ([span for span in spans if span["name"] == name]
                             for name in ("mdegw.request", "mdegw.queued"))
        if len(requests_) >= 2 and queued:
            break
        assert time.monotonic() < deadline, [span["name"] for span in spans]
        time.sleep(0.5)
    for request in requests_:
        assert request["context"]["trace_id"] == "0x" + CALLER_TRACE
        assert request["parent_id"] not in (None, "0x" + CALLER_SPAN)  # the host's activity, between the two
    for run in queued:  # once, unless the operation had to wait for a slot and came back
        assert run["context"]["trace_id"] == "0x" + CALLER_TRACE
        assert run["parent_id"] in {request["context"]["span_id"] for request in requests_}
        (link,) = run["links"]
        assert link["context"]["trace_id"] != "0x" + CALLER_TRACE  # the queue function's invocation: its own trace
