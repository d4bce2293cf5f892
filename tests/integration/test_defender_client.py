"""The Defender client and the call path against the simulator over HTTP, with the real
ManagedIdentityCredential talking to the fake identity endpoint: token scope, token reuse,
one request per send, retries and what each failure comes to for the caller."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from localdev.identity_endpoint import IDENTITY_PATH
from localdev.processes import free_port
from localdev.simulator.data import SEED_EVENT, SEED_FILE_SHA1
from localdev.stack import IDENTITY_SECRET, Server
from shared.answers.mapping import identity_problem, outcome_problem, refusal_problem
from shared.answers.problems import Problem
from shared.configuration import ConfigurationError
from shared.defender.client import DefenderClient, DefenderRequest, IdentityError
from shared.defender.credentials import RenewingCredential, build_credential, principal_of
from shared.defender.facts import Api, Service
from shared.defender.gateway import CallResult, Gateway, Refused, RetryPolicy, Sent
from shared.defender.outbound import Target, connection_target
from shared.defender.outcomes import (
    Rejected,
    Success,
    Throttled,
    ThrottleKind,
    Unauthorized,
    Unavailable,
    hunting_timed_out,
)
from shared.ratelimit import RatePolicy, Reason, build_rate_limiters, parse_windows
from shared.ratelimit.memory_store import MemoryStore
from shared.settings import load_defender_settings
from tests.support.scripted import FakeSleep
from tests.support.servers import IdentityAdmin, SimulatorAdmin

ClientFactory = Callable[..., DefenderClient]
GatewayFactory = Callable[..., Gateway]
CREATE_BODY = {"machineId": SEED_EVENT["machineId"], "severity": "Low", "title": "client test",
               "description": "d", "recommendedAction": "r", "eventTime": SEED_EVENT["eventTime"],
               "reportId": SEED_EVENT["reportId"], "category": "Exploit"}
FILE_ALERTS = DefenderRequest.file_alerts(SEED_FILE_SHA1)
CREATE = DefenderRequest.create_alert(CREATE_BODY)


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch, simulator_server: Server, identity_server: Server,
                sim: SimulatorAdmin, identity: IdentityAdmin) -> ClientFactory:
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity_server.url + IDENTITY_PATH)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_SECRET)

    def make(**settings: str) -> DefenderClient:
        env = {"MDE_BASE_URL": simulator_server.url, "GRAPH_BASE_URL": simulator_server.url,
               "MDE_READ_TIMEOUT_SECONDS": "2",
               "MDE_TOTAL_TIMEOUT_SECONDS": "15", "MDE_MAX_RETRY_AFTER_SECONDS": "2", **settings}
        defender_settings = load_defender_settings(env)
        return DefenderClient(defender_settings, build_credential(defender_settings))

    return make


@pytest.fixture
def make_gateway(make_client: ClientFactory) -> GatewayFactory:
    """The HTTP call path over the real client, with an in-memory budget (`limit` calls a minute)."""

    def make(limit: int = 1000, sleep: Callable[[float], None] = time.sleep, **settings: str) -> Gateway:
        client = make_client(**settings)
        policies = [RatePolicy(api, parse_windows(f"{limit}/60")) for api in Api]
        limiters = build_rate_limiters(MemoryStore(), policies, margin_seconds=0, max_conflict_retries=3,
                                       new_state_share=1.0)
        defender = client.settings
        retry = RetryPolicy(defender)
        return Gateway(client, limiters, retry, sleep=sleep)

    return make


def answer(gateway: Gateway, result: CallResult) -> Problem | Success:
    """What the caller is told: Defender's success, or the problem the edge maps the result to."""
    api, defender = Api(result.decision.api), gateway.client.settings
    if isinstance(result.last, Refused):
        return refusal_problem(result, api, defender)
    outcome = result.last.outcome
    return outcome if isinstance(outcome, Success) else outcome_problem(api, outcome, defender)


def problem_of(gateway: Gateway, request: DefenderRequest, correlation_id: str) -> Problem:
    outcome = answer(gateway, gateway.call(request, correlation_id))
    assert isinstance(outcome, Problem), outcome
    return outcome


def test_real_managed_identity_credential_fetches_once_and_reuses(make_client: ClientFactory,
                                                                  identity: IdentityAdmin) -> None:
    client = make_client()
    assert isinstance(client._credential, RenewingCredential)
    assert isinstance(client._credential.current, ManagedIdentityCredential)
    for _ in range(5):
        token = client.token()
        assert isinstance(client.send(FILE_ALERTS, token, correlation_id="reuse-test-1"), Success)
    issued = identity.issued()
    assert issued == [{"resource": "https://api.securitycenter.microsoft.com", "client_id": issued[0]["client_id"]}]
    assert principal_of(token.value).startswith("a839b112-1253-6432-9bf6-94542403f21c|")


@pytest.mark.parametrize(("cloud", "resource"), [
    ("commercial", "https://api.securitycenter.microsoft.com"),
    ("gcc", "https://api-gcc.securitycenter.microsoft.us"),
    ("gcc-high", "https://api-gov.securitycenter.microsoft.us"),
])
def test_token_is_requested_for_the_clouds_resource(make_client: ClientFactory, identity: IdentityAdmin,
                                                    cloud: str, resource: str) -> None:
    make_client(MDE_CLOUD=cloud).token()
    assert [t["resource"] for t in identity.issued()] == [resource]


def test_user_assigned_identity_sends_its_client_id(make_client: ClientFactory, identity: IdentityAdmin) -> None:
    client_id = "11111111-2222-3333-4444-555555555555"
    token = make_client(AZURE_CLIENT_ID=client_id).token()
    assert identity.issued()[0]["client_id"] == client_id
    assert principal_of(token.value).endswith("|" + client_id)


def test_identity_endpoint_failure_is_a_clear_502(make_client: ClientFactory, identity: IdentityAdmin) -> None:
    identity.configure(fail=True)
    with pytest.raises(IdentityError) as caught:
        make_client().token()
    problem = identity_problem(caught.value)
    assert problem.status == 502
    assert "could not get a token" in problem.detail


def test_unreachable_identity_endpoint_is_a_clear_502(make_client: ClientFactory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{free_port()}{IDENTITY_PATH}")
    client = make_client()
    with pytest.raises(IdentityError) as caught:
        client.token()
    problem = identity_problem(caught.value)
    assert (problem.status, problem.kind) == (502, "identity-unavailable")
    assert "could not get a token" in problem.detail and "\n" not in problem.detail


def test_wrong_cloud_audience_is_explained(make_client: ClientFactory, sim: SimulatorAdmin) -> None:
    client = make_client(MDE_CLOUD="gcc")
    outcome = client.send(FILE_ALERTS, client.token(), correlation_id="aud-test-1")
    assert isinstance(outcome, Unauthorized)
    problem = outcome_problem(Api.FILE_ALERTS, outcome, client.settings)
    assert problem.status == 502
    assert "MDE_CLOUD" in problem.detail and "Invalid audience" in problem.detail


def test_send_makes_exactly_one_request(make_client: ClientFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=503, count=5)
    client = make_client()
    client.send(FILE_ALERTS, client.token(), correlation_id="one-request-1")
    assert [c["status"] for c in sim.calls("file_alerts")] == [503]


def test_get_retries_5xx_then_succeeds(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=503, count=2)
    result = make_gateway().call(FILE_ALERTS, "retry-test-1")
    assert isinstance(result.outcome, Success) and result.sent == 3
    assert [c["status"] for c in sim.calls("file_alerts")] == [503, 503, 200]


def test_get_gives_up_after_max_retries_with_502(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=500, count=1)
    sim.fault("status", status=502, count=10)
    gateway = make_gateway(MDE_MAX_RETRIES="2")
    # 500 is not retried (it may be a real bug upstream); only 429/502/503/504 are.
    assert problem_of(gateway, FILE_ALERTS, "retry-test-2").status == 502
    assert [c["status"] for c in sim.calls("file_alerts")] == [500]


def test_get_retries_exhausted(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=502, count=10)
    gateway = make_gateway(MDE_MAX_RETRIES="2")
    assert problem_of(gateway, FILE_ALERTS, "retry-test-3").status == 502
    assert len(sim.calls("file_alerts")) == 3


def test_post_is_not_retried_on_5xx_without_retry_after(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=503, count=1)
    assert problem_of(make_gateway(), CREATE, "post-test-1").status == 502
    assert len(sim.calls("create_alert")) == 1


def test_post_is_retried_on_503_with_retry_after(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=503, retry_after=1, count=1)
    sleep = FakeSleep()
    result = make_gateway(sleep=sleep).call(CREATE, "post-test-2")
    assert isinstance(result.outcome, Success) and b'"title": "client test"' in result.outcome.body
    assert sleep.waits == [1.0]  # Retry-After was honoured: the gateway waited it out before sending again
    assert [c["status"] for c in sim.calls("create_alert")] == [503, 200]


def test_post_is_not_retried_after_a_dropped_connection(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("drop", api="create_alert", count=1)
    assert problem_of(make_gateway(), CREATE, "post-test-3").status == 502
    assert len(sim.calls("create_alert")) == 1


def test_get_is_retried_after_a_dropped_connection(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("drop", api="file_alerts", count=1)
    assert isinstance(make_gateway().call(FILE_ALERTS, "drop-1").outcome, Success)
    assert len(sim.calls("file_alerts")) == 2


def test_post_is_not_retried_after_a_read_timeout(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("latency", api="create_alert", delay=3, count=1)
    problem = problem_of(make_gateway(MDE_READ_TIMEOUT_SECONDS="1"), CREATE, "post-test-4")
    assert problem.status == 504
    assert "may exist already" in problem.detail
    first = sim.wait_for_calls(1, "create_alert")  # logged once its delayed answer is done
    # And no second one follows: the gateway had answered, so a retry would have been sent (and, with no delay,
    # logged) before the first was done.
    assert [call["status"] for call in first] == [200] and len(sim.calls("create_alert")) == 1


def test_long_retry_after_is_returned_not_waited(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=429, retry_after=30, count=1)
    sleep = FakeSleep()
    gateway = make_gateway(sleep=sleep, MDE_MAX_RETRY_AFTER_SECONDS="2")
    result = gateway.call(FILE_ALERTS, "throttle-1")
    assert sleep.waits == [] and result.sent == 1  # longer than MDE_MAX_RETRY_AFTER_SECONDS: not waited
    assert isinstance(result.outcome, Throttled) and result.outcome.retry_after == 30
    problem = answer(gateway, result)
    assert isinstance(problem, Problem) and problem.retry_after == 30


def test_retries_stop_within_the_total_timeout(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("latency", api="file_alerts", delay=2.5, count=10)
    sleep = FakeSleep()
    gateway = make_gateway(MDE_READ_TIMEOUT_SECONDS="1", MDE_CONNECT_TIMEOUT_SECONDS="1",
                           MDE_TOTAL_TIMEOUT_SECONDS="4", MDE_MAX_RETRIES="5", sleep=sleep)
    assert problem_of(gateway, FILE_ALERTS, "deadline-1").status == 504
    # Two attempts fit (1 s each, the first retry at once), then a 1 s backoff and another 2 s attempt would end
    # past 4 s: the gateway gave up instead of waiting. Their late answers are logged.
    assert sleep.waits == [0.0]
    assert len(sim.wait_for_calls(2, "file_alerts")) == 2


def test_a_retry_needs_a_slot_of_the_shared_budget(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=503, count=1)
    gateway = make_gateway(limit=1)
    result = gateway.call(FILE_ALERTS, "gate-1")
    assert isinstance(result.last, Refused) and result.sent == 1
    assert problem_of(gateway, FILE_ALERTS, "gate-2").status == 429
    assert len(sim.calls("file_alerts")) == 1


def test_correlation_id_is_sent_to_defender(make_client: ClientFactory, sim: SimulatorAdmin) -> None:
    client = make_client()
    client.send(FILE_ALERTS, client.token(), correlation_id="corr-abc-123")
    assert sim.calls("file_alerts")[0]["client_request_id"] == "corr-abc-123"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A real loopback socket that must never see the gateway's token."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.5)
        yield server


@pytest.mark.parametrize("shape", [
    "http://127.0.0.1:{port}",
    # What a backslash in MDE_BASE_URL did: the allowlist saw one host, requests connects to another.
    "http://127.0.0.1:{port}\\.securitycenter.microsoft.com",
])
def test_a_request_that_would_leave_the_judged_host_is_not_sent(make_client: ClientFactory, listener: socket.socket,
                                                                caplog: pytest.LogCaptureFixture,
                                                                shape: str) -> None:
    port = listener.getsockname()[1]
    judged = make_client()
    # As if validation had been bypassed: the URL disagrees with the target the allowlist judged.
    bypassed = dataclasses.replace(judged.settings, base_url=shape.format(port=port))
    assert connection_target(bypassed.base_url) == Target("http", "127.0.0.1", port) != bypassed.target
    client = DefenderClient(bypassed, judged._credential)
    token = client.token()
    with caplog.at_level(logging.ERROR, logger="mde_alert_gateway.defender"), \
            pytest.raises(ConfigurationError) as caught:
        client.send(DefenderRequest.create_alert(CREATE_BODY), token, correlation_id="target-check-1")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and judged.settings.base_url.removeprefix("http://") in message
    with pytest.raises(TimeoutError):
        listener.accept()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"127.0.0.1:{port}" in logged
    assert token.value not in logged + message and "Bearer" not in logged + message


def test_a_base_url_requests_cannot_prepare_is_a_configuration_error(make_client: ClientFactory) -> None:
    judged = make_client()
    client = DefenderClient(dataclasses.replace(judged.settings, base_url="http://"), judged._credential)
    with pytest.raises(ConfigurationError, match="would connect to nowhere"):
        client.send(DefenderRequest.file_alerts(SEED_FILE_SHA1), client.token(), correlation_id="target-check-2")


# --- advanced hunting: Graph's runHuntingQuery on the simulator, with Graph's token ---------------------------------

HUNTED_SHA1 = "0123456789abcdef0123456789abcdef01234567"
HUNT = DefenderRequest.hunting(f'DeviceFileEvents | where SHA1 == "{HUNTED_SHA1}" | project Timestamp, ReportId, '
                               "DeviceId | take 5", "P1D")


def add_hunting_events(sim: SimulatorAdmin, count: int = 3) -> list[dict[str, Any]]:
    # A minute ago: an event stamped "now" gets a fraction of a second that may lie after the query's "now".
    minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = requests.post(f"{sim.url}/_sim/hunting/events",
                             json={"sha1": HUNTED_SHA1, "count": count, "timestamp": minute_ago}, timeout=5)
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["results"]
    return rows


def test_a_hunting_query_reaches_graph_with_a_token_for_graph(make_gateway: GatewayFactory, sim: SimulatorAdmin,
                                                              identity: IdentityAdmin) -> None:
    add_hunting_events(sim)
    gateway = make_gateway()
    result = gateway.call(HUNT, "hunt-test-1")
    assert isinstance(result.outcome, Success) and result.sent == 1
    document = json.loads(result.outcome.body)
    assert [column["name"] for column in document["schema"]] == ["Timestamp", "ReportId", "DeviceId"]
    assert len(document["results"]) == 3
    assert [t["resource"] for t in identity.issued()] == ["https://graph.microsoft.com"]  # Graph's, not Defender's
    assert [c["status"] for c in sim.calls("hunting")] == [200]


def test_defenders_token_is_refused_by_graph(make_client: ClientFactory, sim: SimulatorAdmin) -> None:
    """Why hunting needs a token of its own: Graph answers another audience 401 (the gateway never sends one)."""
    client = make_client()
    outcome = client.send(HUNT, client.token(), correlation_id="hunt-test-2")
    assert isinstance(outcome, Unauthorized) and outcome.status == 401
    assert isinstance(client.send(HUNT, client.token(service=Service.GRAPH), correlation_id="hunt-test-3"), Success)


def test_a_query_graph_cannot_run_is_rejected_with_its_message(make_gateway: GatewayFactory,
                                                              sim: SimulatorAdmin) -> None:
    result = make_gateway().call(DefenderRequest.hunting("DeviceFileEvents | summarize count() by DeviceId"),
                                 "hunt-test-4")
    assert isinstance(result.outcome, Rejected) and result.outcome.status == 400 and result.sent == 1
    assert result.outcome.error is not None and result.outcome.error.message


def test_graphs_cpu_429_blocks_hunting_until_its_time_without_calling_again(make_gateway: GatewayFactory,
                                                                            sim: SimulatorAdmin) -> None:
    blocked = requests.post(f"{sim.url}/_sim/hunting/cpu", json={"exhaust": True}, timeout=5)
    blocked.raise_for_status()
    gateway = make_gateway()
    result = gateway.call(HUNT, "hunt-test-5")
    outcome = result.outcome
    assert isinstance(outcome, Throttled) and outcome.kind is ThrottleKind.CPU and result.sent == 1
    assert outcome.until is not None and outcome.until % 900 == 0  # the simulator names the next boundary
    again = gateway.call(HUNT, "hunt-test-6")
    assert isinstance(again.last, Refused) and again.sent == 0
    assert (again.decision.reason, again.decision.blocked_kind) == (Reason.BLOCKED, "cpu")
    assert 0 < again.decision.retry_after <= 900
    assert isinstance(gateway.call(FILE_ALERTS, "hunt-test-7").outcome, Success)  # Defender's APIs are not held
    assert len(sim.calls("hunting")) == 1


def test_graphs_504_is_a_query_timeout_and_never_repeated(make_gateway: GatewayFactory, sim: SimulatorAdmin) -> None:
    sim.fault("status", api="hunting", status=504, count=3)
    result = make_gateway().call(HUNT, "hunt-test-8")
    assert isinstance(result.outcome, Unavailable) and hunting_timed_out(result.outcome) and result.sent == 1
    assert [c["status"] for c in sim.calls("hunting")] == [504]


def test_a_hunting_read_timeout_is_a_query_timeout_and_never_repeated(make_gateway: GatewayFactory,
                                                                     sim: SimulatorAdmin) -> None:
    sim.fault("latency", api="hunting", delay=3, count=3)
    gateway = make_gateway(HUNTING_TIMEOUT_SECONDS="1")
    identity = gateway.identity(service=Service.GRAPH)
    attempt = gateway.attempt(HUNT, identity, "hunt-test-9")  # the worker's way: no total timeout shortens it
    assert isinstance(attempt, Sent) and hunting_timed_out(attempt.outcome)
    assert isinstance(attempt.outcome, Unavailable) and attempt.outcome.timed_out
    assert len(sim.wait_for_calls(1, "hunting")) == 1  # the held query is logged when it is done: sent once
