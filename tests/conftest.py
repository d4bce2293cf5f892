"""Shared fixtures: the real servers the tests talk to over loopback HTTP.

Azurite and the local Functions host run as child processes; the Defender simulator and the
fake managed-identity endpoint are real HTTP servers on loopback threads of the test process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from localdev.azurite import Azurite, start_azurite
from localdev.identity_endpoint import IdentityEndpoint
from localdev.servers import RunningServer, serve_in_thread
from localdev.simulator.app import Simulator
from localdev.stack import IDENTITY_SECRET, HostProcess, host_environment, start_host

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


class Gateway:
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
        data = body if isinstance(body, bytes | str) else __import__("json").dumps(body)
        return requests.post(f"{self.url}/api/alerts/CreateAlertByReference", data=data, headers=headers,
                             timeout=60, **kwargs)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite for the whole test session, on free ports."""
    server = start_azurite()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[RunningServer]:
    server = serve_in_thread(Simulator(), name="simulator")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def identity_server() -> Iterator[RunningServer]:
    server = serve_in_thread(IdentityEndpoint(IDENTITY_SECRET), name="identity")
    yield server
    server.stop()


@pytest.fixture
def sim(simulator_server: RunningServer) -> SimulatorAdmin:
    """The simulator, reset to its seed data with generous limits and an empty call log."""
    admin = SimulatorAdmin(simulator_server.url)
    admin.reset()
    return admin


@pytest.fixture
def identity(identity_server: RunningServer) -> Iterator[IdentityAdmin]:
    admin = IdentityAdmin(identity_server.url)
    admin.configure(roles=["Alert.Read.All", "Alert.ReadWrite.All"], fail=False, reset_stats=True)
    yield admin
    admin.configure(roles=["Alert.Read.All", "Alert.ReadWrite.All"], fail=False)


HostFactory = Callable[..., Gateway]


@pytest.fixture(scope="session")
def host_factory(azurite: Azurite, simulator_server: RunningServer, identity_server: RunningServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFactory]:
    """Start local Functions hosts with extra settings; all are stopped at the end of the session.

    Their logs (`gateway.host.log()`) live in the session's pytest temporary directory.
    """
    started: list[HostProcess] = []
    log_dir = tmp_path_factory.mktemp("host-logs")

    def start(**settings: str) -> Gateway:
        settings.setdefault("RATE_LIMIT_TABLE", "t" + uuid.uuid4().hex[:20])
        settings.setdefault("RATE_LIMIT_FILE_ALERTS", "5000/1")
        settings.setdefault("RATE_LIMIT_CREATE_ALERT", "5000/1")
        env = host_environment(simulator_url=simulator_server.url, identity_url=identity_server.url,
                               storage_connection=azurite.connection_string, function_key=FUNCTION_KEY, **settings)
        host = start_host(env, log_path=log_dir / f"host-{len(started) + 1}.log")
        started.append(host)
        return Gateway(host)

    yield start
    for host in started:
        host.stop()


@pytest.fixture(scope="session")
def _default_gateway(host_factory: HostFactory) -> Gateway:
    return host_factory(MDE_MAX_RETRY_AFTER_SECONDS="2", MDE_READ_TIMEOUT_SECONDS="3", MDE_TOTAL_TIMEOUT_SECONDS="20")


@pytest.fixture
def gateway(_default_gateway: Gateway, sim: SimulatorAdmin, identity: IdentityAdmin) -> Gateway:
    """The shared local host (short timeouts for fault tests), with simulator and identity reset."""
    return _default_gateway
