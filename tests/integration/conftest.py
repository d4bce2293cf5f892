"""Shared fixtures: the real servers the tests talk to over loopback HTTP.

Azurite, the Defender simulator and the local Functions hosts run as child processes; the fake
managed-identity endpoint is a real HTTP server on a loopback thread of the test process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from localdev.azurite import Azurite
from localdev.stack import HostProcess, Server, Services, start_host, start_services
from localdev.tokens import ALL_ROLES
from tests.support.servers import (
    FUNCTION_KEY,
    MASTER_KEY,
    GatewayClient,
    HostFactory,
    IdentityAdmin,
    SimulatorAdmin,
)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """Azurite, the Defender simulator (in a process of its own, like Defender: this busy test process never delays
    what it counts) and the managed-identity endpoint, on free ports, for the whole session: started by
    localdev.stack.start_services, as `make run` and the benchmarks start them."""
    with start_services() as started:
        yield started


@pytest.fixture(scope="session")
def azurite(services: Services) -> Azurite:
    return services.azurite


@pytest.fixture(scope="session")
def simulator_server(services: Services) -> Server:
    return services.simulator


@pytest.fixture(scope="session")
def identity_server(services: Services) -> Server:
    return services.identity


@pytest.fixture
def sim(simulator_server: Server) -> SimulatorAdmin:
    """The simulator, reset to its seed data with generous limits and an empty call log."""
    admin = SimulatorAdmin(simulator_server.url)
    admin.reset()
    return admin


@pytest.fixture
def identity(identity_server: Server) -> Iterator[IdentityAdmin]:
    admin = IdentityAdmin(identity_server.url)
    admin.configure(roles=list(ALL_ROLES), fail=False, opaque=False, reset_stats=True)
    yield admin
    admin.configure(roles=list(ALL_ROLES), fail=False, opaque=False)




@pytest.fixture(scope="session")
def host_factory(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFactory]:
    """Start local Functions hosts with extra settings; all are stopped at the end of the session.

    Their logs (`gateway.host.log()`) live in the session's pytest temporary directory.
    """
    started: list[HostProcess] = []
    log_dir = tmp_path_factory.mktemp("host-logs")

    def start(*, unset: tuple[str, ...] = (), **settings: str) -> GatewayClient:
        """A host with these app settings (over the test defaults below); `unset` names settings it lacks."""
        settings.setdefault("LOCAL_MASTER_KEY", MASTER_KEY)
        settings.setdefault("RATE_LIMIT_TABLE", "t" + uuid.uuid4().hex[:20])
        settings.setdefault("RATE_LIMIT_FILE_ALERTS", "5000/1")
        settings.setdefault("RATE_LIMIT_CREATE_ALERT", "5000/1")
        settings.setdefault("RATE_LIMIT_FILE_INFO", "5000/1")
        # Every lookup reaches the simulator unless a test turns the shared answer cache on.
        settings.setdefault("FILE_ALERTS_CACHE_SECONDS", "0")
        # Each host its own queue and operations unless a test shares them. A message in flight is leased for
        # Azure's 10 minutes (LOCAL_QUEUE_LEASE_SECONDS unset), as in Azure.
        settings.setdefault("REQUESTS_QUEUE", "q" + uuid.uuid4().hex[:20])
        settings.setdefault("OPERATIONS_TABLE", "o" + uuid.uuid4().hex[:20])
        settings.setdefault("HISTORY_TABLE", "h" + uuid.uuid4().hex[:20])
        env = services.host_environment(function_key=FUNCTION_KEY, **settings)
        for name in unset:
            env.pop(name, None)
        host = start_host(env, log_path=log_dir / f"host-{len(started) + 1}.log")
        started.append(host)
        return GatewayClient(host)

    yield start
    for host in started:
        host.stop()


@pytest.fixture(scope="session")
def _default_gateway(host_factory: HostFactory) -> GatewayClient:
    return host_factory(MDE_MAX_RETRY_AFTER_SECONDS="2", MDE_READ_TIMEOUT_SECONDS="3", MDE_TOTAL_TIMEOUT_SECONDS="20")


@pytest.fixture
def gateway(_default_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> GatewayClient:
    """The shared local host (short timeouts for fault tests), with simulator and identity reset."""
    return _default_gateway
