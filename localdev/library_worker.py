"""The worker as Azure runs it on Python 3.13 and later: `azure-functions-runtime`, driven as the proxy worker does.

The proxy worker (azure-functions-python-worker) receives the host's gRPC messages and awaits the library's handlers
on its event loop: `worker_init_request` indexes the app (`loader.index_function_app`: the script imported, every
function checked, its metadata built), `functions_metadata_request` reports it, and `invocation_request` converts
the trigger in (azure.functions' converters, through the binding registry), runs a sync function on the library's
one thread pool (`start_threadpool_executor`: PYTHON_THREADPOOL_THREAD_COUNT, unset `min(32, cpus + 4)`) or an
async one on the loop, and converts the answer out. This class does the same with the messages of
localdev.rpc_messages in place of the generated protobuf classes. Trigger metadata is sent as the host sends it
(queue: Id, PopReceipt and the times as strings, DequeueCount as JSON).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from localdev import rpc_messages as protos
from localdev.invocation import HostActivity
from localdev.worker_pool import Submit
from localdev.workers import (
    HttpAnswer,
    HttpCall,
    IndexedFunction,
    IndexingError,
    QueueCall,
    Trigger,
    app_on_path,
)

logger = logging.getLogger("localdev.library_worker")
#: The library, as the Python worker in Azure loads it.
LIBRARY = "azure_functions_runtime"


def _iso(value: Any) -> protos.TypedData | None:
    return None if value is None else protos.TypedData(string=value.isoformat())


class LibraryWorker:
    """`azure-functions-runtime` behind the host: one per process (the library keeps its state in module globals,
    as in the worker)."""

    def __init__(self) -> None:
        self._library: Any = importlib.import_module(LIBRARY)
        self._handlers: Any = importlib.import_module(f"{LIBRARY}.handle_event")
        version = importlib.import_module(f"{LIBRARY}.version").VERSION
        self.name = f"azure-functions-runtime {version}"
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="worker-loop", daemon=True).start()
        self._library.start_threadpool_executor()
        self._ids: dict[str, str] = {}

    @property
    def submit(self) -> Submit:
        pool = self._library.get_threadpool_executor()
        return pool.submit  # type: ignore[no-any-return]

    def _await(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def index(self, app_directory: Path) -> list[IndexedFunction]:
        app_on_path(app_directory)
        init = protos.Envelope(protos.StreamingMessage(worker_init_request=protos.WorkerInitRequest(
            function_app_directory=str(app_directory))), {"host": "127.0.0.1", "protos": protos})
        answer = self._await(self._handlers.worker_init_request(init)).result()
        if answer.result.status != protos.StatusResult.Success:
            raise IndexingError(answer.result.exception.message)
        metadata = self._await(self._handlers.functions_metadata_request(init)).result()
        indexed = []
        for function in metadata.function_metadata_results or []:
            self._ids[function.name] = function.function_id
            info = self._handlers._functions.get_function(function.function_id)
            indexed.append(IndexedFunction(function.name, tuple(json.loads(b) for b in function.raw_bindings),
                                           info.func))
        return indexed

    def start(self, function: IndexedFunction, trigger: Trigger, activity: HostActivity) -> Future[Any]:
        request = protos.InvocationRequest(
            invocation_id=str(uuid.uuid4()), function_id=self._ids[function.name],
            trace_context=protos.RpcTraceContext(activity.traceparent, activity.tracestate, {}))
        data, metadata = self._trigger_data(trigger)
        request.input_data.append(protos.ParameterBinding(name=str(function.trigger.get("name")), data=data))
        request.trigger_metadata.update(metadata)
        envelope = protos.Envelope(protos.StreamingMessage(invocation_request=request), {"protos": protos})
        answered: Future[Any] = Future()

        def done(invoked: Future[Any]) -> None:
            try:
                response = invoked.result()
                if response.result.status != protos.StatusResult.Success:
                    raise FunctionInvocationError(response.result.exception.message)
                answered.set_result(http_answer(response.return_value) if isinstance(trigger, HttpCall) else None)
            except BaseException as error:  # handed to the host as it is
                answered.set_exception(error)

        self._await(self._handlers.invocation_request(envelope)).add_done_callback(done)
        return answered

    @staticmethod
    def _trigger_data(trigger: Trigger) -> tuple[protos.TypedData, dict[str, protos.TypedData]]:
        if isinstance(trigger, HttpCall):
            body = protos.TypedData(bytes=trigger.body) if trigger.body else protos.TypedData()
            return protos.TypedData(http=protos.RpcHttp(
                method=trigger.method, url=trigger.url, headers=dict(trigger.headers), body=body,
                params=dict(trigger.route_params), query=dict(trigger.params))), {}
        if isinstance(trigger, QueueCall):
            metadata = {"Id": protos.TypedData(string=trigger.id),
                        "PopReceipt": protos.TypedData(string=trigger.pop_receipt),
                        "DequeueCount": protos.TypedData(json=json.dumps(trigger.dequeue_count)),
                        "InsertionTime": _iso(trigger.insertion_time),
                        "ExpirationTime": _iso(trigger.expiration_time),
                        "NextVisibleTime": _iso(trigger.next_visible_time)}
            return protos.TypedData(bytes=trigger.body), {k: v for k, v in metadata.items() if v is not None}
        return protos.TypedData(json=json.dumps({"Schedule": {"AdjustForDST": True},
                                                 "ScheduleStatus": dict(trigger.schedule_status) or None,
                                                 "IsPastDue": trigger.past_due})), {}


class FunctionInvocationError(Exception):
    """The function (or the library's conversion) failed: the worker's RpcException message."""


def http_answer(value: protos.TypedData | None) -> HttpAnswer:
    """The library's RpcHttp answer as the host sends it."""
    if value is None or value.http is None:
        raise FunctionInvocationError("an HTTP function returned no HTTP answer")
    body = value.http.body
    raw = b"" if body is None else body.bytes if body.bytes is not None else (body.string or "").encode()
    return HttpAnswer(int(value.http.status_code or 200), list(value.http.headers.items()), raw)
