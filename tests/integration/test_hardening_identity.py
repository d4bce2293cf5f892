"""An unreachable or failing identity endpoint, over HTTP through a local host: a clear 502 naming what failed, with
Retry-After, never a 500; and once the endpoint is back, 200 again."""

from __future__ import annotations

import time

import requests

from localdev.identity_endpoint import IDENTITY_PATH, IdentityEndpoint
from localdev.processes import free_port
from localdev.servers import RunningServer, serve_in_thread
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import IDENTITY_SECRET
from tests.support.inputs import VALID
from tests.support.servers import GatewayClient, HostFactory, IdentityAdmin, SimulatorAdmin, assert_problem


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


def _until_answered(gateway: GatewayClient, deadline_seconds: float) -> requests.Response:
    """Ask until the gateway answers other than 502, or the deadline passes (the last answer either way)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        answer = gateway.get_alerts(SEED_FILE_SHA1)
        if answer.status_code != 502 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)  # a poll interval, not a wait for the backoff: the condition decides


def test_an_identity_endpoint_that_was_down_is_asked_again_and_recovers(host_factory: HostFactory) -> None:
    """Down, then up: first a 502 saying the endpoint could not be reached, with Retry-After; once it is up the
    gateway asks it again after its backoff (not remembered for ever) and answers 200."""
    port = free_port()
    gateway = host_factory(IDENTITY_ENDPOINT=f"http://127.0.0.1:{port}{IDENTITY_PATH}")
    endpoint: RunningServer | None = None
    try:
        first = gateway.get_alerts(SEED_FILE_SHA1)
        problem = assert_problem(first, 502)
        assert problem["type"].endswith(":identity-unavailable")
        assert "could not be reached" in problem["detail"] and "configuration not found" not in problem["detail"]
        assert int(first.headers["Retry-After"]) >= 1
        endpoint = serve_in_thread(IdentityEndpoint(IDENTITY_SECRET), port)
        assert _until_answered(gateway, 90).status_code == 200
    finally:
        gateway.host.stop()
        if endpoint is not None:
            endpoint.stop()


def test_an_identity_endpoint_that_failed_is_named_and_recovers(host_factory: HostFactory,
                                                                identity: IdentityAdmin) -> None:
    """It answers 500, then recovers: a 502 saying so (not "configuration not found"), with Retry-After, no token in
    it; then 200 once the backoff lets the gateway ask again. A host of its own: the shared one may hold a token
    from an earlier test, which azure-identity would rightly use without asking the endpoint."""
    gateway = host_factory()
    try:
        _fails_then_recovers(gateway, identity)
    finally:
        gateway.host.stop()


def _fails_then_recovers(gateway: GatewayClient, identity: IdentityAdmin) -> None:
    identity.configure(fail=True)
    first = gateway.get_alerts(SEED_FILE_SHA1)
    problem = assert_problem(first, 502)
    assert "answered HTTP 500" in problem["detail"] and "configuration not found" not in problem["detail"]
    assert int(first.headers["Retry-After"]) >= 1 and "Bearer" not in first.text
    asked = len(identity.issued())
    again = gateway.get_alerts(SEED_FILE_SHA1)  # within the backoff: answered from memory, not asked again
    assert again.status_code == 502 and "Retry-After" in again.headers and len(identity.issued()) == asked
    identity.configure(fail=False)
    assert _until_answered(gateway, 90).status_code == 200
