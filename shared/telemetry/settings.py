"""Where the gateway's telemetry goes: values read and checked by shared.settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TelemetrySettings:
    #: APPLICATIONINSIGHTS_CONNECTION_STRING; None: nothing goes to Application Insights.
    connection_string: str | None = None
    #: From APPLICATIONINSIGHTS_AUTHENTICATION_STRING: send with the managed identity (Entra), and which one.
    entra: bool = False
    entra_client_id: str | None = None
    #: TELEMETRY_CONSOLE: print metrics and spans to the log (local use).
    console: bool = False
