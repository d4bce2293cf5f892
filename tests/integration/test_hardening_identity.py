"""An unreachable identity endpoint, over HTTP through a local host: a clear 502, never a 500."""

from __future__ import annotations

from localdev.processes import free_port
from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.inputs import VALID
from tests.support.servers import HostFactory, SimulatorAdmin, assert_problem


def test_unreachable_identity_endpoint_is_a_502_problem(host_factory: HostFactory, sim: SimulatorAdmin) -> None:
    gateway = host_factory(IDENTITY_ENDPOINT=f"http://127.0.0.1:{free_port()}/msi/token")
    try:
        for response in (gateway.get_alerts(SEED_FILE_SHA1), gateway.create(VALID)):
            problem = assert_problem(response, 502)
            assert problem["type"].endswith(":identity-unavailable")
            assert "could not get a token" in problem["detail"]
            assert "Bearer" not in response.text
        assert sim.calls() == []
    finally:
        gateway.host.stop()
