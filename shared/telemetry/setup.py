"""Telemetry at start-up: Azure Monitor (the `azure-monitor-opentelemetry` distro, with the managed identity) when
a connection string is set, the console when asked, else nothing. Never stops the gateway: a failure to set it up
is logged and the gateway runs without telemetry.

The distro's automatic instrumentations are all off: the host already reports each invocation, and the gateway's
own spans cover the calls that matter (one per gateway call, a child per slot and per Defender request); its log
export is off too, since the host collects the worker's logs.

The worker's and the host's own OpenTelemetry switches stay off; the reasons are in their sources:
- `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY` (in Python worker 4.34, of October 2024,
  `PYTHON_ENABLE_OPENTELEMETRY` did the same) makes the worker call `configure_azure_monitor()` itself at its
  start, before the app is imported, with the distro's defaults (every instrumentation, log export, no credential
  passed); the providers it sets cannot be replaced, so the options above would no longer apply. Later workers'
  `PYTHON_ENABLE_OPENTELEMETRY` only makes each invocation's trace context current; the entry points pass it on
  themselves (`context.trace_context`), on every worker version.
- host.json `telemetryMode: OpenTelemetry` (a preview) changes how the host itself reports; Entra ID
  authentication of its exporters came after the mode (the host's sources of October 2024 give them the
  connection string alone), and the component accepts nothing else. The default mode authenticates with
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING on every host version, and hands the worker the same trace context.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from shared.telemetry.recorder import Telemetry
from shared.telemetry.settings import TelemetrySettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

logger = logging.getLogger("mde_alert_gateway.telemetry")

#: The distro's instrumentations, every one turned off.
_INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "httpx", "psycopg2", "requests", "urllib", "urllib3")
#: OpenTelemetry's variable naming the resource detectors to run.
RESOURCE_DETECTORS = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
#: The service name every span and metric carries.
SERVICE = "mde-alert-gateway"
#: How often the console prints the metrics.
CONSOLE_INTERVAL_SECONDS = 10


def start_telemetry(settings: TelemetrySettings) -> Telemetry:
    """The process's Telemetry, as the settings ask (the no-op one when they ask for none, or on failure)."""
    try:
        if settings.connection_string:
            return _azure_monitor(settings)
        if settings.console:
            return _console()
    except Exception:
        logger.exception("telemetry could not be set up; the gateway runs without it")
    return Telemetry()


def _azure_monitor(settings: TelemetrySettings) -> Telemetry:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    credential = ManagedIdentityCredential(client_id=settings.entra_client_id) if settings.entra else None
    # The resource from the app's own environment (App Service variables) alone: the distro's default detectors
    # also ask the VM metadata endpoint, a request off the instance at every start, for nothing on Flex. The
    # distro reads this variable itself (it builds the resource again from it).
    os.environ.setdefault(RESOURCE_DETECTORS, "azure_app_service")
    resource = Resource.create({SERVICE_NAME: SERVICE})
    configure_azure_monitor(connection_string=settings.connection_string, credential=credential, resource=resource,
                            disable_logging=True, enable_live_metrics=False,
                            instrumentation_options={name: {"enabled": False} for name in _INSTRUMENTATIONS})
    logger.info("telemetry: Azure Monitor%s", " (Entra ID)" if settings.entra else "")
    return Telemetry(metrics.get_meter_provider(), trace.get_tracer_provider())


def console_sampler() -> Sampler:
    """Every span, whatever a remote parent's sampled flag says: the host hands each invocation a parent that is
    not marked recorded (localdev.invocation), and the Azure Monitor distro's samplers ignore that flag too (they
    follow a parent in this process only)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    return ParentBased(ALWAYS_ON, remote_parent_sampled=ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)


def _console() -> Telemetry:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr),
                                           export_interval_millis=CONSOLE_INTERVAL_SECONDS * 1000)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    tracer_provider = TracerProvider(resource=Resource.create({SERVICE_NAME: SERVICE}), sampler=console_sampler())
    # Batched off the request's thread, as Azure Monitor's exporter does: what a call pays is the recording alone.
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    logger.info("telemetry: console (TELEMETRY_CONSOLE)")
    return Telemetry(MeterProvider(metric_readers=[reader], resource=Resource.create({SERVICE_NAME: SERVICE})),
                     tracer_provider)
