"""The simulator's Microsoft Graph runHuntingQuery (`POST /v1.0/security/runHuntingQuery`), over loopback HTTP, as the
gateway's tests rely on it (docs/local-development.md): Graph's token audience and role, Graph's error body, the calls
limit's 429 with Retry-After, the CPU switch, the timeout, `Timespan`, generated events, each tenant's own data, and
an event it hunted being one that Create alert by reference accepts, exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from localdev.identity_endpoint import IDENTITY_PATH
from localdev.simulator.app import COMMERCIAL_AUDIENCE
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.simulator.hunting import CPU_MESSAGE, SIZE_MESSAGE, TIMEOUT_MESSAGE
from localdev.stack import IDENTITY_SECRET, Server
from localdev.tokens import ALL_ROLES, LOCAL_TENANT_ID, issue_token
from shared.defender.clouds import GLOBAL_GRAPH
from shared.defender.facts import CREATE_ALERT_PATH, GRAPH_HUNTING_PATH, HUNTING_CPU_CYCLE_SECONDS
from tests.support.servers import IdentityAdmin, SimulatorAdmin

CUSTOMER = "0d6d9b5e-6c1f-4c36-9d5f-5b1e2f3a4c5d"
SEED_QUERY = (f'DeviceFileEvents | where SHA1 == "{SEED_FILE_SHA1}" | project Timestamp, ReportId, DeviceId, '
              "DeviceName | order by Timestamp asc")


def graph_bearer(*, roles: tuple[str, ...] = ALL_ROLES, audience: str = GLOBAL_GRAPH,
                 tenant: str = LOCAL_TENANT_ID) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(audience, roles=roles, tenant_id=tenant)[0]}"}


def hunt(sim: SimulatorAdmin, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{sim.url}{GRAPH_HUNTING_PATH}", json=body,
                         headers=graph_bearer() if headers is None else headers, timeout=10)


def graph_error(response: requests.Response, status: int, code: str) -> str:
    """The message of Graph's error answer (`{"error": {"code", "message", "innerError"}}`), once its shape holds."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    message: str = error["message"]
    return message


def create_for(sim: SimulatorAdmin, event: dict[str, Any], *, tenant: str = LOCAL_TENANT_ID) -> requests.Response:
    body = {"eventTime": event["Timestamp"], "reportId": str(event["ReportId"]), "machineId": event["DeviceId"],
            "severity": "Medium", "title": "Hunted file", "description": "found by advanced hunting",
            "recommendedAction": "isolate", "category": "Malware"}
    token = issue_token(COMMERCIAL_AUDIENCE, tenant_id=tenant)[0]
    return requests.post(f"{sim.url}{CREATE_ALERT_PATH}", json=body, headers={"Authorization": f"Bearer {token}"},
                         timeout=10)


def add_events(sim: SimulatorAdmin, tenant: str | None = None, **payload: Any) -> list[dict[str, Any]]:
    response = requests.post(f"{sim.url}/_sim/hunting/events", json=payload,
                             params={"tenant": tenant} if tenant else None, timeout=30)
    assert response.status_code == 201, response.text
    rows: list[dict[str, Any]] = response.json()["results"]
    return rows


def test_a_token_from_the_identity_endpoint_for_graph_runs_a_query(monkeypatch: pytest.MonkeyPatch,
                                                                   identity_server: Server, identity: IdentityAdmin,
                                                                   sim: SimulatorAdmin) -> None:
    """The real azure-identity path: the local identity endpoint grants ThreatHunting.Read.All by default and issues
    a token for Graph's resource, which the simulator's Graph takes; the answer is Graph's shape, the seed's rows."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity_server.url + IDENTITY_PATH)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_SECRET)
    token = ManagedIdentityCredential().get_token(f"{GLOBAL_GRAPH}/.default").token
    response = hunt(sim, {"Query": SEED_QUERY}, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["@odata.context"] == (f"{GLOBAL_GRAPH}/v1.0/$metadata"
                                          "#microsoft.graph.security.huntingQueryResults")
    assert document["schema"] == [{"name": "Timestamp", "type": "DateTime"}, {"name": "ReportId", "type": "Int64"},
                                  {"name": "DeviceId", "type": "String"}, {"name": "DeviceName", "type": "String"}]
    assert [(r["ReportId"], r["DeviceName"]) for r in document["results"]] == [
        (7101, "ws-0042.contoso.com"), (7103, "fs-01.contoso.com")]
    assert identity.issued()[-1]["resource"] == GLOBAL_GRAPH
    [call] = sim.calls("hunting")
    assert (call["path"], call["status"], json.loads(call["body"])) == (GRAPH_HUNTING_PATH, 200, {"Query": SEED_QUERY})


def test_a_hunted_event_is_one_create_alert_by_reference_accepts_exactly(sim: SimulatorAdmin) -> None:
    results = hunt(sim, {"Query": SEED_QUERY}).json()["results"]
    assert results and all(len(r["Timestamp"]) == len("2026-12-06T10:00:00.1234567Z") for r in results)
    created = create_for(sim, results[0])
    assert created.status_code == 200, created.text
    assert created.json()["machineId"] == results[0]["DeviceId"]
    assert created.json()["evidence"][0]["sha1"] == SEED_FILE_SHA1
    made_up = [dict(results[0], ReportId=results[0]["ReportId"] + 1),
               dict(results[0], Timestamp=results[0]["Timestamp"][:-2] + str(9 - int(results[0]["Timestamp"][-2]))
                    + "Z"),
               dict(results[0], DeviceId=results[1]["DeviceId"])]
    for event in made_up:
        response = create_for(sim, event)
        assert response.status_code == 404, event
        assert response.json()["error"]["code"] == "ResourceNotFound"


@pytest.mark.parametrize(("headers", "status", "code", "message"), [
    ({}, 401, "InvalidAuthenticationToken", "Access token is empty."),
    ({"Authorization": "Bearer not-a-token"}, 401, "InvalidAuthenticationToken", "Access token validation failure."),
    (graph_bearer(audience=COMMERCIAL_AUDIENCE), 401, "InvalidAuthenticationToken",
     "Access token validation failure. Invalid audience."),
    (graph_bearer(roles=("Alert.Read.All", "Alert.ReadWrite.All", "File.Read.All")), 403,
     "Authorization_RequestDenied", "Insufficient privileges to complete the operation. Required application "
                                    "permission: ThreatHunting.Read.All."),
], ids=["no token", "not a token", "defender audience", "no hunting role"])
def test_graph_refuses_a_token_that_is_not_for_it_or_lacks_the_role(sim: SimulatorAdmin, headers: dict[str, str],
                                                                   status: int, code: str, message: str) -> None:
    assert graph_error(hunt(sim, {"Query": SEED_QUERY}, headers), status, code) == message


def test_a_graph_token_is_refused_by_defenders_own_apis(sim: SimulatorAdmin) -> None:
    response = requests.get(f"{sim.url}/api/files/{SEED_FILE_SHA1}/alerts", headers=graph_bearer(), timeout=10)
    assert response.status_code == 403
    assert "Invalid audience" in response.json()["error"]["message"]


def test_the_calls_limit_is_a_429_naming_its_window_with_retry_after(sim: SimulatorAdmin) -> None:
    for _ in range(45):
        assert hunt(sim, {"Query": "DeviceEvents | take 1"}).status_code == 200
    refused = hunt(sim, {"Query": "DeviceEvents | take 1"})
    message = graph_error(refused, 429, "TooManyRequests")
    assert message == "API calls quota exceeded! maximum allowed 45 per 00:01:00"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # Another tenant (or application) has its own budget.
    assert hunt(sim, {"Query": "DeviceEvents | take 1"}, graph_bearer(tenant=CUSTOMER)).status_code == 200


def test_the_hour_window_is_named_as_graph_names_it(sim: SimulatorAdmin) -> None:
    requests.post(f"{sim.url}/_sim/limits", json={"hunting": [[45, 60], [2, 3600]]}, timeout=5).raise_for_status()
    for _ in range(2):
        assert hunt(sim, {"Query": "DeviceEvents | take 1"}).status_code == 200
    refused = hunt(sim, {"Query": "DeviceEvents | take 1"})
    assert graph_error(refused, 429, "TooManyRequests") == "API calls quota exceeded! maximum allowed 2 per 01:00:00"
    assert int(refused.headers["Retry-After"]) > 60


def test_exhausted_cpu_blocks_the_tenants_queries_until_the_next_cycle(sim: SimulatorAdmin) -> None:
    switched = requests.post(f"{sim.url}/_sim/hunting/cpu", json={"exhaust": True}, timeout=5)
    assert switched.status_code == 200, switched.text
    until = datetime.strptime(switched.json()["until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    now = datetime.now(UTC)
    assert until.timestamp() % HUNTING_CPU_CYCLE_SECONDS == 0
    assert now < until <= now + timedelta(seconds=HUNTING_CPU_CYCLE_SECONDS)
    for _ in range(2):  # every query, until then
        refused = hunt(sim, {"Query": SEED_QUERY})
        assert graph_error(refused, 429, "TooManyRequests") == CPU_MESSAGE.format(until=switched.json()["until"])
        assert "Retry-After" not in refused.headers
    assert hunt(sim, {"Query": SEED_QUERY}, graph_bearer(tenant=CUSTOMER)).status_code == 200  # per tenant
    requests.post(f"{sim.url}/_sim/hunting/cpu", json={"exhaust": False}, timeout=5).raise_for_status()
    assert hunt(sim, {"Query": SEED_QUERY}).status_code == 200
    assert [c["status"] for c in sim.calls("hunting")] == [429, 429, 200, 200]


def test_the_cpu_switch_can_name_another_time_or_none_and_send_retry_after(sim: SimulatorAdmin) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests.post(f"{sim.url}/_sim/hunting/cpu", params={"tenant": CUSTOMER}, timeout=5,
                  json={"exhaust": True, "until": later}).raise_for_status()
    refused = hunt(sim, {"Query": SEED_QUERY}, graph_bearer(tenant=CUSTOMER))
    assert graph_error(refused, 429, "TooManyRequests").endswith(f"Queries are blocked until {later}.")
    requests.post(f"{sim.url}/_sim/hunting/cpu", timeout=5,
                  json={"exhaust": True, "namesTime": False, "retryAfter": 30}).raise_for_status()
    refused = hunt(sim, {"Query": SEED_QUERY})
    message = graph_error(refused, 429, "TooManyRequests")
    assert "CPU" in message and "blocked until" not in message
    assert refused.headers["Retry-After"] == "30"
    bad = requests.post(f"{sim.url}/_sim/hunting/cpu", json={"exhaust": "yes"}, timeout=5)
    assert bad.status_code == 400


def test_a_query_that_runs_too_long_is_graphs_504(sim: SimulatorAdmin) -> None:
    sim.fault("status", api="hunting", status=504, count=1)
    assert graph_error(hunt(sim, {"Query": SEED_QUERY}), 504, "GatewayTimeout") == TIMEOUT_MESSAGE
    assert hunt(sim, {"Query": SEED_QUERY}).status_code == 200  # one fault, one query
    assert [c["fault"] for c in sim.calls("hunting")] == ["status", None]


def test_a_timeout_after_a_delay_is_held_until_answered(sim: SimulatorAdmin) -> None:
    """A status fault with a delay answers after it: the gateway's read timeout can pass first."""
    sim.fault("status", api="hunting", status=504, delay=0.3)
    response = hunt(sim, {"Query": SEED_QUERY})
    assert graph_error(response, 504, "GatewayTimeout") == TIMEOUT_MESSAGE


def test_timespan_narrows_the_events_answered(sim: SimulatorAdmin) -> None:
    sha1 = "ab" * 20
    now = datetime.now(UTC).replace(microsecond=0)
    rows = add_events(sim, sha1=sha1, count=3, spacingSeconds=6 * 3600, timestamp=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    query = {"Query": f'DeviceFileEvents | where SHA1 == "{sha1}" | project ReportId | order by ReportId asc'}
    ids = [r["ReportId"] for r in rows]

    def answered(**extra: str) -> list[int]:
        response = hunt(sim, {**query, **extra})
        assert response.status_code == 200, response.text
        return [r["ReportId"] for r in response.json()["results"]]

    assert answered() == ids
    assert answered(Timespan="PT1H") == ids[:1]
    assert answered(Timespan="PT7H") == ids[:2]
    start = (now - timedelta(hours=13)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert answered(Timespan=f"{start}/{end}") == ids[1:]
    assert answered(Timespan=f"{start}/PT2H") == ids[2:]
    message = graph_error(hunt(sim, {**query, "Timespan": "last week"}), 400, "BadRequest")
    assert message.startswith("Invalid Timespan")


def test_a_query_graph_cannot_run_is_a_400_with_its_diagnosis(sim: SimulatorAdmin) -> None:
    message = graph_error(hunt(sim, {"Query": "DeviceFileEvents\n| summarize count() by DeviceId"}), 400,
                          "BadRequest")
    assert message == "Query could not be parsed at 'summarize' on line [2,3]"
    message = graph_error(hunt(sim, {"Query": "DeviceFileEvents | where Sha1 == 'x'"}), 400, "BadRequest")
    assert message == "'where' operator: Failed to resolve scalar expression named 'Sha1'"
    assert graph_error(hunt(sim, {"Timespan": "P1D"}), 400, "BadRequest").startswith("The 'Query' parameter")


def test_an_answer_over_graphs_size_limit_is_a_400(sim: SimulatorAdmin) -> None:
    size = len(hunt(sim, {"Query": SEED_QUERY}).content)
    requests.post(f"{sim.url}/_sim/hunting/size", json={"maxResultBytes": size - 1}, timeout=5).raise_for_status()
    assert graph_error(hunt(sim, {"Query": SEED_QUERY}), 400, "BadRequest") == SIZE_MESSAGE
    assert hunt(sim, {"Query": SEED_QUERY + " | take 1"}).status_code == 200
    sim.reset()  # back to Graph's own limit
    assert hunt(sim, {"Query": SEED_QUERY}).status_code == 200


def test_generated_events_make_a_large_answer_and_are_each_creatable(sim: SimulatorAdmin) -> None:
    sha1 = "cd" * 20
    rows = add_events(sim, sha1=sha1, count=400, devices=10, table="DeviceProcessEvents", fileName="big.exe")
    assert len(rows) == 400 and len({r["DeviceId"] for r in rows}) == 10
    response = hunt(sim, {"Query": f'DeviceProcessEvents | where SHA1 == "{sha1}"'})
    assert response.status_code == 200
    assert len(response.content) > 64 * 1024
    results = response.json()["results"]
    assert sorted(r["ReportId"] for r in results) == sorted(r["ReportId"] for r in rows)
    assert {r["FileName"] for r in results} == {"big.exe"}
    assert create_for(sim, results[-1]).status_code == 200
    refused = requests.post(f"{sim.url}/_sim/hunting/events", json={"sha1": "x", "count": 1}, timeout=5)
    assert refused.status_code == 400


def test_each_tenant_hunts_its_own_events(sim: SimulatorAdmin) -> None:
    sha1 = "ef" * 20
    [row] = add_events(sim, CUSTOMER, sha1=sha1)
    query = {"Query": f'DeviceFileEvents | where SHA1 == "{sha1}"'}
    assert hunt(sim, query).json()["results"] == []
    assert hunt(sim, query, graph_bearer(tenant=CUSTOMER)).json()["results"] == [row]
    assert hunt(sim, {"Query": SEED_QUERY}, graph_bearer(tenant=CUSTOMER)).json()["results"] == []
    assert create_for(sim, row).status_code == 404
    assert create_for(sim, row, tenant=CUSTOMER).status_code == 200
