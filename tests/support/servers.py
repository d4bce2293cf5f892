"""Clients of the real servers the integration tests talk to over loopback: the simulator's and the identity
endpoint's admin, the gateway's HTTP client and its request queue, and the assertions on their answers.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from localdev.functions_host import DEFAULT_LOCAL_AUDIENCE
from localdev.stack import HostProcess, Services

FUNCTION_KEY = "test-function-key"
#: The test hosts' master key (LOCAL_MASTER_KEY): the operator routes (auth level admin) take it alone.
MASTER_KEY = "test-master-key"


def entra_bearer(services: Services, object_id: str, app_id: str, roles: tuple[str, ...], *,
                 audience: str = DEFAULT_LOCAL_AUDIENCE, **claims: Any) -> dict[str, str]:
    """`Authorization: Bearer` with a caller's token from the local token endpoint (the issuer whose published keys
    the test hosts' GATEWAY_TOKEN_ISSUER names): a playbook's managed identity holding `roles` of the gateway."""
    token = services.tokens.caller_token(object_id, app_id=app_id, roles=roles, audience=audience, **claims)
    return {"Authorization": f"Bearer {token}"}


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

    def held(self) -> int:
        """How many requests a latency fault holds now: arrived at the simulator, not answered yet."""
        held: int = requests.get(f"{self.url}/_sim/calls", timeout=5).json()["held"]
        return held

    def wait_for_calls(self, count: int, api: str | None = None, *, timeout: float = 15) -> list[dict[str, Any]]:
        """The call log once it holds `count` calls: a delayed answer is logged when it is done, and must not
        land in the next test's log."""
        deadline = time.monotonic() + timeout
        while len(calls := self.calls(api)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return calls

    def add_alert(self, *, tenant: str | None = None, **fields: Any) -> dict[str, Any]:
        """An alert in the home tenant's data, or in `tenant`'s (each tenant's data is its own)."""
        response = requests.post(f"{self.url}/_sim/alerts", json=fields, params={"tenant": tenant} if tenant else None,
                                 timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def add_event(self, **fields: Any) -> None:
        requests.post(f"{self.url}/_sim/events", json=fields, timeout=5).raise_for_status()

    def add_file(self, **fields: Any) -> dict[str, Any]:
        """POST /_sim/files: a file entity (sha1 required) that Get file information finds by SHA-1 or SHA-256."""
        response = requests.post(f"{self.url}/_sim/files", json=fields, timeout=5)
        response.raise_for_status()
        return dict(response.json())


class IdentityAdmin:
    def __init__(self, url: str) -> None:
        self.url = url

    def configure(self, **config: Any) -> None:
        requests.post(f"{self.url}/_identity/config", json=config, timeout=5).raise_for_status()

    def issued(self) -> list[dict[str, str]]:
        return list(requests.get(f"{self.url}/_identity/stats", timeout=5).json()["issued"])


class GatewayClient:
    """An HTTP client for a running local host."""

    def __init__(self, host: HostProcess, key: str = FUNCTION_KEY, master_key: str = MASTER_KEY) -> None:
        self.host = host
        self.url = host.url
        self.key = key
        self.master_key = master_key

    def get_alerts(self, sha1: str, **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": self.key, **kwargs.pop("headers", {})}
        return requests.get(f"{self.url}/api/files/{sha1}/alerts", headers=headers, timeout=60, **kwargs)

    def create(self, body: Any, *, content_type: str = "application/json", **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": self.key, "Content-Type": content_type, **kwargs.pop("headers", {})}
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return requests.post(f"{self.url}/api/alerts/CreateAlertByReference", data=data, headers=headers,
                             timeout=60, **kwargs)

    def get(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        """GET an absolute URL of this host (a Location) or a path under it, with the function key."""
        url = path_or_url if path_or_url.startswith("http") else f"{self.url}{path_or_url}"
        headers = {"x-functions-key": self.key, **kwargs.pop("headers", {})}
        return requests.get(url, headers=headers, timeout=60, **kwargs)

    def wait_for_operation(self, location: str, *, timeout: float = 60, queued: bool = False,
                           headers: Mapping[str, str] | None = None) -> requests.Response:
        """Poll an operation until it is no longer 202 (the answer), or fail after `timeout` seconds.

        `queued`: the operation comes from a queue message, so it is 404 until the worker has taken it. `headers`:
        sent along (an Entra caller's bearer token).
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(location, headers=dict(headers or {}))
            if response.status_code != 202 and not (queued and response.status_code == 404):
                return response
            if time.monotonic() > deadline:
                raise AssertionError(f"operation {location} still pending after {timeout} s: {response.text}\n"
                                     f"the host's last warnings and errors:\n{self.host_warnings()}")
            time.sleep(0.2)

    def host_warnings(self, last: int = 12) -> str:
        """The host log's `last` WARNING and ERROR lines (cut to 300 characters each): what a failed wait shows, for
        CI prints the test's output and not the host's log."""
        lines = [line[:300] for line in self.host.log().splitlines() if " WARNING " in line or " ERROR " in line]
        return "\n".join(lines[-last:]) or "(none)"


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


class RequestQueue:
    """The gateway's request queue (and its poison queue, and reply queues) in Azurite, as a producer sees them."""

    def __init__(self, connection_string: str, name: str) -> None:
        from azure.storage.queue import QueueServiceClient

        self.service = QueueServiceClient.from_connection_string(connection_string)
        self.name = name

    def put(self, message: Mapping[str, Any] | str) -> None:
        client = self.service.get_queue_client(self.name)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        client.send_message(message if isinstance(message, str) else json.dumps(message))

    def drain(self, queue: str, *, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Take `count` JSON messages off `queue` (failing after `timeout` seconds)."""
        client = self.service.get_queue_client(queue)
        taken: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(taken) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{queue}: {len(taken)} of {count} messages after {timeout} s: {taken}")
            try:
                messages = list(client.receive_messages(max_messages=32, visibility_timeout=30))
            except ResourceNotFoundError:
                messages = []
            for message in messages:
                taken.append(json.loads(message.content))
                client.delete_message(message)
            if not messages:
                time.sleep(0.2)
        return taken

    def depth(self, queue: str) -> int:
        try:
            return self.service.get_queue_client(queue).get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0


#: What the `host_factory` fixture gives: start a local Functions host with these app settings.
HostFactory = Callable[..., GatewayClient]
