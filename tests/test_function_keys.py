"""Function keys are enforced like Azure does: `x-functions-key` header or `code` query."""

from __future__ import annotations

import requests

from localdev.simulator.data import SEED_FILE_SHA1
from tests.conftest import HostFactory
from tests.support import FUNCTION_KEY, GatewayClient, SimulatorAdmin


def url(gateway: GatewayClient) -> str:
    return f"{gateway.url}/api/files/{SEED_FILE_SHA1}/alerts"


def test_no_key_is_401_and_nothing_reaches_defender(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    assert requests.get(url(gateway), timeout=10).status_code == 401
    assert sim.calls() == []


def test_wrong_key_is_401(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    assert requests.get(url(gateway), headers={"x-functions-key": "nope"}, timeout=10).status_code == 401
    assert requests.get(url(gateway), params={"code": FUNCTION_KEY + "x"}, timeout=10).status_code == 401
    assert sim.calls() == []


def test_key_in_header_or_query(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    assert requests.get(url(gateway), headers={"x-functions-key": FUNCTION_KEY}, timeout=10).status_code == 200
    assert requests.get(url(gateway), params={"code": FUNCTION_KEY}, timeout=10).status_code == 200


def test_unknown_route_is_404(gateway: GatewayClient) -> None:
    assert requests.get(f"{gateway.url}/api/nothing", timeout=10).status_code == 404


def test_entra_mode_needs_no_key_but_a_client_principal(host_factory: HostFactory, sim: SimulatorAdmin) -> None:
    gateway = host_factory(GATEWAY_AUTH="entra")
    anonymous = requests.get(url(gateway), timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")
    signed_in = requests.get(url(gateway), headers={"X-MS-CLIENT-PRINCIPAL-ID": "logic-app-mi"}, timeout=10)
    assert signed_in.status_code == 200
    gateway.host.stop()


def test_bad_base_url_refuses_to_start(host_factory: HostFactory) -> None:
    try:
        host_factory(MDE_BASE_URL="https://attacker.example.com")
    except RuntimeError as error:
        assert "not a Defender for Endpoint API host" in str(error)
    else:
        raise AssertionError("the host started with a base URL off the allowlist")


def test_unusable_storage_refuses_to_start(host_factory: HostFactory) -> None:
    """A bad storage setting stops start-up too, instead of a 500 on the first call."""
    try:
        host_factory(AzureWebJobsStorage="AccountName=x;no key, no endpoint")
    except RuntimeError as error:
        assert "AzureWebJobsStorage is not a usable connection string" in str(error)
    else:
        raise AssertionError("the host started with an unusable storage connection string")
