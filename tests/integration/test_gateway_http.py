"""End to end over HTTP: caller -> local Functions host -> gateway -> simulator, and back."""

from __future__ import annotations

import json
import uuid

import requests

from localdev.simulator.data import SEED_EVENT, SEED_FILE_SHA1
from tests.support.inputs import VALID
from tests.support.servers import GatewayClient, HostFactory, IdentityAdmin, SimulatorAdmin, assert_problem


def test_file_alerts_body_is_defenders_unchanged(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    response = gateway.get_alerts(SEED_FILE_SHA1)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json()
    assert document["@odata.context"].endswith("/api/$metadata#Alerts")
    assert len(document["value"]) == 2
    direct = requests.get(f"{sim.url}/api/files/{SEED_FILE_SHA1}/alerts",
                          headers={"Authorization": "Bearer " + _token(gateway, sim)}, timeout=5)
    assert document == direct.json()


def _token(gateway: GatewayClient, sim: SimulatorAdmin) -> str:
    from localdev.tokens import issue_token

    return issue_token("https://api.securitycenter.microsoft.com")[0]


def test_unknown_file_is_200_with_empty_value(gateway: GatewayClient) -> None:
    response = gateway.get_alerts("0" * 40)
    assert response.status_code == 200
    assert response.json()["value"] == []


def test_create_then_merge_into_the_open_alert(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    title = f"playbook alert {uuid.uuid4().hex[:6]}"
    first = gateway.create({**VALID, "title": title})
    assert first.status_code == 200, first.text
    alert = first.json()
    assert alert["title"] == title and alert["machineId"] == SEED_EVENT["machineId"]
    assert alert["severity"] == "Low" and alert["category"] == "Exploit"
    second = gateway.create({**VALID, "title": title})
    assert second.json()["id"] == alert["id"]
    # ... and the new alert is found through the file it concerns
    ids = [a["id"] for a in gateway.get_alerts(SEED_FILE_SHA1).json()["value"]]
    assert alert["id"] in ids


def test_event_not_found_is_404(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    # Same event, but its time cut to milliseconds: Defender needs the full precision.
    problem = assert_problem(gateway.create({**VALID, "eventTime": "2018-08-03T16:45:21.711Z"}), 404)
    assert problem["upstreamError"]["code"] == "ResourceNotFound"
    assert len(sim.calls("create_alert")) == 1


def test_event_added_to_the_simulator_can_be_alerted(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    event = {"reportId": "4242", "eventTime": "2026-11-23T10:00:00.1234567Z", "machineId": "ab" * 20,
             "computerDnsName": "new.contoso.com", "sha1": "cd" * 20, "fileName": "x.exe"}
    sim.add_event(**event)
    body = {**VALID, "reportId": "4242", "eventTime": event["eventTime"], "machineId": event["machineId"]}
    assert gateway.create(body).status_code == 200
    assert len(gateway.get_alerts("cd" * 20).json()["value"]) == 1


def test_defender_400_carries_its_error(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=400, count=1)
    problem = assert_problem(gateway.get_alerts(SEED_FILE_SHA1), 400)
    assert problem["upstreamError"]["code"] == "BadRequest"
    assert problem["upstreamError"]["target"]


def test_missing_app_role_is_502_telling_the_operator(gateway: GatewayClient, sim: SimulatorAdmin,
                                                       identity: IdentityAdmin, host_factory: HostFactory) -> None:
    identity.configure(roles=["Alert.Read.All"])
    fresh = host_factory()  # a new worker process fetches a token with the reduced roles
    problem = assert_problem(fresh.create(VALID), 502)
    assert "Alert.ReadWrite.All" in problem["detail"] and "WindowsDefenderATP" in problem["detail"]
    assert fresh.get_alerts(SEED_FILE_SHA1).status_code == 200  # Alert.Read.All is enough to read
    fresh.host.stop()


def test_upstream_429_is_passed_on_and_blocks_every_instance(sim: SimulatorAdmin, host_factory: HostFactory,
                                                              identity: IdentityAdmin) -> None:
    table = "t" + uuid.uuid4().hex[:20]
    first, second = host_factory(RATE_LIMIT_TABLE=table), host_factory(RATE_LIMIT_TABLE=table)
    sim.fault("status", status=429, retry_after=40, count=1)
    response = first.create(VALID)
    problem = assert_problem(response, 429)
    assert response.headers["Retry-After"] == "40"
    assert problem["type"].endswith("upstream-throttled")
    # The other instance holds its calls too, without spending anything upstream.
    held = second.create(VALID)
    assert_problem(held, 429)
    assert 38 <= int(held.headers["Retry-After"]) <= 40
    assert len(sim.calls("create_alert")) == 1
    # The block is per API: file alerts still flow.
    assert second.get_alerts(SEED_FILE_SHA1).status_code == 200
    first.host.stop()
    second.host.stop()


def test_upstream_5xx_is_502(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    sim.fault("status", status=500, count=1)
    assert_problem(gateway.get_alerts(SEED_FILE_SHA1), 502)


def test_upstream_timeout_is_504(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    sim.fault("latency", api="create_alert", delay=4, count=1)
    assert_problem(gateway.create(VALID), 504)
    assert len(sim.wait_for_calls(1, "create_alert")) == 1


def test_malformed_upstream_body_is_502(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    sim.fault("malformed", api="file_alerts", count=1)
    problem = assert_problem(gateway.get_alerts(SEED_FILE_SHA1), 502)
    assert "documented shape" in problem["detail"]


def test_dropped_connection_on_create_is_502_and_not_repeated(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    sim.fault("drop", api="create_alert", count=1)
    assert_problem(gateway.create(VALID), 502)
    assert len(sim.calls("create_alert")) == 1


def test_correlation_id_is_kept_and_logged(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    correlation_id = "playbook-run-" + uuid.uuid4().hex
    response = gateway.get_alerts(SEED_FILE_SHA1, headers={"X-Correlation-ID": correlation_id})
    assert response.headers["X-Correlation-ID"] == correlation_id
    assert sim.calls("file_alerts")[0]["client_request_id"] == correlation_id
    assert correlation_id in gateway.host.log()


def test_invented_correlation_id_when_none_or_unsafe(gateway: GatewayClient) -> None:
    response = gateway.get_alerts(SEED_FILE_SHA1, headers={"X-Correlation-ID": "bad\tvalue"})
    assert uuid.UUID(response.headers["X-Correlation-ID"])


def test_tokens_never_reach_the_logs(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    gateway.get_alerts(SEED_FILE_SHA1)
    gateway.create(VALID)
    log = gateway.host.log()
    assert "eyJ" not in log and "Bearer " not in log


def test_rate_limit_headers_on_every_answer(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    ok = gateway.get_alerts(SEED_FILE_SHA1)
    assert "RateLimit-Policy" in ok.headers and "RateLimit" in ok.headers
    bad = gateway.get_alerts("abc")
    assert "RateLimit-Policy" in bad.headers


def test_a_method_the_route_does_not_take_is_404_as_in_azure(gateway: GatewayClient) -> None:
    response = requests.post(f"{gateway.url}/api/files/{SEED_FILE_SHA1}/alerts",
                             headers={"x-functions-key": gateway.key}, data=json.dumps({}), timeout=10)
    assert response.status_code == 404 and "Allow" not in response.headers



# A Defender 429 blocks its API on the host's table for a while: these tests use hosts of their own.

def test_defenders_429_without_retry_after_is_told_as_defenders(host_factory: HostFactory, sim: SimulatorAdmin,
                                                                identity: IdentityAdmin) -> None:
    """One call went to Defender: the caller must not read "Nothing was sent to Defender"."""
    gateway = host_factory()
    sim.fault("status", status=429, api="file_alerts", count=1)  # no Retry-After
    response = gateway.get_alerts(SEED_FILE_SHA1)
    problem = assert_problem(response, 429)
    assert problem["type"].endswith(":upstream-throttled")
    assert "Nothing was sent" not in problem["detail"]
    assert response.headers["Retry-After"] == "60"  # Defender names no wait: a minute, its shortest window
    assert len(sim.calls("file_alerts")) == 1
    gateway.host.stop()


def test_defenders_503_with_a_long_retry_after_passes_the_wait_on(gateway: GatewayClient,
                                                                  sim: SimulatorAdmin) -> None:
    sim.fault("status", status=503, retry_after=30, api="file_alerts", count=1)  # the host waits up to 2 s
    response = gateway.get_alerts(SEED_FILE_SHA1)
    problem = assert_problem(response, 503)
    assert problem["type"].endswith(":upstream-unavailable")
    assert response.headers["Retry-After"] == "30"
    assert len(sim.calls("file_alerts")) == 1


def test_ratelimit_header_is_true_after_defenders_429(host_factory: HostFactory, sim: SimulatorAdmin,
                                                      identity: IdentityAdmin) -> None:
    gateway = host_factory()
    sim.fault("status", status=429, retry_after=20, api="create_alert", count=1)
    response = gateway.create(VALID)
    assert_problem(response, 429)
    assert response.headers["Retry-After"] == "20"
    _, remaining, reset = response.headers["RateLimit"].split(";")
    assert remaining == "r=0" and int(reset.removeprefix("t=")) >= 20, response.headers["RateLimit"]
    gateway.host.stop()
