"""One contract for the local host's worker, run against each form this interpreter has (localdev.workers).

On 3.11 and 3.12 it runs the emulation; on 3.13 and later also `azure-functions-runtime`, the library Azure's Python
worker runs every function through. Each test writes a small app (function_app.py in a temp folder), indexes it as
the worker does, and invokes its functions with what the host sends: so any difference between the imitation and
Azure's code is a failing test here. No sockets: the worker is called in process, as the host calls it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from localdev.functions_host import FunctionsHost, build_host, host_functions, route_prefix
from localdev.invocation import request_activity
from localdev.worker_pool import THREAD_COUNT_SETTING, invoke_with_timeout, thread_count
from localdev.workers import (
    EmulatedWorker,
    HttpAnswer,
    HttpCall,
    IndexedFunction,
    IndexingError,
    QueueCall,
    TimerCall,
    Worker,
    choose_worker,
    library_available,
)

ROOT = Path(__file__).resolve().parents[2]
#: The worker's forms this interpreter has: the library only on 3.13 and later.
FORMS = ["emulation", *(["library"] if library_available() else [])]
_WORKERS: dict[str, Worker] = {}

APP = '''
import json
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
seen: dict = {}


@app.function_name("Echo")
@app.route(route="things/{thing}", methods=["POST"])
def echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    document = {"method": req.method, "url": req.url, "headers": dict(req.headers.items()), "params": dict(req.params),
                "route": dict(req.route_params), "body": req.get_body().decode(),
                "function": context.function_name, "traceparent": context.trace_context.trace_parent}
    return func.HttpResponse(json.dumps(document), status_code=201, headers={"X-Thing": "1"},
                             mimetype="application/json")


@app.function_name("Text")
@app.route(route="text", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def text(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("plain")


@app.function_name("Fails")
@app.route(route="fails", auth_level=func.AuthLevel.ANONYMOUS)
def fails(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("broken")


@app.function_name("OnMessage")
@app.queue_trigger(arg_name="message", queue_name="%QUEUE%-x", connection="Storage")
def on_message(message: func.QueueMessage) -> None:
    seen["message"] = {"id": message.id, "body": message.get_body().decode(), "dequeue_count": message.dequeue_count,
                       "pop_receipt": message.pop_receipt, "insertion_time": str(message.insertion_time)}


@app.function_name("OnTimer")
@app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
def on_timer(timer: func.TimerRequest) -> None:
    seen["timer"] = {"past_due": timer.past_due}
'''


@pytest.fixture
def app_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder for function_app.py; the module and the folder are taken off sys.modules and sys.path after."""
    kept = sys.modules.pop("function_app", None)
    yield tmp_path
    sys.modules.pop("function_app", None)
    if kept is not None:
        sys.modules["function_app"] = kept
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def worker_of(form: str) -> Worker:
    """One worker per form for the module (the library keeps its state in module globals, one per process)."""
    if form not in _WORKERS:
        _WORKERS[form] = choose_worker({"LOCAL_WORKER": form})
    return _WORKERS[form]


def indexed(form: str, folder: Path, source: str = APP) -> tuple[Worker, dict[str, IndexedFunction], Any]:
    (folder / "function_app.py").write_text(textwrap.dedent(source))
    worker = worker_of(form)
    functions = {function.name: function for function in worker.index(folder)}
    return worker, functions, sys.modules["function_app"]


def http(worker: Worker, function: IndexedFunction, call: HttpCall) -> HttpAnswer:
    answer: HttpAnswer = worker.start(function, call, request_activity(None)).result(30)
    return answer


@pytest.mark.parametrize("form", FORMS)
def test_the_metadata_of_every_function_is_what_the_host_reads(form: str, app_folder: Path) -> None:
    _, functions, _ = indexed(form, app_folder)
    host = host_functions(list(functions.values()), "api")
    assert [(r.name, r.pattern.pattern, sorted(r.methods), r.auth_level) for r in host.routes] == [
        ("Echo", "^/api/things/(?P<thing>[^/]+)/?$", ["POST"], "function"),
        ("Text", "^/api/text/?$", ["GET"], "admin"),
        ("Fails", "^/api/fails/?$", ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"], "anonymous")]
    assert [(q.name, q.queue, q.connection) for q in host.queues] == [("OnMessage", "%QUEUE%-x", "Storage")]
    assert [(t.name, t.schedule, t.run_on_startup) for t in host.timers] == [("OnTimer", "0 */5 * * * *", True)]


@pytest.mark.parametrize("form", FORMS)
def test_an_http_call_is_converted_in_and_out(form: str, app_folder: Path) -> None:
    worker, functions, _ = indexed(form, app_folder)
    activity = request_activity("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    call = HttpCall("POST", "http://127.0.0.1/api/things/7?q=1", {"x-one": "a,b"}, {"q": "1"}, {"thing": "7"},
                    b'{"k": 1}')
    answer: HttpAnswer = worker.start(functions["Echo"], call, activity).result(30)
    assert answer.status == 201
    assert ("X-Thing", "1") in answer.headers and ("content-type", "application/json") in answer.headers
    assert json.loads(answer.body) == {
        "method": "POST", "url": "http://127.0.0.1/api/things/7?q=1", "headers": {"x-one": "a,b"},
        "params": {"q": "1"}, "route": {"thing": "7"}, "body": '{"k": 1}', "function": "Echo",
        "traceparent": activity.traceparent}
    text = http(worker, functions["Text"], HttpCall("GET", "http://127.0.0.1/api/text", {}, {}, {}, b""))
    assert (text.status, text.body, dict(text.headers)["content-type"]) == (200, b"plain", "text/plain; charset=utf-8")


@pytest.mark.parametrize("form", FORMS)
def test_a_function_that_raises_fails_its_invocation(form: str, app_folder: Path) -> None:
    worker, functions, _ = indexed(form, app_folder)
    invocation = worker.start(functions["Fails"], HttpCall("GET", "http://127.0.0.1/api/fails", {}, {}, {}, b""),
                              request_activity(None))
    with pytest.raises(Exception, match="broken"):
        invocation.result(30)


@pytest.mark.parametrize("form", FORMS)
def test_a_queue_message_is_converted_in_with_its_metadata(form: str, app_folder: Path) -> None:
    worker, functions, module = indexed(form, app_folder)
    inserted = datetime(2026, 12, 6, 10, 0, 0, tzinfo=UTC)
    message = QueueCall("id-1", b"hello", 3, "receipt", insertion_time=inserted)
    assert worker.start(functions["OnMessage"], message, request_activity(None)).result(30) is None
    assert module.seen["message"] == {"id": "id-1", "body": "hello", "dequeue_count": 3, "pop_receipt": "receipt",
                                      "insertion_time": str(inserted)}


@pytest.mark.parametrize("form", FORMS)
def test_a_timer_invocation_is_converted_in(form: str, app_folder: Path) -> None:
    worker, functions, module = indexed(form, app_folder)
    worker.start(functions["OnTimer"], TimerCall(past_due=True), request_activity(None)).result(30)
    assert module.seen["timer"] == {"past_due": True}


BAD_APPS = {
    "a context of another type": ("import azure.functions as func\napp = func.FunctionApp()\n"
                                  "@app.route(route='x')\ndef wrong(req: func.HttpRequest, context: str) -> "
                                  "func.HttpResponse:\n    return func.HttpResponse('')\n", "wrong"),
    "a parameter no binding names": ("import azure.functions as func\napp = func.FunctionApp()\n"
                                     "@app.route(route='x')\ndef extra(req: func.HttpRequest, other: str) -> "
                                     "func.HttpResponse:\n    return func.HttpResponse('')\n", "extra"),
    "no function app": ("import azure.functions as func\n", "Could not find top level function app instances"),
    "two function apps": ("import azure.functions as func\na = func.FunctionApp()\nb = func.FunctionApp()\n",
                          "More than one"),
    "an import that fails": ("raise RuntimeError('settings are broken')\n", "settings are broken"),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", list(BAD_APPS))
def test_a_bad_app_fails_the_indexing_as_a_whole_naming_why(form: str, case: str, app_folder: Path) -> None:
    source, named = BAD_APPS[case]
    with pytest.raises(IndexingError, match=named):
        indexed(form, app_folder, source)


def test_on_3_13_and_later_the_host_runs_the_app_through_azure_functions_runtime() -> None:
    """The library where Azure's worker uses it (3.13+), the emulation before; LOCAL_WORKER=emulation forces it."""
    chosen = choose_worker({})
    from_the_library = sys.version_info >= (3, 13)
    assert chosen.name.startswith("azure-functions-runtime ") is from_the_library
    assert type(chosen).__module__ == ("localdev.library_worker" if from_the_library else "localdev.workers")
    assert isinstance(choose_worker({"LOCAL_WORKER": "emulation"}), EmulatedWorker)


@pytest.mark.parametrize("form", FORMS)
def test_the_apps_own_functions_are_indexed_alike(form: str) -> None:
    """function_app itself, indexed in a child process (its settings are read at import) by each form."""
    script = ("import json, sys; from pathlib import Path; from localdev.workers import choose_worker; "
              f"fs = choose_worker({{'LOCAL_WORKER': {form!r}}}).index(Path.cwd()); "
              "print(json.dumps({f.name: [dict(b) for b in f.bindings] for f in fs}))")
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MDE_BASE_URL": "http://127.0.0.1:1",
           "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    functions = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(functions) == 22
    assert functions["GetFileRelatedAlerts"][0] == {"direction": "IN", "type": "httpTrigger", "name": "req",
                                                    "methods": ["GET"], "authLevel": "FUNCTION",
                                                    "route": "files/{fileHash}/alerts"}
    assert functions["MaintenanceSweep"] == [{"direction": "IN", "type": "timerTrigger", "name": "timer",
                                              "schedule": "%MAINTENANCE_SCHEDULE%"}]


# --- the host's side over the worker: route prefix, the platform's cap, one pool ---------------------------------

PING_APP = '''
import azure.functions as func
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

@app.route(route="ping")
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")
'''


@pytest.mark.parametrize("prefix, served, missing", [(None, "/api/ping", "/ping"), ("", "/ping", "/api/ping"),
                                                     ("gateway/v1", "/gateway/v1/ping", "/api/ping")])
def test_routes_sit_under_host_json_route_prefix(prefix: str | None, served: str, missing: str, app_folder: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (app_folder / "function_app.py").write_text(PING_APP)
    monkeypatch.setenv("LOCAL_WORKER", "emulation")
    host_json: dict[str, Any] = {"version": "2.0"} if prefix is None else {"extensions": {"http": {
        "routePrefix": prefix}}}
    host, _ = build_host(host_json, app_folder)
    client = Client(host)
    assert (client.get(served).status_code, client.get(served).get_data()) == (200, b"pong")
    assert client.get(missing).status_code == 404
    assert route_prefix(host_json) == ("api" if prefix is None else prefix)


class Held:
    """A function that runs until released, recording when it starts and ends."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name, self.events = name, events
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, req: Any) -> Any:
        import azure.functions as func

        self.events.append(f"{self.name} started")
        self.started.set()
        assert self.release.wait(30)
        self.events.append(f"{self.name} ended")
        return func.HttpResponse("late")


def held_host(events: list[str], **kwargs: Any) -> tuple[FunctionsHost, Held]:
    from localdev.functions_host import Route, _route_regex

    slow = Held("http", events)
    route = Route("Slow", _route_regex("slow"), frozenset({"GET"}), "anonymous", IndexedFunction("Slow", (), slow))
    return FunctionsHost([route], "key", "master", worker=EmulatedWorker({THREAD_COUNT_SETTING: "1"}), **kwargs), slow


def test_the_platform_cuts_an_http_response_at_its_cap_with_502_and_the_function_runs_on() -> None:
    events: list[str] = []
    host, slow = held_host(events, function_timeout=float("inf"), http_cap=0.2)
    response = Client(host).get("/api/slow")
    assert (response.status_code, response.get_data()) == (502, b"")  # not functionTimeout's 500
    assert events == ["http started"]  # still running: the platform does not stop it
    slow.release.set()


def test_the_http_cap_is_230_seconds_unless_the_local_setting_lowers_it() -> None:
    from localdev.functions_host import HTTP_RESPONSE_CAP, http_cap

    assert HTTP_RESPONSE_CAP == 230.0
    assert http_cap({}) == 230.0
    assert http_cap({"LOCAL_HTTP_RESPONSE_CAP_SECONDS": "2"}) == 2.0
    assert http_cap({"LOCAL_HTTP_RESPONSE_CAP_SECONDS": "900"}) == 230.0  # it lowers the cap, never raises it


def test_the_pool_is_sized_as_the_worker_sizes_it() -> None:
    import os

    default = min(32, (os.cpu_count() or 1) + 4)
    assert thread_count({}) == default
    assert thread_count({THREAD_COUNT_SETTING: "3"}) == 3
    assert thread_count({THREAD_COUNT_SETTING: "0"}) == default
    assert thread_count({THREAD_COUNT_SETTING: "many"}) == default


def test_with_a_pool_of_one_a_slow_http_function_holds_up_a_queue_function() -> None:
    """HTTP and queue functions share the instance's pool: the queue invocation waits for the HTTP one."""
    events: list[str] = []
    host, slow = held_host(events)
    answered: list[int] = []
    request = threading.Thread(target=lambda: answered.append(Client(host).get("/api/slow").status_code))
    request.start()
    assert slow.started.wait(30)
    queued = host.worker.submit(lambda: events.append("queue ran"))  # as a queue listener hands it over
    assert not queued.running() and not queued.done()  # the one thread is the HTTP function's
    slow.release.set()
    request.join(30)
    queued.result(30)
    assert events == ["http started", "http ended", "queue ran"]
    assert answered == [200]


def test_an_invocation_past_its_timeout_fails_and_keeps_its_thread() -> None:
    """functionTimeout counts from the hand-over (waiting for a thread included), as the host's clock does."""
    from localdev.worker_pool import FunctionTimeoutError

    events: list[str] = []
    host, slow = held_host(events)
    request = threading.Thread(target=lambda: Client(host).get("/api/slow"))
    request.start()
    assert slow.started.wait(30)
    with pytest.raises(FunctionTimeoutError):
        invoke_with_timeout("Queue", host.worker.submit(lambda: events.append("queue ran")), 0.1)
    slow.release.set()
    request.join(30)
