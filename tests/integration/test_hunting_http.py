"""Advanced hunting through a local Functions host, over loopback: the simulator stands in for Microsoft Graph's
runHuntingQuery (its token audience, KQL subset, error bodies and CPU block), the real azure-identity path asks the
local identity endpoint for Graph's token, and the rate-limit state lives in Azurite.

What a caller sees: Defender's shape on Defender's paths, Graph's on Graph's, a customer tenant's events on its
route; a bad body refused with nothing sent to Graph (the simulator's call log); a query Graph rejects is a 400
naming Graph's message; a CPU 429 is a 429 with Retry-After, and the next call is refused without reaching Graph.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import LOCAL_CUSTOMER_NAME, LOCAL_CUSTOMER_TENANT, many_tenants
from tests.support.servers import GatewayClient, HostFactory, SimulatorAdmin, assert_problem

QUERY = (f'DeviceFileEvents | where SHA1 == "{SEED_FILE_SHA1}" | project Timestamp, DeviceId, ReportId, FileName '
         "| order by Timestamp desc | take 5")
HUNTING_POLICY = '"60s";q=45;w=60, "3600s";q=1500;w=3600'


@pytest.fixture(scope="module")
def hunting_gateway(host_factory: HostFactory) -> GatewayClient:
    """A host of its own (its own rate-limit table: a CPU block it records stays its own), serving contoso too."""
    return host_factory(**many_tenants())


def hunt(gateway: GatewayClient, path: str, body: Any, **headers: str) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{gateway.url}/api/{path}", data=data, timeout=60,
                         headers={"x-functions-key": gateway.key, "Content-Type": "application/json", **headers})


def test_defenders_path_answers_in_defenders_shape(hunting_gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    for path in ("advancedqueries/run", "advancedhunting/run"):
        response = hunt(hunting_gateway, path, {"Query": QUERY})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert list(answer) == ["Stats", "Schema", "Results"]
        assert [column["Name"] for column in answer["Schema"]] == ["Timestamp", "DeviceId", "ReportId", "FileName"]
        assert answer["Results"] and all(len(row["DeviceId"]) == 40 for row in answer["Results"])
        statistics = answer["Stats"]["dataset_statistics"]
        assert statistics[0]["table_row_count"] == len(answer["Results"]) and answer["Stats"]["ExecutionTime"] >= 0
        assert response.headers["RateLimit-Policy"] == HUNTING_POLICY
    calls = sim.calls("hunting")
    assert [(call["path"], json.loads(call["body"])) for call in calls] == [
        ("/v1.0/security/runHuntingQuery", {"Query": QUERY})] * 2


def test_graphs_path_answers_in_graphs_shape_with_its_timespan(hunting_gateway: GatewayClient,
                                                               sim: SimulatorAdmin) -> None:
    response = hunt(hunting_gateway, "security/runHuntingQuery", {"Query": QUERY, "Timespan": "P30D"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {"@odata.context", "schema", "results"} <= set(answer) and answer["results"]
    assert answer["schema"][0] == {"name": "Timestamp", "type": "DateTime"}
    (call,) = sim.calls("hunting")
    assert json.loads(call["body"]) == {"Query": QUERY, "Timespan": "P30D"}


def test_a_customer_tenants_route_hunts_in_that_tenant(hunting_gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    requests.post(f"{sim.url}/_sim/hunting/events", params={"tenant": LOCAL_CUSTOMER_TENANT}, timeout=5,
                  json={"sha1": "a" * 40, "count": 2, "fileName": "contoso-only.exe"}).raise_for_status()
    query = 'DeviceFileEvents | where SHA1 == "' + "a" * 40 + '" | project FileName, ReportId'
    response = hunt(hunting_gateway, f"tenants/{LOCAL_CUSTOMER_NAME}/advancedqueries/run", {"Query": query})
    assert response.status_code == 200, response.text
    assert [row["FileName"] for row in response.json()["Results"]] == ["contoso-only.exe"] * 2
    home = hunt(hunting_gateway, "security/runHuntingQuery", {"Query": query})
    assert home.status_code == 200 and home.json()["results"] == []  # the home tenant has no such events
    callers = [call["caller"] for call in sim.calls("hunting")]
    assert callers[0].startswith(f"{LOCAL_CUSTOMER_TENANT}|") and not callers[1].startswith(LOCAL_CUSTOMER_TENANT)


@pytest.mark.parametrize(("path", "body", "fields"), [
    ("advancedqueries/run", {"Query": "  "}, ("body.Query",)),
    ("advancedqueries/run", {"Query": QUERY, "Timespan": "P7D"}, ("body.Timespan",)),
    ("security/runHuntingQuery", {"Query": QUERY, "Timespan": "last week"}, ("body.Timespan",)),
    ("security/runHuntingQuery", {"Query": "x" * 30_001}, ("body.Query",)),
    (f"tenants/{LOCAL_CUSTOMER_NAME}/security/runHuntingQuery", {"Querry": QUERY}, ("body.Querry", "body.Query")),
])
def test_validation_spends_nothing(hunting_gateway: GatewayClient, sim: SimulatorAdmin, path: str, body: Any,
                                   fields: tuple[str, ...]) -> None:
    document = assert_problem(hunt(hunting_gateway, path, body), 400, *fields)
    assert document["type"].endswith(":validation-error")
    assert sim.calls() == []


def test_a_query_graph_rejects_is_400_naming_graphs_message(hunting_gateway: GatewayClient,
                                                             sim: SimulatorAdmin) -> None:
    response = hunt(hunting_gateway, "advancedqueries/run", {"Query": "DeviceFileEvents | wher SHA1 == 'x'"})
    document = assert_problem(response, 400)
    assert document["type"].endswith(":hunting-query-rejected")
    (call,) = sim.calls("hunting")
    assert call["status"] == 400
    message = document["upstreamError"]["message"]
    assert message and message in document["detail"] and "wher" in message


def test_a_cpu_429_is_429_and_the_next_call_is_refused_without_reaching_graph(host_factory: HostFactory,
                                                                               sim: SimulatorAdmin) -> None:
    gateway = host_factory()  # its own rate-limit table: the block it records holds no other test's calls
    blocked = requests.post(f"{sim.url}/_sim/hunting/cpu", json={"exhaust": True}, timeout=5).json()
    first = hunt(gateway, "security/runHuntingQuery", {"Query": QUERY})
    document = assert_problem(first, 429)
    assert document["type"].endswith(":hunting-cpu-exhausted") and blocked["until"] in document["detail"]
    wait = int(first.headers["Retry-After"])
    assert 0 < wait <= 15 * 60
    assert len(sim.calls("hunting")) == 1

    requests.post(f"{sim.url}/_sim/hunting/cpu", json={"exhaust": False}, timeout=5).raise_for_status()
    again = hunt(gateway, "advancedqueries/run", {"Query": QUERY})
    assert assert_problem(again, 429)["type"].endswith(":hunting-cpu-exhausted")
    assert 0 < int(again.headers["Retry-After"]) <= wait
    assert len(sim.calls("hunting")) == 1  # held by the gateway: Graph never saw it


def test_with_sharing_an_identical_query_is_answered_with_its_age_and_the_graph_calls_time(
        host_factory: HostFactory, sim: SimulatorAdmin) -> None:
    """HUNTING_SHARE_SECONDS > 0: the second identical query is answered from the shared answer in Azurite (one Graph
    call in the simulator's log), with `Age` as a shared file lookup, and the Stats of the call that got it."""
    gateway = host_factory(HUNTING_SHARE_SECONDS="60")
    first = hunt(gateway, "advancedqueries/run", {"Query": QUERY})
    shared = hunt(gateway, "advancedqueries/run", {"Query": QUERY})
    assert first.status_code == shared.status_code == 200, shared.text
    assert len(sim.calls("hunting")) == 1
    assert first.headers["Age"] == "0" and int(shared.headers["Age"]) >= 0
    assert first.headers["Cache-Control"] == shared.headers["Cache-Control"] == "private, max-age=60"
    assert "RateLimit" not in shared.headers  # no slot was taken for it
    assert shared.json() == first.json()  # Results, and Stats.ExecutionTime of the one Graph call
    fresh = hunt(gateway, "advancedqueries/run", {"Query": QUERY}, **{"Cache-Control": "no-cache"})
    assert fresh.status_code == 200 and len(sim.calls("hunting")) == 2
