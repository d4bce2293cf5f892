"""The telemetry catalogue's metrics by name, for tests that look a metric up by the name a query or alert uses."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from shared.telemetry.catalogue import METRICS, MetricSpec

METRICS_BY_NAME: Mapping[str, MetricSpec] = MappingProxyType({spec.name: spec for spec in METRICS})
