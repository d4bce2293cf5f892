"""Advanced hunting through the real entry points (hunting_fn, tenants_fn) and the real edge, gateway, client and
limiters, with Microsoft Graph scripted at the requests transport: each path's body and answer shape, validation
that spends nothing, Graph's errors with their own meaning (400, 504, the CPU 429 and the block every instance
honours), customer tenants, the app role, and an Idempotency-Key keeping the answer in the caller's shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

import hunting_fn
import tenants_fn
from shared.defender.facts import GRAPH_HUNTING_PATH, HUNTING_MAX_QUERY_CHARACTERS
from shared.http.settings import Role
from tests.support.rigs import GATEWAY_URL, EdgeRig, bearer, make_edge, response_problem
from tests.support.scripted import APP_ID, FakeClock, FakeTable, Reply, StaticCredential, read_timeout

GRAPH = "https://graph.microsoft.com"
QUERY = 'DeviceProcessEvents | where SHA1 == "6532ec91d513acc05f43ee0aa3002599729fd3e1" | take 10'
POLICY = '"60s";q=45;w=60, "3600s";q=1500;w=3600'
ROWS = [{"Timestamp": "2026-12-06T10:00:00.1234567Z", "ReportId": 1234,
         "DeviceId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"},
        {"Timestamp": "2026-12-06T10:05:00.7654321Z", "ReportId": 9223372036854775807,
         "DeviceId": "2e5bc9d7e413ddd7902c2932e418702b84d0cc07"}]
GRAPH_ANSWER = {"@odata.context": f"{GRAPH}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
                "schema": [{"name": "Timestamp", "type": "DateTime"}, {"name": "ReportId", "type": "Int64"},
                           {"name": "DeviceId", "type": "String"}],
                "results": ROWS}
CONTOSO = "c0c0c0c0-1111-4222-8333-444455556666"
MULTI_APP = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
MANY = {"MDE_TENANTS": f"contoso={CONTOSO}", "MDE_MULTITENANT_CLIENT_ID": MULTI_APP, "AZURE_CLIENT_ID": APP_ID}
ENTRA_ENV = {"GATEWAY_AUTH": "entra", "WEBSITE_AUTH_ENABLED": "True"}

#: The entry points by route, as the Functions host calls them (route parameters as it hands them over).
ROUTES: dict[str, Callable[..., func.HttpResponse]] = {
    "advancedqueries/run": hunting_fn.run_advanced_query,
    "advancedhunting/run": hunting_fn.run_advanced_hunting_query,
    "security/runHuntingQuery": hunting_fn.run_hunting_query,
    "tenants/{tenant}/advancedqueries/run": tenants_fn.run_tenant_advanced_query,
    "tenants/{tenant}/advancedhunting/run": tenants_fn.run_tenant_advanced_hunting_query,
    "tenants/{tenant}/security/runHuntingQuery": tenants_fn.run_tenant_hunting_query,
}
DEFENDER_ROUTES = ("advancedqueries/run", "advancedhunting/run")


def results() -> Reply:
    return Reply(200, GRAPH_ANSWER)


def graph_error(status: int, code: str, message: str, retry_after: str | None = None) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message, "innerError": {
        "date": "2026-12-06T20:00:00", "request-id": "5e1c0b0a-0000-4000-8000-000000000001"}}},
        headers={"Retry-After": retry_after} if retry_after else {})


@pytest.fixture
def hunt(monkeypatch: pytest.MonkeyPatch) -> Callable[..., func.HttpResponse]:
    """POST a body to a hunting route through its entry point, on `rig`'s edge."""

    def call(rig: EdgeRig, route: str, body: Any, *, tenant: str = "contoso", headers: dict[str, str] | None = None,
             content_type: str = "application/json") -> func.HttpResponse:
        monkeypatch.setattr(hunting_fn, "edge", lambda: rig.edge)
        monkeypatch.setattr(tenants_fn, "edge", lambda: rig.edge)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        path = route.replace("{tenant}", tenant)
        req = func.HttpRequest("POST", f"{GATEWAY_URL}/api/{path}", body=data,
                               headers={"Content-Type": content_type, **(headers or {})},
                               route_params={"tenant": tenant} if "{tenant}" in route else {})
        return ROUTES[route](req, None)

    return call


def problem(response: func.HttpResponse, status: int, kind: str, *fields: str) -> dict[str, Any]:
    document = response_problem(response, status, *fields)
    assert document["type"] == f"urn:mde-alert-gateway:problem:{kind}", document
    assert response.headers["RateLimit-Policy"] == POLICY
    return document


def sent(rig: EdgeRig) -> list[dict[str, Any]]:
    """The bodies that went to Graph's runHuntingQuery (and nothing else went anywhere)."""
    assert all(call.url == f"{GRAPH}{GRAPH_HUNTING_PATH}" and call.method == "POST" for call in rig.transport.calls)
    return [call.json() for call in rig.transport.calls]


# --- the shapes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", DEFENDER_ROUTES)
def test_defenders_paths_answer_in_defenders_shape_from_one_graph_call(
        hunt: Callable[..., func.HttpResponse], route: str) -> None:
    rig = make_edge([results()])
    response = hunt(rig, route, {"Query": QUERY})
    assert response.status_code == 200 and response.mimetype == "application/json"
    answer = json.loads(response.get_body())
    assert list(answer) == ["Stats", "Schema", "Results"]
    assert answer["Schema"] == [{"Name": "Timestamp", "Type": "DateTime"}, {"Name": "ReportId", "Type": "Int64"},
                                {"Name": "DeviceId", "Type": "String"}]
    assert answer["Results"] == ROWS
    stats = answer["Stats"]
    assert stats["ExecutionTime"] >= 0 and "resource_usage" not in stats
    assert stats["dataset_statistics"] == [{"table_row_count": 2, "table_size": len(json.dumps(ROWS).encode())}]
    assert sent(rig) == [{"Query": QUERY}]
    assert rig.credential.scopes == [(f"{GRAPH}/.default",)]  # Graph's token, not Defender's
    assert response.headers["RateLimit-Policy"] == POLICY and response.headers["RateLimit"].startswith('"60s";r=44')


def test_graphs_path_answers_graphs_body_unchanged_and_passes_the_timespan(
        hunt: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([results()])
    response = hunt(rig, "security/runHuntingQuery", {"Query": QUERY, "Timespan": "P7D"})
    assert response.status_code == 200 and json.loads(response.get_body()) == GRAPH_ANSWER
    assert response.get_body() == results().content()
    assert sent(rig) == [{"Query": QUERY, "Timespan": "P7D"}]


@pytest.mark.parametrize(("route", "body", "canonical"), [
    ("advancedqueries/run", {"query": QUERY}, {"Query": QUERY}),
    ("advancedhunting/run", {"QUERY": QUERY}, {"Query": QUERY}),
    ("security/runHuntingQuery", {"query": QUERY, "timespan": "P7D"}, {"Query": QUERY, "Timespan": "P7D"}),
    ("security/runHuntingQuery", {"TimeSpan": "P7D", "qUeRy": QUERY}, {"Query": QUERY, "Timespan": "P7D"}),
])
def test_field_names_in_any_case_are_sent_to_graph_canonical(
        hunt: Callable[..., func.HttpResponse], route: str, body: dict[str, str], canonical: dict[str, str]) -> None:
    """Graph's OData and Defender's ASP.NET binding read the names in any case: a caller that switches only its base
    URL keeps working, and Graph gets `Query`/`Timespan`."""
    rig = make_edge([results()])
    assert hunt(rig, route, body).status_code == 200
    assert sent(rig) == [canonical]


# --- validation before anything is spent ------------------------------------------------------------------------------

@pytest.mark.parametrize(("route", "body", "fields"), [
    ("advancedqueries/run", {}, ("body.Query",)),
    ("advancedqueries/run", {"Query": "   "}, ("body.Query",)),
    ("advancedqueries/run", {"Query": 7}, ("body.Query",)),
    ("advancedqueries/run", {"Query": "x" * (HUNTING_MAX_QUERY_CHARACTERS + 1)}, ("body.Query",)),
    ("advancedhunting/run", {"Query": QUERY, "Timespan": "P7D"}, ("body.Timespan",)),
    ("security/runHuntingQuery", {"Query": QUERY, "Timespan": "7 days"}, ("body.Timespan",)),
    ("security/runHuntingQuery", {"Query": QUERY, "Timespan": 7}, ("body.Timespan",)),
    ("security/runHuntingQuery", {"query": QUERY, "Query": QUERY}, ("body.Query",)),  # one name, two spellings
    ("advancedqueries/run", {"query": QUERY, "timespan": "P7D"}, ("body.timespan",)),
    ("tenants/{tenant}/security/runHuntingQuery", {"Query": ""}, ("body.Query",)),
    ("security/runHuntingQuery", [QUERY], ("body",)),
    ("security/runHuntingQuery", b'{"Query": "a", "Query": "b"}', ("body.Query",)),
])
def test_a_bad_body_is_400_naming_the_field_and_spends_nothing(
        hunt: Callable[..., func.HttpResponse], route: str, body: Any, fields: tuple[str, ...]) -> None:
    rig = make_edge([], settings_env=MANY, tenant_credentials={CONTOSO: StaticCredential()})
    document = problem(hunt(rig, route, body), 400, "validation-error", *fields)
    if not isinstance(body, bytes | list):
        assert document["detail"].endswith("Nothing was sent to Microsoft Graph.")
    assert rig.transport.calls == [] and rig.store.writes == [] and rig.credential.scopes == []


def test_a_body_that_is_not_json_is_415_or_400_and_spends_nothing(hunt: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([])
    problem(hunt(rig, "advancedqueries/run", {"Query": QUERY}, content_type="text/plain"), 415,
            "unsupported-media-type")
    problem(hunt(rig, "advancedqueries/run", b"Query=x"), 400, "validation-error", "body")
    assert rig.transport.calls == [] and rig.store.writes == []


# --- Graph's errors keep their meaning ------------------------------------------------------------------------------

def test_a_query_graph_rejects_is_400_naming_graphs_message_once(hunt: Callable[..., func.HttpResponse]) -> None:
    message = "Query could not be parsed at 'wher' on line [1,22]"  # no final period, as Graph writes it
    rig = make_edge([graph_error(400, "BadRequest", message)])
    document = problem(hunt(rig, "advancedqueries/run", {"Query": "DeviceEvents | wher x"}), 400,
                       "hunting-query-rejected")
    assert f"{message}. Nothing is retried" in document["detail"] and document["upstreamError"]["message"] == message
    assert len(rig.transport.calls) == 1
    assert rig.credential.token not in json.dumps(document)


@pytest.mark.parametrize("step", [
    graph_error(504, "GatewayTimeout", "Query execution has exceeded the allowed execution time."),
    read_timeout()])
def test_a_query_that_runs_too_long_is_504_and_never_retried(hunt: Callable[..., func.HttpResponse],
                                                             step: Any) -> None:
    rig = make_edge([step])
    document = problem(hunt(rig, "security/runHuntingQuery", {"Query": QUERY}), 504, "hunting-query-timeout")
    assert "3 minutes" in document["detail"] and len(rig.transport.calls) == 1


def test_a_cpu_429_blocks_the_tenants_queries_on_every_instance_until_graphs_time(
        hunt: Callable[..., func.HttpResponse]) -> None:
    clock = FakeClock(1_800_000_000.0)  # 2027-01-15T08:00:00Z
    until = "2027-01-15T08:10:00Z"
    rig = make_edge([graph_error(429, "TooManyRequests", "Tenant CPU quota for advanced hunting exceeded. Queries "
                                 f"are blocked until {until}.")], clock=clock)
    first = hunt(rig, "advancedqueries/run", {"Query": QUERY})
    document = problem(first, 429, "hunting-cpu-exhausted")
    assert first.headers["Retry-After"] == "600" and "CPU" in document["detail"]
    assert len(rig.transport.calls) == 1  # a CPU 429 is never retried

    for instance in (rig, make_edge([], store=rig.store, clock=clock)):  # this instance, and another one
        again = hunt(instance, "security/runHuntingQuery", {"Query": QUERY})
        problem(again, 429, "hunting-cpu-exhausted")
        assert again.headers["Retry-After"] == "600"
    assert len(rig.transport.calls) == 1
    clock.advance(601)
    rig.transport.add(results())
    assert hunt(rig, "security/runHuntingQuery", {"Query": QUERY}).status_code == 200


def test_graphs_calls_429_is_throttling_not_the_cpu(hunt: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([graph_error(429, "TooManyRequests", "API calls quota exceeded! maximum allowed 45 per 00:01:00",
                                 retry_after="120")])
    response = hunt(rig, "advancedqueries/run", {"Query": QUERY})
    document = problem(response, 429, "upstream-throttled")
    assert response.headers["Retry-After"] == "120" and document["detail"].startswith("Microsoft Graph answered 429")


def test_graphs_403_names_graphs_permission(hunt: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([graph_error(403, "Authorization_RequestDenied", "Insufficient privileges")])
    document = problem(hunt(rig, "security/runHuntingQuery", {"Query": QUERY}), 502, "upstream-forbidden")
    assert "ThreatHunting.Read.All" in document["detail"] and "Microsoft Graph" in document["detail"]
    assert f"asks for {GRAPH}/.default and calls {GRAPH}" in document["detail"]
    assert "GRAPH_BASE_URL" in document["detail"]
    assert "WindowsDefenderATP" not in document["detail"]


# --- tenants, roles, operations ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["tenants/{tenant}/advancedqueries/run", "tenants/{tenant}/security/runHuntingQuery"])
def test_a_customer_tenants_query_goes_with_that_tenants_token(hunt: Callable[..., func.HttpResponse],
                                                               route: str) -> None:
    contoso = StaticCredential(tenant=CONTOSO, app=MULTI_APP)
    rig = make_edge([results()], settings_env=MANY, tenant_credentials={CONTOSO: contoso})
    response = hunt(rig, route, {"Query": QUERY})
    assert response.status_code == 200
    assert ("Results" if "advancedqueries" in route else "results") in json.loads(response.get_body())
    (call,) = rig.transport.calls
    assert call.headers["Authorization"] == f"Bearer {contoso.token}" != f"Bearer {rig.credential.token}"
    assert contoso.scopes == [(f"{GRAPH}/.default",)]
    problem(hunt(rig, route, {"Query": QUERY}, tenant="unknown"), 404, "tenant-not-found")
    assert len(rig.transport.calls) == 1


def test_with_entra_id_a_caller_needs_hunting_read(hunt: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([results()], settings_env=ENTRA_ENV)
    others = tuple(role.value for role in Role if role is not Role.HUNTING_READ)
    headers = bearer("5f9a1c2e-0000-4000-8000-00000000c0de", "0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b", others)
    refused = response_problem(hunt(rig, "advancedqueries/run", {"Query": QUERY}, headers=headers), 403)
    assert refused["type"].endswith(":caller-not-allowed") and Role.HUNTING_READ.value in refused["detail"]
    assert rig.transport.calls == []
    headers = bearer("5f9a1c2e-0000-4000-8000-00000000c0de", "0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b",
                     (Role.HUNTING_READ.value,))
    assert hunt(rig, "advancedqueries/run", {"Query": QUERY}, headers=headers).status_code == 200


def test_an_idempotency_key_keeps_the_answer_in_the_callers_shape_once(hunt: Callable[..., func.HttpResponse]) -> None:
    rig = make_edge([results()])
    key = {"Idempotency-Key": "hunt-0001"}
    first = hunt(rig, "advancedqueries/run", {"Query": QUERY}, headers=key)
    again = hunt(rig, "advancedqueries/run", {"Query": QUERY}, headers=key)
    assert first.status_code == again.status_code == 200 and len(rig.transport.calls) == 1
    assert first.get_body() == again.get_body() and json.loads(again.get_body())["Results"] == ROWS


def test_with_sharing_identical_synchronous_queries_share_one_graph_call(
        hunt: Callable[..., func.HttpResponse]) -> None:
    """HUNTING_SHARE_SECONDS > 0: the same tenant's identical query (Query and Timespan byte for byte) is answered
    from the shared answer, in each caller's shape, with its Age and the ExecutionTime of the Graph call that got it
    (as a shared file lookup answers); another Timespan, or Cache-Control: no-cache, goes to Graph."""
    table = FakeTable()
    rig = make_edge([Reply(200, GRAPH_ANSWER, takes=2.5), results(), results()],
                    settings_env={"HUNTING_SHARE_SECONDS": "60"}, hunting_table=table)
    first = hunt(rig, "advancedqueries/run", {"Query": QUERY})
    rig.clock.advance(7)
    shared = hunt(rig, "advancedqueries/run", {"Query": QUERY})
    graphs = hunt(rig, "security/runHuntingQuery", {"Query": QUERY})
    assert len(rig.transport.calls) == 1 and len(table.entities) == 1
    assert json.loads(shared.get_body())["Results"] == json.loads(first.get_body())["Results"] == ROWS
    # The call that got the answer took 2.5 s (on the scripted clock): the shared answer says so, not 0.
    assert json.loads(shared.get_body())["Stats"] == json.loads(first.get_body())["Stats"]
    assert json.loads(first.get_body())["Stats"]["ExecutionTime"] == 2.5
    assert (first.headers["Age"], shared.headers["Age"], graphs.headers["Age"]) == ("0", "7", "7")
    assert shared.headers["Cache-Control"] == first.headers["Cache-Control"] == "private, max-age=60"
    assert "RateLimit" not in shared.headers  # no slot was taken for it
    assert json.loads(graphs.get_body()) == GRAPH_ANSWER
    assert hunt(rig, "security/runHuntingQuery", {"Query": QUERY, "Timespan": "P1D"}).status_code == 200
    assert hunt(rig, "advancedqueries/run", {"Query": QUERY}, headers={"Cache-Control": "no-cache"}).status_code == 200
    assert sent(rig) == [{"Query": QUERY}, {"Query": QUERY, "Timespan": "P1D"}, {"Query": QUERY}]
