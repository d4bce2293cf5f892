"""Asynchronous calls over HTTP against a local host, Azurite and the simulator: Prefer: respond-async,
GET /api/operations/{id}, Idempotency-Key, and 202 instead of 429 when the setting asks for it."""

from __future__ import annotations

import json
import uuid

import pytest

from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.inputs import VALID
from tests.support.servers import GatewayClient, HostFactory, IdentityAdmin, SimulatorAdmin, assert_problem

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def async_gateway(host_factory: HostFactory) -> GatewayClient:
    return host_factory()


def test_respond_async_is_202_with_location_then_the_synchronous_answer(
        async_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    accepted = async_gateway.create(VALID, headers=ASYNC)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert location.startswith(async_gateway.url + "/api/operations/")
    assert int(accepted.headers["Retry-After"]) >= 1
    assert accepted.headers["Preference-Applied"] == "respond-async"
    body = accepted.json()
    assert body["status"] == "pending" and location.endswith("/" + body["id"])
    assert body["operation"] == "CreateAlertByReference"

    final = async_gateway.wait_for_operation(location)
    synchronous = async_gateway.create(VALID)
    assert final.status_code == synchronous.status_code == 200
    assert final.headers["Content-Type"] == synchronous.headers["Content-Type"]
    assert final.json()["title"] == synchronous.json()["title"] == VALID["title"]
    assert len(sim.calls("create_alert")) == 2
    # Polling again replays the same answer and sends nothing.
    again = async_gateway.get(location)
    assert again.status_code == 200 and again.content == final.content
    assert len(sim.calls("create_alert")) == 2


def test_async_lookup_answers_the_alerts_list(async_gateway: GatewayClient, sim: SimulatorAdmin,
                                              identity: IdentityAdmin) -> None:
    accepted = async_gateway.get_alerts(SEED_FILE_SHA1, headers=ASYNC)
    assert accepted.status_code == 202, accepted.text
    final = async_gateway.wait_for_operation(accepted.headers["Location"])
    assert final.status_code == 200
    assert final.json()["value"] == async_gateway.get_alerts(SEED_FILE_SHA1).json()["value"]


def test_event_not_found_is_the_operations_answer_too(async_gateway: GatewayClient, sim: SimulatorAdmin,
                                                      identity: IdentityAdmin) -> None:
    body = {**VALID, "reportId": "999999"}
    final = async_gateway.wait_for_operation(async_gateway.create(body, headers=ASYNC).headers["Location"])
    problem = assert_problem(final, 404)
    assert problem["type"].endswith(":event-not-found")
    assert_problem(async_gateway.create(body), 404)


def test_invalid_input_is_answered_at_once_and_nothing_is_queued(async_gateway: GatewayClient,
                                                                 sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    assert_problem(async_gateway.create({**VALID, "severity": "Severe"}, headers=ASYNC), 400, "body.severity")
    assert_problem(async_gateway.get_alerts("abc", headers=ASYNC), 400, "route.fileHash")
    response = async_gateway.create(b"{", headers=ASYNC)
    assert response.status_code == 400
    assert sim.calls() == []


def test_an_idempotency_key_repeat_is_the_same_operation_and_spends_nothing(
        async_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4()), **ASYNC}
    sim.fault("latency", api="create_alert", delay=3, count=1)  # the first is still pending when repeated
    first = async_gateway.create(VALID, headers=key)
    second = async_gateway.create(VALID, headers=key)
    assert first.status_code == 202 and second.status_code == 202  # pending: the same operation, again
    assert second.headers["Location"] == first.headers["Location"]
    final = async_gateway.wait_for_operation(first.headers["Location"])
    assert final.status_code == 200
    repeat = async_gateway.create(VALID, headers=key)
    assert repeat.status_code == 200 and repeat.content == final.content
    assert len(sim.wait_for_calls(1, "create_alert")) == 1
    # The same key for another request is refused, and nothing is sent.
    reused = async_gateway.create({**VALID, "title": "another"}, headers=key)
    assert assert_problem(reused, 422)["type"].endswith(":idempotency-key-reuse")
    assert len(sim.calls("create_alert")) == 1


def test_an_idempotency_key_on_a_synchronous_call_keeps_its_answer(
        async_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
    first = async_gateway.create(VALID, headers=key)
    assert first.status_code == 200, first.text
    repeat = async_gateway.create(VALID, headers=key)
    assert repeat.status_code == 200 and repeat.content == first.content
    assert len(sim.calls("create_alert")) == 1
    assert_problem(async_gateway.create(VALID, headers={"Idempotency-Key": "\x01bad"}), 400,
                   "header.Idempotency-Key")


def test_unknown_and_malformed_operation_ids(async_gateway: GatewayClient, sim: SimulatorAdmin,
                                             identity: IdentityAdmin) -> None:
    assert assert_problem(async_gateway.get("/api/operations/" + uuid.uuid4().hex), 404)["type"].endswith(
        ":operation-not-found")
    assert_problem(async_gateway.get("/api/operations/-x"), 400, "route.id")


def test_health_reports_budget_queue_and_storage(async_gateway: GatewayClient, sim: SimulatorAdmin,
                                                 identity: IdentityAdmin) -> None:
    response = async_gateway.get("/api/health")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "healthy" and report["storage"] == {"tables": True, "queues": True}
    assert report["queue"]["depth"] == 0
    create = report["apis"]["create_alert"]
    assert create["admitsNow"] is True and create["windows"][0]["limit"] == 5000
    assert create["pendingOperations"] == 0 and create["oldestPendingAgeSeconds"] is None
    assert create["waitingQueue"]["name"].endswith("-create-alert") and create["waitingQueue"]["depth"] == 0
    assert async_gateway.get("/api/health", headers={"x-functions-key": "wrong"}).status_code == 401


def test_health_describes_each_window_as_the_next_call_finds_it(host_factory: HostFactory, sim: SimulatorAdmin,
                                                                identity: IdentityAdmin) -> None:
    """Fresh state: the new-state share (50 of 100) and no call counted (t=0); after one call, what its RateLimit
    header said."""
    gateway = host_factory(RATE_LIMIT_FILE_ALERTS="100/60", RATE_LIMIT_NEW_STATE_SHARE="0.5")

    def window() -> dict[str, int]:
        report = gateway.get("/api/health").json()
        (first,) = report["apis"]["file_alerts"]["windows"]
        return dict(first)

    first = gateway.get("/api/health")
    assert first.status_code == 200 and first.json()["status"] == "healthy", first.text  # no table yet: nothing wrong
    fresh = window()
    assert (fresh["remaining"], fresh["resetSeconds"]) == (50, 0), fresh
    answer = gateway.get_alerts(SEED_FILE_SHA1)
    assert answer.status_code == 200
    assert answer.headers["RateLimit"] == '"60s";r=49;t=62'
    after = window()
    assert after["remaining"] == 49 and 60 <= after["resetSeconds"] <= 62, after


def test_a_spent_budget_answers_202_when_the_setting_asks(host_factory: HostFactory, sim: SimulatorAdmin,
                                                          identity: IdentityAdmin) -> None:
    gateway = host_factory(RATE_LIMIT_CREATE_ALERT="1/3", RATE_LIMIT_NEW_STATE_SHARE="1",
                           RATE_LIMIT_MARGIN_SECONDS="0", GATEWAY_ASYNC_ON_THROTTLE="true")
    assert gateway.create(VALID).status_code == 200
    queued = gateway.create(VALID)
    assert queued.status_code == 202, queued.text
    assert "Preference-Applied" not in queued.headers and int(queued.headers["Retry-After"]) >= 1
    final = gateway.wait_for_operation(queued.headers["Location"])
    assert final.status_code == 200 and json.loads(final.content)["title"] == VALID["title"]
    assert len(sim.calls("create_alert")) == 2
