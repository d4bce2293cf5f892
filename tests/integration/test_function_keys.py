"""Function keys are enforced like Azure does: `x-functions-key` header or `code` query."""

from __future__ import annotations

import requests

from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.servers import FUNCTION_KEY, GatewayClient, SimulatorAdmin


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
