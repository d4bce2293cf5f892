"""Telemetry on the real HTTP and queue paths, in process: the edge, the gateway, the lookups and the worker that
runtime.compose builds, with an in-memory metric reader and span exporter in place of Azure Monitor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceRequestError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import create_alert_fn
import file_alerts_fn
from localdev.invocation import HostActivity, run
from shared import runtime
from shared.asynchronous.messages import parse
from shared.asynchronous.operations import OperationsStorageError
from shared.defender.facts import Api
from shared.ratelimit import RateLimitStorageError
from shared.telemetry import catalogue
from shared.telemetry.catalogue import METRICS, Kind, SpanName
from shared.telemetry.recorder import Telemetry
from shared.telemetry.settings import TelemetrySettings
from shared.telemetry.setup import console_sampler, start_telemetry
from tests.support.inputs import VALID
from tests.support.metrics import METRICS_BY_NAME
from tests.support.rigs import EdgeRig, create_alert_request, get_alerts_request, make_edge
from tests.support.scripted import (
    FakeTable,
    Reply,
    alert_reply,
    alerts_reply,
    error_reply,
)

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
SHA256 = "c4bc2cafdb2881be3e6912ac60fad245fcc918f68ced49110166f9dd21603d8a"


@dataclass
class Recorded:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    telemetry: Telemetry

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Every data point of metric `name` now: (attributes, point)."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend((dict(point.attributes or {}), point) for point in metric.data.data_points)
        return found

    def count(self, name: str, **attributes: str) -> float:
        """The sum of counter `name` over the points whose attributes include `attributes`."""
        return float(sum(point.value for found, point in self.points(name)
                         if all(found.get(key) == value for key, value in attributes.items())))

    def finished(self, name: SpanName) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name.value]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=console_sampler())  # the gateway's own sampling, as on the console
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Recorded(reader, exporter, Telemetry(meter_provider, tracer_provider))
    meter_provider.shutdown()
    tracer_provider.shutdown()


def rig_with(recorded: Recorded, script: list[Reply], **kwargs: Any) -> EdgeRig:
    return make_edge(script, telemetry=recorded.telemetry, **kwargs)


def test_the_catalogue_names_each_metric_once_with_a_description() -> None:
    names = [spec.name for spec in METRICS]
    assert len(names) == len(set(names)) == len(METRICS_BY_NAME)
    assert all(spec.name.startswith("mdegw.") and spec.description and spec.unit for spec in METRICS)


#: The host's activity for an invocation, as it hands it to the worker: a new trace is not marked recorded (00).
HOST_TRACE, HOST_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def host_invocation(flags: str = "00") -> str:
    return f"00-{HOST_TRACE}-{HOST_SPAN}-{flags}"


def entry_point(module: ModuleType, name: str) -> Callable[..., Any]:
    """The function `name` of an entry point module, as the host registers it."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(module.bp)
    (function,) = [f.get_user_function() for f in app.get_functions() if f.get_function_name() == name]
    return function


@pytest.mark.parametrize("flags", ["00", "01"])
def test_a_request_span_is_a_child_of_the_hosts_invocation(recorded: Recorded, monkeypatch: pytest.MonkeyPatch,
                                                           flags: str) -> None:
    """The entry points hand the edge their context, and the request's span continues the host's invocation
    (in Application Insights: under the host's request, in its operation), whatever its sampled flag says."""
    rig = rig_with(recorded, [alerts_reply(), alert_reply()])
    monkeypatch.setattr(runtime, "_runtime", SimpleNamespace(edge=rig.edge))
    lookup = entry_point(file_alerts_fn, "GetFileRelatedAlerts")
    create = entry_point(create_alert_fn, "CreateAlertByReference")
    host = HostActivity(host_invocation(flags))
    assert run("GetFileRelatedAlerts", lookup, get_alerts_request(SHA1), activity=host).status_code == 200
    assert run("CreateAlertByReference", create, create_alert_request(VALID), activity=host).status_code == 200
    requests = recorded.finished(SpanName.REQUEST)
    assert len(requests) == 2
    for request in requests:
        assert format(request.context.trace_id, "032x") == HOST_TRACE
        assert request.parent is not None and request.parent.is_remote
        assert format(request.parent.span_id, "016x") == HOST_SPAN
    assert {span.context.trace_id for span in recorded.finished(SpanName.DEFENDER)} == {requests[0].context.trace_id}


def test_a_lookup_records_the_request_the_slot_and_a_span_tree_with_the_correlation_id(recorded: Recorded) -> None:
    rig = rig_with(recorded, [alerts_reply({"id": "da1", "title": "x"})])
    response = rig.get_alerts(SHA1, headers={"X-Correlation-ID": "playbook-run-0001"})
    assert response.status_code == 200

    assert recorded.count("mdegw.defender.requests", api="file_alerts", outcome="success", status="200") == 1
    ((_, duration),) = recorded.points("mdegw.defender.duration")
    assert duration.count == 1 and duration.sum >= 0
    assert recorded.count("mdegw.ratelimit.decisions", api="file_alerts", decision="admitted") == 1
    assert recorded.count("mdegw.defender.throttled") == 0

    (request,) = recorded.finished(SpanName.REQUEST)
    (call,) = recorded.finished(SpanName.CALL)
    (slot,) = recorded.finished(SpanName.RATE_LIMIT)
    (sent,) = recorded.finished(SpanName.DEFENDER)
    assert call.parent is not None and call.parent.span_id == request.context.span_id
    assert slot.parent is not None and slot.parent.span_id == call.context.span_id
    assert sent.parent is not None and sent.parent.span_id == call.context.span_id
    for span in (request, call, slot, sent):
        assert span.attributes is not None and span.attributes[catalogue.CORRELATION_ID] == "playbook-run-0001"
    assert sent.attributes is not None and sent.attributes[catalogue.STATUS] == 200
    assert request.attributes is not None and request.attributes[catalogue.STATUS] == 200


def test_defenders_429_is_counted_as_upstream_throttling(recorded: Recorded) -> None:
    rig = rig_with(recorded, [error_reply(429, "TooManyRequests", retry_after="1"), alerts_reply()])
    assert rig.get_alerts(SHA1).status_code == 200  # retried after the block
    assert recorded.count("mdegw.defender.throttled", api="file_alerts") == 1
    assert recorded.count("mdegw.defender.requests", outcome="throttled", status="429") == 1


def test_refusals_are_counted_with_their_reason_and_the_budget_gauges_follow(recorded: Recorded) -> None:
    rig = rig_with(recorded, [alert_reply()], limits={Api.CREATE_ALERT: "1/60"})
    assert rig.create(VALID).status_code == 200
    assert rig.create(VALID).status_code == 429
    assert recorded.count("mdegw.ratelimit.decisions", api="create_alert", decision="admitted") == 1
    assert recorded.count("mdegw.ratelimit.decisions", api="create_alert", decision="rate_limited") == 1
    remaining = {(found["api"], found["window"]): point.value
                 for found, point in recorded.points("mdegw.ratelimit.remaining")}
    limits = {(found["api"], found["window"]): point.value for found, point in recorded.points("mdegw.ratelimit.limit")}
    assert remaining[("create_alert", "60s")] == 0 and limits[("create_alert", "60s")] == 1


def test_shared_answers_and_sha256_resolutions_are_counted(recorded: Recorded) -> None:
    file_info = Reply(200, {"sha1": SHA1, "sha256": SHA256})
    rig = rig_with(recorded, [file_info, alerts_reply()], cache_table=FakeTable(), hash_table=FakeTable())
    assert rig.get_alerts(SHA256).status_code == 200
    assert rig.get_alerts(SHA256).status_code == 200  # the map knows it; the answer is shared
    assert recorded.count("mdegw.lookups.sha256", source="file_info", result="resolved") == 1
    assert recorded.count("mdegw.lookups.sha256", source="map", result="resolved") == 1
    assert recorded.count("mdegw.lookups.cache", result="miss") == 1
    assert recorded.count("mdegw.lookups.cache", result="hit") == 1
    rig.transport.assert_done()


def test_a_queued_request_continues_the_trace_of_the_http_call_that_queued_it(recorded: Recorded) -> None:
    rig = rig_with(recorded, [alert_reply()])
    accepted = rig.create(VALID, headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202
    queues = rig.runtime.queues
    (message,) = queues.messages[queues.requests_name]  # type: ignore[attr-defined]
    (request,) = recorded.finished(SpanName.REQUEST)
    traceparent = parse(message.text).traceparent
    assert traceparent is not None and format(request.context.trace_id, "032x") in traceparent

    rig.runtime.worker.handle(message.text, invocation=host_invocation())
    (queued,) = recorded.finished(SpanName.QUEUED)
    assert queued.context.trace_id == request.context.trace_id
    assert queued.parent is not None and queued.parent.span_id == request.context.span_id
    # ... linked to the host's invocation that runs it now
    (link,) = queued.links
    assert (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")) == (HOST_TRACE, HOST_SPAN)
    (sent,) = recorded.finished(SpanName.DEFENDER)
    assert sent.context.trace_id == request.context.trace_id
    assert recorded.count("mdegw.operations.created", api="create_alert", source="http") == 1
    assert recorded.count("mdegw.operations.finished", api="create_alert", status="200") == 1
    ((_, duration),) = recorded.points("mdegw.operations.duration")
    assert duration.count == 1


def test_a_message_from_automation_starts_its_own_trace_and_a_bad_traceparent_is_ignored(recorded: Recorded) -> None:
    rig = rig_with(recorded, [alerts_reply(), alerts_reply()])
    rig.runtime.worker.handle(json.dumps({"version": 1, "id": "auto-1", "operation": "GetFileRelatedAlerts",
                                          "fileHash": SHA1, "traceparent": "not-a-trace"}))
    (queued,) = recorded.finished(SpanName.QUEUED)
    assert queued.parent is None and not queued.links
    # Run by the host, it is a child of the host's invocation (which is a new trace for a queue message).
    rig.runtime.worker.handle(json.dumps({"version": 1, "id": "auto-2", "operation": "GetFileRelatedAlerts",
                                          "fileHash": SHA1}), invocation=host_invocation())
    (_, run_by_host) = recorded.finished(SpanName.QUEUED)
    assert format(run_by_host.context.trace_id, "032x") == HOST_TRACE and not run_by_host.links
    assert run_by_host.parent is not None and format(run_by_host.parent.span_id, "016x") == HOST_SPAN
    assert recorded.count("mdegw.operations.created", api="file_alerts", source="queue") == 2
    assert recorded.count("mdegw.operations.finished", api="file_alerts", status="200") == 2


def test_queue_depths_and_the_oldest_pending_operation_are_gauges(recorded: Recorded) -> None:
    rig = rig_with(recorded, [])
    assert rig.create(VALID, headers={"Prefer": "respond-async"}).status_code == 202
    rig.clock.advance(42)
    depths = {found["queue"]: point.value for found, point in recorded.points("mdegw.queue.depth")}
    assert depths["requests"] == 1 and depths["requests-poison"] == 0
    assert {"waiting-create_alert", "waiting-file_alerts-poison"} <= set(depths)
    ((_, age),) = recorded.points("mdegw.operations.oldest_pending_age")
    assert age.value == pytest.approx(42)


def test_storage_and_identity_failures_are_counted(recorded: Recorded) -> None:
    rig = rig_with(recorded, [])
    rig.store.available = False
    assert rig.get_alerts(SHA1).status_code == 503
    assert recorded.count("mdegw.errors", kind="rate-limit-storage") == 1
    rig.store.available = True
    rig.credential.error = ServiceRequestError("ManagedIdentityCredential: endpoint unreachable")
    assert rig.get_alerts(SHA1).status_code == 502
    assert recorded.count("mdegw.errors", kind="identity") == 1
    rig.transport.assert_done()


def test_no_token_body_or_hash_reaches_telemetry(recorded: Recorded) -> None:
    rig = rig_with(recorded, [alerts_reply({"id": "da1", "title": "secret title"}), alert_reply()])
    rig.get_alerts(SHA1)
    rig.create(VALID)
    token = rig.credential.token
    values = [str(value) for span in recorded.spans.get_finished_spans() for value in (span.attributes or {}).values()]
    data = recorded.reader.get_metrics_data()
    assert data is not None
    values += [str(value) for resource in data.resource_metrics for scope in resource.scope_metrics
               for metric in scope.metrics for point in metric.data.data_points
               for value in (point.attributes or {}).values()]
    for forbidden in (token, SHA1, "secret title", VALID["title"], VALID["machineId"]):
        assert not [value for value in values if forbidden in value], forbidden


def test_without_providers_nothing_is_recorded_and_no_gauge_is_registered() -> None:
    telemetry = Telemetry()
    assert not telemetry.enabled
    called: list[int] = []
    telemetry.observe(METRICS_BY_NAME["mdegw.queue.depth"], lambda: called.append(1) or [])  # type: ignore[func-returns-value]
    telemetry.defender_request("file_alerts", "success", 200, 0.1)
    with telemetry.span(SpanName.CALL, {}):
        assert telemetry.traceparent() is None
    assert called == []


def test_a_gauge_whose_reading_fails_gives_nothing_and_others_still_report(recorded: Recorded) -> None:
    def broken() -> Any:
        raise RateLimitStorageError("down")

    recorded.telemetry.observe(METRICS_BY_NAME["mdegw.operations.oldest_pending_age"], broken)
    recorded.telemetry.observe(METRICS_BY_NAME["mdegw.queue.depth"], lambda: [(3.0, {"queue": "requests"})])
    assert recorded.points("mdegw.operations.oldest_pending_age") == []
    assert [point.value for _, point in recorded.points("mdegw.queue.depth")] == [3.0]


def test_every_gauge_in_the_catalogue_is_registered_by_the_runtime(recorded: Recorded) -> None:
    rig_with(recorded, [])
    registered = {metric.name for resource in (recorded.reader.get_metrics_data() or _empty()).resource_metrics
                  for scope in resource.scope_metrics for metric in scope.metrics}
    gauges = {spec.name for spec in METRICS if spec.kind is Kind.GAUGE}
    # The budget gauges report once a decision was seen; the backlog ones at once.
    assert {"mdegw.queue.depth", "mdegw.operations.oldest_pending_age"} <= registered
    assert gauges - registered == {"mdegw.ratelimit.remaining", "mdegw.ratelimit.limit"}


def _empty() -> Any:
    return type("Empty", (), {"resource_metrics": ()})()


def test_console_telemetry_is_on_when_asked_and_off_by_default() -> None:
    assert not start_telemetry(TelemetrySettings()).enabled
    assert start_telemetry(TelemetrySettings(console=True)).enabled


_AZURE_MONITOR_SCRIPT = """
import json
from shared.telemetry.settings import TelemetrySettings
from shared.telemetry.setup import console_sampler, start_telemetry
telemetry = start_telemetry(TelemetrySettings(
    connection_string="InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"))
from opentelemetry import metrics, trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
import time
# The default sampler keeps 5 traces a second: after a quiet second it keeps the next one, unless it followed the
# sampled flag of a parent from another process (the host's invocation, not marked recorded).
time.sleep(1.0)
host = TraceContextTextMapPropagator().extract({"traceparent": "00-%s-%s-00"})
with trace.get_tracer("test").start_as_current_span("under-the-host", context=host) as span:
    recorded_under_host = span.is_recording()
sampler = trace.get_tracer_provider().sampler.get_description()
print(json.dumps({"enabled": telemetry.enabled, "meter": type(metrics.get_meter_provider()).__module__,
                  "tracer": type(trace.get_tracer_provider()).__module__,
                  "recorded_under_host": recorded_under_host, "sampler": sampler}))
"""


def test_a_connection_string_configures_azure_monitor_with_the_gateways_options() -> None:
    """The distro takes the gateway's arguments (in a child process: it sets the process's global providers).
    Its exporter would send to the loopback endpoint above; statsbeat (its own telemetry) is off here."""
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("OTEL_TRACES_SAMPLER")},
           "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    script = _AZURE_MONITOR_SCRIPT % (HOST_TRACE, HOST_SPAN)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # A span under the host's invocation, which is not marked recorded, is recorded all the same: the distro's
    # sampler follows a parent in this process only (as console_sampler does).
    assert result == {"enabled": True, "meter": "opentelemetry.sdk.metrics._internal",
                      "tracer": "opentelemetry.sdk.trace", "recorded_under_host": True,
                      "sampler": "RateLimitedSampler{5.0}"}
    assert "could not be set up" not in done.stderr


def test_a_poisoned_request_is_counted_by_reason_and_worker_storage_failures_too(recorded: Recorded) -> None:
    rig = rig_with(recorded, [])
    rig.runtime.worker.handle(json.dumps({"version": 1, "id": "bad-1", "operation": "Nope"}))
    assert recorded.count("mdegw.queue.poisoned", kind="invalid-message") == 1
    rig.runtime.operations.available = False  # type: ignore[attr-defined]
    with pytest.raises(OperationsStorageError):
        rig.runtime.worker.handle(json.dumps({"version": 1, "id": "ok-1", "operation": "GetFileRelatedAlerts",
                                              "fileHash": SHA1}))
    assert recorded.count("mdegw.errors", kind="operations-storage") == 1
