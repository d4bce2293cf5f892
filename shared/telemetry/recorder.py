"""`Telemetry`: the instruments of the catalogue over a meter and a tracer provider, and the few calls the gateway's
code makes on them. One per process, passed to what records (no global state, so a test gives its own providers
with in-memory readers). `Telemetry()` records nothing: the API's no-op providers.

Recording never fails a call: an observable gauge whose callback raises (storage down, say) reports nothing for
that collection, and every other call is the OpenTelemetry API's, which does not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry.context import Context
from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)
from opentelemetry.trace import Link, NoOpTracerProvider, Span, TracerProvider, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.telemetry.catalogue import (
    API as API_ATTRIBUTE,
)
from shared.telemetry.catalogue import (
    CACHE_LOOKUPS,
    DEFENDER_DURATION,
    DEFENDER_REQUESTS,
    ERRORS,
    HUNTING_CPU_BLOCKS,
    METRICS,
    OPERATION_DURATION,
    OPERATIONS_CREATED,
    OPERATIONS_FINISHED,
    POISONED,
    RATE_LIMIT_DECISIONS,
    SHA256_RESOLUTIONS,
    TRACEPARENT,
    UPSTREAM_THROTTLED,
    ErrorKind,
    Kind,
    MetricSpec,
    SpanName,
)

logger = logging.getLogger("mde_alert_gateway.telemetry")

INSTRUMENTATION_NAME = "mde_alert_gateway"
#: What an observable gauge's callback gives: (value, attributes) pairs.
Readings = Iterable[tuple[float, Mapping[str, str]]]
_PROPAGATOR = TraceContextTextMapPropagator()


class Telemetry:
    """Metrics and spans of the gateway (shared.telemetry.catalogue names them all)."""

    def __init__(self, meter_provider: MeterProvider | None = None,
                 tracer_provider: TracerProvider | None = None) -> None:
        #: False with the no-op providers: nothing is recorded, and callbacks are not even registered.
        self.enabled = meter_provider is not None or tracer_provider is not None
        self._meter = (meter_provider or NoOpMeterProvider()).get_meter(INSTRUMENTATION_NAME)
        self._tracer = (tracer_provider or NoOpTracerProvider()).get_tracer(INSTRUMENTATION_NAME)
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        for spec in METRICS:
            if spec.kind is Kind.COUNTER:
                self._counters[spec.name] = self._meter.create_counter(spec.name, spec.unit, spec.description)
            elif spec.kind is Kind.HISTOGRAM:
                self._histograms[spec.name] = self._meter.create_histogram(spec.name, spec.unit, spec.description)

    # --- the gateway's measurements ------------------------------------------------------------------------------

    def defender_request(self, api: str, outcome: str, status: int | None, seconds: float, *,
                         limit: str = "calls") -> None:
        """One request sent to Defender (or Graph) and what it came to (`status` None: no answer); `limit`: which
        limit a 429 named (calls, or cpu for Graph's hunting CPU quota)."""
        self._count(DEFENDER_REQUESTS, api=api, outcome=outcome, status=str(status or 0))
        self._histograms[DEFENDER_DURATION.name].record(seconds, {API_ATTRIBUTE: api, "outcome": outcome})
        if outcome == "throttled":
            self._count(UPSTREAM_THROTTLED, api=api, limit=limit)

    def cpu_block(self, api: str) -> None:
        """Every instance's `api` calls held after Graph's CPU 429 (until when: the gateway's log says)."""
        self._count(HUNTING_CPU_BLOCKS, api=api)

    def rate_limit_decision(self, api: str, decision: str) -> None:
        self._count(RATE_LIMIT_DECISIONS, api=api, decision=decision)

    def cache_lookup(self, *, hit: bool) -> None:
        self._count(CACHE_LOOKUPS, result="hit" if hit else "miss")

    def sha256_resolution(self, source: str, result: str) -> None:
        """`source`: map or file_info; `result`: resolved, unknown (Defender does not know the file) or failed."""
        self._count(SHA256_RESOLUTIONS, source=source, result=result)

    def operation_created(self, api: str, source: str) -> None:
        self._count(OPERATIONS_CREATED, api=api, source=source)

    def operation_finished(self, api: str, status: int, seconds: float) -> None:
        self._count(OPERATIONS_FINISHED, api=api, status=str(status))
        self._histograms[OPERATION_DURATION.name].record(max(0.0, seconds), {API_ATTRIBUTE: api})

    def request_poisoned(self, reason: str) -> None:
        self._count(POISONED, kind=reason)

    def error(self, kind: ErrorKind) -> None:
        self._count(ERRORS, kind=kind.value)

    def observe(self, spec: MetricSpec, read: Callable[[], Readings]) -> None:
        """Register `read` as the callback of the gauge `spec` (called at each collection, by the exporter's
        thread); a reading that raises gives no value for that collection."""
        assert spec.kind is Kind.GAUGE, spec.name
        if not self.enabled:
            return

        def callback(_: CallbackOptions) -> Iterable[Observation]:
            try:
                return [Observation(value, dict(attributes)) for value, attributes in read()]
            except Exception as error:
                logger.warning("%s: no reading this time: %s", spec.name, error)
                return []

        self._meter.create_observable_gauge(spec.name, [callback], spec.unit, spec.description)

    # --- spans ---------------------------------------------------------------------------------------------------

    @contextmanager
    def span(self, name: SpanName, attributes: Mapping[str, str], *, parent: Context | None = None,
             link: Context | None = None) -> Iterator[Span]:
        """A span around a block, current inside it. `parent`: the context to continue (the host's invocation, or
        a queued request's); `link`: a context the span is linked to without being its child."""
        links = []
        if link is not None and (target := get_current_span(link).get_span_context()).is_valid:
            links.append(Link(target))
        with self._tracer.start_as_current_span(name.value, context=parent, attributes=dict(attributes),
                                                links=links) as span:
            yield span

    @staticmethod
    def traceparent() -> str | None:
        """The current span as a W3C `traceparent`, for a message that another process continues (None: no span)."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get(TRACEPARENT)

    @staticmethod
    def continued(traceparent: str | None) -> Context | None:
        """The context a `traceparent` names (None when there is none, or it is not one)."""
        if not traceparent:
            return None
        context = _PROPAGATOR.extract({TRACEPARENT: traceparent})
        return context if context else None

    def _count(self, spec: MetricSpec, **attributes: str) -> None:
        self._counters[spec.name].add(1, attributes)
