"""Helpers the tests share: admin clients of the local servers, an HTTP client of the gateway, request
bodies and assertions, a hand-driven clock. The one module tests import helpers from (besides fixtures).
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from localdev.simulator.data import SEED_EVENT
from localdev.stack import HostProcess
from shared.ratelimit import RatePolicy, parse_windows

FUNCTION_KEY = "test-function-key"
# Test limits high enough that only the rate-limit tests meet them.
GENEROUS_LIMITS: dict[str, list[list[float]]] = {"file_alerts": [[100000, 60]], "create_alert": [[100000, 60]]}


class SimulatorAdmin:
    """The simulator's /_sim/ admin API, over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self, limits: dict[str, list[list[float]]] | None = GENEROUS_LIMITS) -> None:
        requests.post(f"{self.url}/_sim/reset", timeout=5).raise_for_status()
        if limits:
            requests.post(f"{self.url}/_sim/limits", json=limits, timeout=5).raise_for_status()

    def fault(self, kind: str, **options: Any) -> None:
        requests.post(f"{self.url}/_sim/faults", json={"kind": kind, **options}, timeout=5).raise_for_status()

    def calls(self, api: str | None = None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = requests.get(f"{self.url}/_sim/calls", timeout=5).json()["calls"]
        return [c for c in calls if api is None or c["api"] == api]

    def wait_for_calls(self, count: int, api: str | None = None, *, timeout: float = 15) -> list[dict[str, Any]]:
        """The call log once it holds `count` calls: a delayed answer is logged when it is done, and must not
        land in the next test's log."""
        deadline = time.monotonic() + timeout
        while len(calls := self.calls(api)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return calls

    def add_alert(self, **fields: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_sim/alerts", json=fields, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def add_event(self, **fields: Any) -> None:
        requests.post(f"{self.url}/_sim/events", json=fields, timeout=5).raise_for_status()


class IdentityAdmin:
    def __init__(self, url: str) -> None:
        self.url = url

    def configure(self, **config: Any) -> None:
        requests.post(f"{self.url}/_identity/config", json=config, timeout=5).raise_for_status()

    def issued(self) -> list[dict[str, str]]:
        return list(requests.get(f"{self.url}/_identity/stats", timeout=5).json()["issued"])


class GatewayClient:
    """An HTTP client for a running local host."""

    def __init__(self, host: HostProcess, key: str = FUNCTION_KEY) -> None:
        self.host = host
        self.url = host.url
        self.key = key

    def get_alerts(self, sha1: str, **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": self.key, **kwargs.pop("headers", {})}
        return requests.get(f"{self.url}/api/files/{sha1}/alerts", headers=headers, timeout=60, **kwargs)

    def create(self, body: Any, *, content_type: str = "application/json", **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": self.key, "Content-Type": content_type, **kwargs.pop("headers", {})}
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return requests.post(f"{self.url}/api/alerts/CreateAlertByReference", data=data, headers=headers,
                             timeout=60, **kwargs)


VALID = {"machineId": SEED_EVENT["machineId"], "severity": "Low", "title": "validation test",
         "description": "example alert", "recommendedAction": "nothing", "eventTime": SEED_EVENT["eventTime"],
         "reportId": SEED_EVENT["reportId"], "category": "Exploit"}


def assert_problem(response: requests.Response, status: int, *fields: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status
    assert response.headers["X-Correlation-ID"] == problem["correlationId"]
    if fields:
        assert sorted(e["field"] for e in problem["errors"]) == sorted(fields)
    return problem


def assert_no_upstream_call(sim: SimulatorAdmin) -> None:
    assert sim.calls() == []


class FakeClock:
    """A clock the test moves by hand (epoch seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def policy(text: str, api: str = "file_alerts") -> RatePolicy:
    return RatePolicy(api, parse_windows(text))
