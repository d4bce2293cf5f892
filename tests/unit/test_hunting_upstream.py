"""Advanced hunting's call path to Microsoft Graph, in process: the request (Graph's base URL, Graph's token, the
body), Graph's answers as typed outcomes (success, its errors, the two kinds of 429), what is never retried (a CPU
429, a 504, a read timeout), the CPU block every instance honours until the time Graph names, and identity failures
remembered per tenant and scope. Graph is scripted at the requests transport; the limiters run over the memory
store on a hand-moved clock."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken as AzureAccessToken
from azure.core.exceptions import ClientAuthenticationError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from shared.configuration import ConfigurationError
from shared.defender.client import DefenderClient, DefenderRequest, IdentityError
from shared.defender.clouds import CLOUDS
from shared.defender.facts import GRAPH_HUNTING_PATH, HUNTING_CPU_CYCLE_SECONDS, Api, Service
from shared.defender.gateway import Refused, Sent, cpu_block_end
from shared.defender.outcomes import (
    Malformed,
    Reach,
    Rejected,
    Success,
    Throttled,
    ThrottleKind,
    Unavailable,
    classify,
    first_utc_time,
    hunting_timed_out,
)
from shared.health import health_report
from shared.ratelimit import Reason
from shared.ratelimit.entity import from_entity, to_entity
from shared.ratelimit.sliding_log import LogState, merge
from shared.settings import load_defender_settings, load_settings
from shared.telemetry.recorder import Telemetry
from tests.support.rigs import UNIT_ENV, EdgeRig, make_edge
from tests.support.scripted import (
    APP_ID,
    PRINCIPAL,
    TENANT_ID,
    FakeClock,
    FakeMonotonic,
    Reply,
    StaticCredential,
    Step,
    alerts_reply,
    connect_timeout,
    read_timeout,
)

GRAPH = "https://graph.microsoft.com"
QUERY = 'DeviceProcessEvents | where SHA1 == "6532ec91d513acc05f43ee0aa3002599729fd3e1" | take 10'
HUNT = DefenderRequest.hunting(QUERY)
SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
CID = "unit-hunting-0001"
CALLS_MESSAGE = "API calls quota exceeded! maximum allowed 45 per 00:01:00"


def results_reply(*rows: dict[str, Any]) -> Reply:
    """runHuntingQuery's success: Graph's huntingQueryResults."""
    return Reply(200, {"@odata.context": f"{GRAPH}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
                       "schema": [{"name": "Timestamp", "type": "DateTime"}, {"name": "ReportId", "type": "Int64"},
                                  {"name": "DeviceId", "type": "String"}],
                       "results": list(rows)})


def graph_error(status: int, code: str, message: str, *, retry_after: str | None = None) -> Reply:
    """Graph's error body: code, message and innerError (its request ids), optionally with Retry-After."""
    error = {"code": code, "message": message,
             "innerError": {"date": "2026-12-06T20:00:00", "request-id": "5e1c0b0a-0000-4000-8000-000000000001",
                            "client-request-id": CID}}
    return Reply(status, {"error": error}, headers={"Retry-After": retry_after} if retry_after else {})


def cpu_429(until: str | None = None, *, retry_after: str | None = None) -> Reply:
    blocked = f" Queries are blocked until {until}." if until else ""
    return graph_error(429, "TooManyRequests", f"Tenant CPU quota for advanced hunting exceeded.{blocked}",
                       retry_after=retry_after)


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hunt(rig: EdgeRig, request: DefenderRequest = HUNT) -> Any:
    return rig.gateway.call(request, CID)


# --- what goes out ------------------------------------------------------------------------------------------------

def test_a_hunting_query_goes_to_graph_with_a_token_for_graph() -> None:
    rig = make_edge([results_reply({"Timestamp": "2026-12-06T10:00:00.1234567Z", "ReportId": 1234,
                                    "DeviceId": "a" * 40})])
    result = hunt(rig, DefenderRequest.hunting(QUERY, "P7D"))
    assert isinstance(result.outcome, Success) and result.sent == 1
    (sent,) = rig.transport.calls
    assert (sent.method, sent.url) == ("POST", f"{GRAPH}{GRAPH_HUNTING_PATH}")
    assert sent.json() == {"Query": QUERY, "Timespan": "P7D"}
    assert sent.headers["Authorization"] == f"Bearer {rig.credential.token}"
    assert rig.credential.scopes == [(f"{GRAPH}/.default",)]  # Graph's audience, not Defender's
    # A synchronous call waits for Graph the whole HUNTING_TIMEOUT_SECONDS (200 s), not MDE_TOTAL_TIMEOUT_SECONDS.
    assert sent.timeout == (5.0, 200.0)
    rig.transport.assert_done()


def test_without_timespan_the_body_holds_the_query_alone() -> None:
    assert (HUNT.api, HUNT.method, HUNT.service, HUNT.body) == (Api.HUNTING, "POST", Service.GRAPH, {"Query": QUERY})
    assert (HUNT.query, HUNT.timespan) == (QUERY, None)
    assert DefenderRequest.file_alerts(SHA1).service is Service.DEFENDER


def test_one_attempt_outside_the_synchronous_path_waits_the_hunting_timeout() -> None:
    rig = make_edge([results_reply()], settings_env={"HUNTING_TIMEOUT_SECONDS": "240"})
    identity = rig.gateway.identity(service=Service.GRAPH)
    decision = rig.gateway.admit(Api.HUNTING, identity, CID)
    attempt = rig.gateway.send(HUNT, identity, decision, CID)
    assert isinstance(attempt, Sent) and isinstance(attempt.outcome, Success)
    assert rig.transport.calls[0].timeout == (5.0, 240.0)
    retry = rig.gateway.retry
    assert retry.attempt_seconds_of(Api.HUNTING) == 245.0
    assert retry.attempt_seconds_of(Api.FILE_ALERTS) == 35.0  # Defender's calls keep their own


def test_a_defender_token_never_goes_to_graph() -> None:
    rig = make_edge([])
    defender = rig.gateway.identity()
    decision = rig.gateway.admit(Api.HUNTING, defender, CID)
    with pytest.raises(ValueError, match="identity for graph"):
        rig.gateway.send(HUNT, defender, decision, CID)
    assert rig.transport.calls == []


def test_the_defender_path_is_unchanged_beside_hunting() -> None:
    rig = make_edge([alerts_reply(), results_reply()])
    assert hunt(rig, DefenderRequest.file_alerts(SHA1)).sent == 1
    assert hunt(rig).sent == 1
    assert [call.url for call in rig.transport.calls] == [
        f"https://api.securitycenter.microsoft.com/api/files/{SHA1}/alerts", f"{GRAPH}{GRAPH_HUNTING_PATH}"]
    assert rig.credential.scopes == [("https://api.securitycenter.microsoft.com/.default",), (f"{GRAPH}/.default",)]


def test_a_graph_request_that_would_connect_elsewhere_is_not_sent() -> None:
    rig = make_edge([])
    settings = dataclasses.replace(rig.settings.defender, graph_base_url="https://graph.microsoft.com.evil.example")
    client = DefenderClient(settings, rig.credential, rig.session)
    token = client.token(service=Service.GRAPH)
    with pytest.raises(ConfigurationError) as refused:
        client.send(HUNT, token, correlation_id=CID)
    assert refused.value.problems[0].setting == "GRAPH_BASE_URL"
    assert token.value not in str(refused.value) and rig.transport.calls == []


# --- Graph's answers ----------------------------------------------------------------------------------------------

def _classify(reply: Reply) -> Any:
    return classify(Api.HUNTING, reply.status, reply.headers, reply.content())


def test_graphs_answers_as_outcomes() -> None:
    assert isinstance(_classify(results_reply()), Success)
    assert _classify(Reply(200, {"value": []})) == Malformed(200, True)  # Defender's shape is not Graph's
    assert _classify(Reply(200, {"schema": [], "results": {}})) == Malformed(200, True)
    rejected = _classify(graph_error(400, "BadRequest", "Query could not be parsed at 'x' on line [1,5]"))
    assert isinstance(rejected, Rejected) and rejected.status == 400
    assert rejected.error is not None and rejected.error.message == "Query could not be parsed at 'x' on line [1,5]"
    timeout = _classify(graph_error(504, "GatewayTimeout", "Query execution has exceeded the allowed execution time"))
    assert isinstance(timeout, Unavailable) and timeout.status == 504 and hunting_timed_out(timeout)
    assert not hunting_timed_out(Unavailable(Reach.NOT_SENT, timed_out=True))  # a connect timeout: never left
    assert hunting_timed_out(Unavailable(Reach.MAYBE, timed_out=True))
    assert not hunting_timed_out(Unavailable(Reach.ANSWERED, 503))


def test_a_429_says_which_limit() -> None:
    calls = _classify(graph_error(429, "TooManyRequests", CALLS_MESSAGE, retry_after="7"))
    assert calls == Throttled(7.0, calls.error, ThrottleKind.CALLS, None)
    cpu = _classify(cpu_429("2026-12-06T20:15:00Z"))
    assert isinstance(cpu, Throttled) and cpu.kind is ThrottleKind.CPU and cpu.retry_after is None
    assert cpu.until == datetime(2026, 12, 6, 20, 15, tzinfo=UTC).timestamp()
    assert _classify(cpu_429()).until is None
    # Defender's own 429 is always about calls, whatever its message says.
    defender = classify(Api.FILE_ALERTS, 429, {}, json.dumps({"error": {"message": "CPU"}}).encode())
    assert isinstance(defender, Throttled) and defender.kind is ThrottleKind.CALLS


@pytest.mark.parametrize(("text", "expected"), [
    ("blocked until 2026-12-06T20:15:00Z.", "2026-12-06T20:15:00Z"),
    ("blocked until 2026-12-06T20:15:00.1234567Z", "2026-12-06T20:15:00Z"),
    ("blocked until 2026-12-06T20:15:00+00:00", "2026-12-06T20:15:00Z"),
    ("not a day 2026-02-30T00:00:00Z, then 2026-12-06T20:30:00Z", "2026-12-06T20:30:00Z"),
    ("local time 2026-12-06T20:15:00 is not UTC", None),
    ("another zone 2026-12-06T20:15:00+01:00", None),
    ("no time at all", None),
])
def test_the_first_utc_time_of_a_message(text: str, expected: str | None) -> None:
    found = first_utc_time(text)
    assert (utc(found) if found is not None else None) == expected


# --- never retried ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "step"), [
    ("CPU 429, even with a short Retry-After", cpu_429(retry_after="2")),
    ("504 GatewayTimeout", graph_error(504, "GatewayTimeout", "Query execution has exceeded the allowed time")),
    ("read timeout", read_timeout()),
    ("400 rejected query", graph_error(400, "BadRequest", "Query could not be parsed")),
])
def test_what_a_hunting_call_never_repeats(name: str, step: Step) -> None:
    rig = make_edge([step])
    result = hunt(rig)
    assert result.sent == 1 and rig.sleep.waits == [], name
    rig.transport.assert_done()


@pytest.mark.parametrize(("name", "first"), [
    ("calls 429 with a short Retry-After", graph_error(429, "TooManyRequests", CALLS_MESSAGE, retry_after="2")),
    ("503 with Retry-After", graph_error(503, "ServiceUnavailable", "try later", retry_after="1")),
    ("no connection was made", connect_timeout()),
])
def test_what_a_hunting_call_repeats_as_any_post(name: str, first: Step) -> None:
    rig = make_edge([first, results_reply()])
    result = hunt(rig)
    assert isinstance(result.outcome, Success) and result.sent == 2, name
    rig.transport.assert_done()


# --- Graph's CPU 429: a block every instance honours until Graph's time -------------------------------------------

def test_a_cpu_429_blocks_every_instance_until_the_time_graph_names() -> None:
    clock = FakeClock()
    now = clock.now
    until = (now // HUNTING_CPU_CYCLE_SECONDS + 1) * HUNTING_CPU_CYCLE_SECONDS + 300  # within the cap
    rig = make_edge([cpu_429(utc(until))], clock=clock)
    result = hunt(rig)
    assert isinstance(result.outcome, Throttled) and result.outcome.kind is ThrottleKind.CPU and result.sent == 1
    assert rig.store.blocks("hunting") == [round(until * 1000)]
    other = make_edge(store=rig.store, clock=rig.clock)  # another instance over the same state
    held = other.gateway.call(HUNT, CID)
    assert isinstance(held.last, Refused) and held.sent == 0 and other.transport.calls == []
    decision = held.last.decision
    assert (decision.reason, decision.blocked_kind, decision.retry_after) == (Reason.BLOCKED, "cpu", until - now)
    assert other.limiter(Api.FILE_ALERTS).acquire(PRINCIPAL).admitted  # Defender's APIs are not held
    rig.clock.advance(until - now)
    other.transport.add(results_reply())
    assert isinstance(other.gateway.call(HUNT, CID).outcome, Success)


def test_a_calls_429_blocks_as_any_429_and_names_no_cpu() -> None:
    rig = make_edge([graph_error(429, "TooManyRequests", CALLS_MESSAGE, retry_after="30")])
    hunt(rig)
    held = make_edge(store=rig.store, clock=rig.clock).limiter(Api.HUNTING).acquire(PRINCIPAL)
    assert (held.reason, held.blocked_kind, held.retry_after) == (Reason.BLOCKED, "", 30)


CYCLE = HUNTING_CPU_CYCLE_SECONDS
#: On a cycle boundary plus 100 s: the next boundary is 800 s away, the cap 1,700 s.
NOW = 2_000_000 * CYCLE + 100.0


@pytest.mark.parametrize(("name", "until", "retry_after", "end"), [
    ("the time Graph names", NOW + 500, None, NOW + 500),
    ("the time wins over Retry-After", NOW + 500, 60.0, NOW + 500),
    ("no time: Retry-After", None, 60.0, NOW + 60),
    ("neither: the next 15-minute boundary", None, None, NOW + 800),
    ("a time past the next cycle: capped", NOW + 10_000, None, NOW + 1_700),
    ("a Retry-After past the next cycle: capped", None, 3_600.0, NOW + 1_700),
    ("a time already past (clock skew): a second", NOW - 5, None, NOW + 1),
])
def test_how_long_a_cpu_block_lasts(name: str, until: float | None, retry_after: float | None, end: float) -> None:
    assert cpu_block_end(NOW, until, retry_after) == end, name


def test_a_cpu_429_without_time_or_retry_after_holds_until_the_next_boundary() -> None:
    rig = make_edge([cpu_429()])
    rig.clock.advance(100)
    hunt(rig)
    boundary = (rig.clock.now // CYCLE + 1) * CYCLE
    assert rig.store.blocks("hunting") == [round(boundary * 1000)]


# --- the identity for Graph's scope -------------------------------------------------------------------------------

class FailingFor(StaticCredential):
    """A credential that fails for one scope only (the identity endpoint refusing Graph's resource, say)."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.failing_scope = scope

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AzureAccessToken:
        if scopes == (self.failing_scope,):
            self.scopes.append(scopes)
            raise ClientAuthenticationError("the identity endpoint refused the resource")
        return super().get_token(*scopes)


def test_a_failure_for_graphs_scope_never_answers_a_defender_call_from_memory() -> None:
    credential = FailingFor(f"{GRAPH}/.default")
    client = DefenderClient(load_settings(UNIT_ENV).defender, credential, monotonic=FakeMonotonic())
    with pytest.raises(IdentityError) as failed:
        client.token(service=Service.GRAPH)
    assert failed.value.scope == f"{GRAPH}/.default"
    assert client.token().value == credential.token  # Defender's scope is asked, and answers
    with pytest.raises(IdentityError):  # Graph's failure is remembered for Graph alone
        client.token(service=Service.GRAPH)
    assert credential.scopes.count((f"{GRAPH}/.default",)) == 1


def test_a_hunting_call_spends_the_same_principals_budget_with_graphs_token() -> None:
    rig = make_edge([results_reply()])
    identity = rig.gateway.identity(service=Service.GRAPH)
    assert (identity.principal, identity.service, identity.tenant) == (f"{TENANT_ID}|{APP_ID}", Service.GRAPH,
                                                                       TENANT_ID)
    hunt(rig)
    assert rig.limiter(Api.HUNTING).peek(PRINCIPAL).windows[0].remaining == 44


# --- settings -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cloud", "graph"), [
    ("commercial", "https://graph.microsoft.com"), ("gcc", "https://graph.microsoft.com"),
    ("gcc-high", "https://graph.microsoft.us"), ("dod", "https://dod-graph.microsoft.us"),
])
def test_graph_is_the_clouds_by_default(cloud: str, graph: str) -> None:
    settings = load_defender_settings({"MDE_CLOUD": cloud})
    assert settings.graph_base_url == graph == CLOUDS[cloud].graph
    assert settings.upstream(Service.GRAPH).scope == f"{graph}/.default"
    assert settings.hunting_timeout == 200


@pytest.mark.parametrize(("cloud", "url"), [
    ("commercial", "https://graph.microsoft.com"), ("gcc", "https://GRAPH.microsoft.com/"),
    ("gcc-high", "https://graph.microsoft.us/"), ("dod", "https://dod-graph.microsoft.us"),
    ("commercial", "http://127.0.0.1:7071"), ("gcc-high", "http://localhost:8080"), ("dod", "https://[::1]:8443"),
])
def test_graph_base_url_accepts_exactly_the_clouds_graph_host_and_loopback(cloud: str, url: str) -> None:
    settings = load_defender_settings({"MDE_CLOUD": cloud, "GRAPH_BASE_URL": url})
    assert settings.graph_base_url == url.rstrip("/")
    # Overridden or not, the token is for the cloud's Graph.
    assert settings.upstream(Service.GRAPH).scope == f"{CLOUDS[cloud].graph}/.default"


@pytest.mark.parametrize(("cloud", "url"), [
    ("gcc-high", "https://graph.microsoft.com"), ("dod", "https://graph.microsoft.us"),
    ("commercial", "https://graph.microsoft.us"), ("gcc", "https://dod-graph.microsoft.us"),
    ("commercial", "https://microsoftgraph.chinacloudapi.cn"), ("gcc-high", "https://dod-graph.microsoft.us/"),
])
def test_graph_base_url_naming_another_clouds_graph_is_a_start_up_problem(cloud: str, url: str) -> None:
    """The Graph token is for MDE_CLOUD's Graph: another cloud's Graph host would take it out of its cloud."""
    with pytest.raises(ConfigurationError) as refused:
        load_defender_settings({"MDE_CLOUD": cloud, "GRAPH_BASE_URL": url})
    assert refused.value.problems[0].setting == "GRAPH_BASE_URL"
    assert "MDE_CLOUD" in str(refused.value) and CLOUDS[cloud].graph in str(refused.value)


@pytest.mark.parametrize(("url", "says"), [
    ("https://eu.graph.microsoft.com", "not a Microsoft Graph host"),
    ("https://graph.microsoft.com.evil.example", "not a Microsoft Graph host"),
    ("https://api.securitycenter.microsoft.com", "not a Microsoft Graph host"),
    ("https://evil.example", "not a Microsoft Graph host"),
    ("http://graph.microsoft.com", "must use https"),
    ("https://graph.microsoft.com:8443", "port 443"),
    ("https://graph.microsoft.com/v1.0", "without a path"),
    ("https://graph.microsoft.com.", "must not end with a dot"),
    ("https://user:secret@graph.microsoft.com", "without credentials"),
    ("https://evil.example\\.graph.microsoft.com", "backslashes"),
    ("http://127.1:7071", "must use https unless it points at loopback"),
])
def test_graph_base_url_refuses_anything_else(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_defender_settings({"GRAPH_BASE_URL": url})
    assert refused.value.problems[0].setting == "GRAPH_BASE_URL" and says in str(refused.value)
    assert "user:secret" not in str(refused.value)


@pytest.mark.parametrize("raw", ["0", "0.5", "361", "ten", "nan"])
def test_hunting_timeout_is_a_number_of_seconds_in_range(raw: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_defender_settings({"HUNTING_TIMEOUT_SECONDS": raw})
    assert refused.value.problems[0].setting == "HUNTING_TIMEOUT_SECONDS"


def test_a_blocks_kind_is_kept_in_the_entity_and_the_later_block_wins() -> None:
    state = LogState((1, 2), 5_000, 1, "cpu")
    entity = to_entity("key", "hunting", state)
    assert entity["BlockedKind"] == "cpu" and from_entity(entity) == state
    assert "BlockedKind" not in to_entity("key", "hunting", LogState((1,), 5_000))
    assert state.with_block(4_000, "") == state  # an earlier end changes nothing
    assert state.with_block(6_000) == LogState((1, 2), 6_000, 1, "")
    assert merge(LogState(blocked_until_ms=7_000), state).blocked_kind == ""
    assert merge(LogState(blocked_until_ms=1_000), state) == LogState((1, 2), 5_000, 0, "cpu")


# --- health and many tenants --------------------------------------------------------------------------------------

def test_health_reports_the_identity_for_graph_on_its_own() -> None:
    rig = make_edge([], credential=FailingFor(f"{GRAPH}/.default"))
    healthy, report = health_report(rig.gateway, rig.runtime.operations, rig.runtime.queues, clock=rig.clock)
    assert not healthy and report["status"] == "degraded"
    assert (report["identity"], report["graphIdentity"]) == (True, False)
    assert "admitsNow" in report["apis"]["file_alerts"]  # Defender's budgets read with Defender's token
    assert "admitsNow" not in report["apis"]["hunting"] and "waitingQueue" in report["apis"]["hunting"]
    healthy, report = health_report(make_edge([]).gateway, rig.runtime.operations, rig.runtime.queues)
    assert healthy and report["graphIdentity"] is True and report["apis"]["hunting"]["admitsNow"] is True


CUSTOMER = "c0c0c0c0-1111-4222-8333-444455556666"
MULTI_APP = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
MANY = {"MDE_TENANTS": f"contoso={CUSTOMER}", "MDE_MULTITENANT_CLIENT_ID": MULTI_APP,
        "AZURE_CLIENT_ID": "11111111-2222-4333-8444-555555555555"}


class NotConsentedFor(StaticCredential):
    """A customer tenant's exchange that refuses one scope: no consent for that resource there (AADSTS65001)."""

    def __init__(self, scope: str) -> None:
        super().__init__(tenant=CUSTOMER, app=MULTI_APP)
        self.refused_scope = scope

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AzureAccessToken:
        if scopes == (self.refused_scope,):
            self.scopes.append(scopes)
            raise ClientAuthenticationError("AADSTS65001: The user or administrator has not consented to use the "
                                            "application.\nTrace ID: x")
        return super().get_token(*scopes)


def test_a_customer_tenant_gets_a_graph_token_through_the_exchange_and_a_consent_url_for_graph() -> None:
    exchange = NotConsentedFor(f"{GRAPH}/.default")
    rig = make_edge([results_reply()], settings_env=MANY, tenant_credentials={CUSTOMER: exchange})
    with pytest.raises(IdentityError) as refused:
        rig.gateway.call(HUNT.for_tenant(CUSTOMER), CID)
    consent = refused.value.consent_url
    assert consent is not None and consent.endswith(f"&scope={GRAPH}/.default") and CUSTOMER in consent
    assert rig.transport.calls == []  # nothing sent, nothing spent
    assert rig.gateway.identity(CUSTOMER).principal == f"{CUSTOMER}|{MULTI_APP}"  # Defender's scope still answers
    _, report = health_report(rig.gateway, rig.runtime.operations, rig.runtime.queues)
    (tenant,) = report["tenants"]
    assert (tenant["identity"], tenant["graphIdentity"]) == (True, False) and "AADSTS65001" in tenant["graphReason"]
    consented = make_edge([results_reply()], settings_env=MANY, tenant_credentials={CUSTOMER: NotConsentedFor("-")})
    result = consented.gateway.call(HUNT.for_tenant(CUSTOMER), CID)
    assert isinstance(result.outcome, Success)
    assert consented.limiter(Api.HUNTING).peek(f"{CUSTOMER}|{MULTI_APP}").windows[0].remaining == 44  # its own
    assert consented.limiter(Api.HUNTING).peek(PRINCIPAL).windows[0].remaining == 45  # not the home tenant's


# --- telemetry ----------------------------------------------------------------------------------------------------

def _counts(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], float]]:
    data = reader.get_metrics_data()
    return [(dict(point.attributes or {}), point.value) for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics for metric in scope.metrics if metric.name == name
            for point in metric.data.data_points if isinstance(point, NumberDataPoint)]


def test_graphs_429s_are_counted_by_limit_and_cpu_blocks_on_their_own() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    rig = make_edge([graph_error(429, "TooManyRequests", CALLS_MESSAGE, retry_after="30"), cpu_429()],
                    telemetry=Telemetry(provider))
    hunt(rig)
    rig.clock.advance(30)
    hunt(rig)
    assert sorted((attributes["api"], attributes["limit"], value) for attributes, value in
                  _counts(reader, "mdegw.defender.throttled")) == [("hunting", "calls", 1), ("hunting", "cpu", 1)]
    assert _counts(reader, "mdegw.hunting.cpu_blocks") == [({"api": "hunting"}, 1)]
    requests_by_status = {attributes["status"]: value for attributes, value in
                          _counts(reader, "mdegw.defender.requests") if attributes["api"] == "hunting"}
    assert requests_by_status == {"429": 2}
    provider.shutdown()
