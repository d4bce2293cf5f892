"""The gateway's OpenTelemetry metrics and traces: the catalogue that names them all once, the `Telemetry` that
records them (no-op unless configured), and the start-up that sends them to Azure Monitor or the console."""
