"""Queue input against a local host running the queue trigger on Azurite: messages to operations, replies,
poison with reasons, idempotent ids, Event Grid envelopes, and pacing that never poisons a throttled message."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from localdev.azurite import Azurite
from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.inputs import VALID, create_message, lookup_message
from tests.support.servers import (
    GatewayClient,
    HostFactory,
    IdentityAdmin,
    RequestQueue,
    SimulatorAdmin,
    assert_problem,
)


@pytest.fixture(scope="module")
def queue_name() -> str:
    return "requests-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def queue_gateway(host_factory: HostFactory, queue_name: str) -> GatewayClient:
    return host_factory(REQUESTS_QUEUE=queue_name)


@pytest.fixture
def queue(azurite: Azurite, queue_name: str, queue_gateway: GatewayClient) -> RequestQueue:
    return RequestQueue(azurite.connection_string, queue_name)


def operation(gateway: GatewayClient, operation_id: str) -> str:
    return f"{gateway.url}/api/operations/{operation_id}"


def test_a_create_message_becomes_an_operation_with_the_synchronous_answer_and_a_reply(
        queue: RequestQueue, queue_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    message_id = str(uuid.uuid4())
    reply_queue = "replies-" + uuid.uuid4().hex[:8]
    queue.put(create_message(message_id, replyQueue=reply_queue))
    final = queue_gateway.wait_for_operation(operation(queue_gateway, message_id), queued=True)
    assert final.status_code == 200 and final.json()["title"] == VALID["title"]
    [reply] = queue.drain(reply_queue, count=1)
    assert reply["id"] == message_id and reply["status"] == 200 and reply["body"] == final.json()
    assert len(sim.calls("create_alert")) == 1


def test_a_lookup_message_and_base64_and_event_grid_envelopes(
        queue: RequestQueue, queue_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    plain, encoded, event, cloud = (str(uuid.uuid4()) for _ in range(4))
    queue.put(lookup_message(plain, SEED_FILE_SHA1))
    queue.put(base64.b64encode(json.dumps(lookup_message(encoded, SEED_FILE_SHA1)).encode()).decode())
    queue.put({"id": event, "eventType": "Contoso.Detection", "subject": "x", "eventTime": "2026-11-23T00:00:00Z",
               "dataVersion": "1", "data": {"version": 1, "operation": "GetFileRelatedAlerts",
                                            "fileHash": SEED_FILE_SHA1}})
    queue.put({"specversion": "1.0", "id": "ce", "source": "contoso", "type": "Contoso.Detection",
               "data": lookup_message(cloud, SEED_FILE_SHA1)})
    for message_id in (plain, encoded, event, cloud):
        final = queue_gateway.wait_for_operation(operation(queue_gateway, message_id), queued=True)
        assert final.status_code == 200 and final.json()["value"], message_id


def test_a_repeated_message_id_runs_once_and_a_reused_one_is_poisoned(
        queue: RequestQueue, queue_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    message_id = str(uuid.uuid4())
    body = {**VALID, "title": f"repeat {message_id}"}  # other hosts' queued work may reach the shared simulator
    for _ in range(3):
        queue.put(create_message(message_id, body))
    final = queue_gateway.wait_for_operation(operation(queue_gateway, message_id), queued=True)
    assert final.status_code == 200
    queue.put(create_message(message_id, {**VALID, "title": "another request"}))
    poisoned = queue.drain(queue.name + "-poison", count=1)
    assert poisoned[0]["reason"] == "id-reused"
    assert queue_gateway.get(operation(queue_gateway, message_id)).content == final.content
    sim.wait_for_calls(1, "create_alert")
    assert [call for call in sim.calls("create_alert") if message_id in (call["body"] or "")] != []
    assert len([call for call in sim.calls("create_alert") if message_id in (call["body"] or "")]) == 1


def test_invalid_messages_go_to_poison_with_their_reason_and_a_failed_operation(
        queue: RequestQueue, queue_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    bad_field = str(uuid.uuid4())
    queue.put(create_message(bad_field, {**VALID, "severity": "Severe"}))
    queue.put("not json at all")
    queue.put({"version": 2, "id": "x" * 200, "operation": "Nope"})
    poisoned = queue.drain(queue.name + "-poison", count=3)
    assert sorted(entry["reason"] for entry in poisoned) == ["invalid-message", "invalid-message", "not-json"]
    fields = {error["field"] for entry in poisoned for error in entry.get("errors", [])}
    assert fields == {"body.severity", "id", "version", "operation", "message"}
    assert all(entry["detail"] and "message" in entry for entry in poisoned)
    failed = queue_gateway.wait_for_operation(operation(queue_gateway, bad_field), queued=True)
    assert_problem(failed, 400, "body.severity")
    assert sim.calls() == []


def test_throttled_messages_wait_for_the_budget_and_are_never_poisoned(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    name = "paced-" + uuid.uuid4().hex[:12]
    gateway = host_factory(REQUESTS_QUEUE=name, RATE_LIMIT_CREATE_ALERT="2/2", RATE_LIMIT_NEW_STATE_SHARE="1",
                           RATE_LIMIT_MARGIN_SECONDS="0.2")
    queue = RequestQueue(azurite.connection_string, name)
    ids = [str(uuid.uuid4()) for _ in range(8)]
    for message_id in ids:
        queue.put(create_message(message_id))
    for message_id in ids:
        assert gateway.wait_for_operation(operation(gateway, message_id), timeout=60, queued=True).status_code == 200
    assert len(sim.calls("create_alert")) == 8
    for poison in (name + "-poison", name + "-create-alert-poison"):
        assert queue.depth(poison) == 0
    assert [call for call in sim.calls() if call.get("status") == 429] == []


def test_a_spent_budget_holds_up_no_other_api(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """Creates wait for their budget in their own queue, so lookups queued behind them are answered at once."""
    name = "apart-" + uuid.uuid4().hex[:12]
    gateway = host_factory(REQUESTS_QUEUE=name, RATE_LIMIT_CREATE_ALERT="1/60", RATE_LIMIT_NEW_STATE_SHARE="1")
    queue = RequestQueue(azurite.connection_string, name)
    creates, lookups = [str(uuid.uuid4()) for _ in range(40)], [str(uuid.uuid4()) for _ in range(6)]
    for message_id in creates:
        queue.put(create_message(message_id))
    for message_id in lookups:
        queue.put(lookup_message(message_id, SEED_FILE_SHA1))
    try:
        for message_id in lookups:  # more creates than the host runs at once stand before them
            final = gateway.wait_for_operation(operation(gateway, message_id), timeout=30, queued=True)
            assert final.status_code == 200 and final.json()["value"]
        assert len(sim.calls("create_alert")) == 1  # one slot a minute: the others wait in their own queue
        report = gateway.get("/api/health").json()
    finally:  # the waiting creates would go on reaching the simulator during later tests
        gateway.host.stop()
    waiting = report["apis"]["create_alert"]["waitingQueue"]
    assert waiting["name"] == name + "-create-alert" and waiting["depth"] >= 1 and waiting["poisonDepth"] == 0
    assert report["apis"]["create_alert"]["pendingOperations"] == 39
    assert report["apis"]["file_alerts"]["waitingQueue"] == {"name": name + "-file-alerts", "depth": 0,
                                                             "poisonDepth": 0}
    assert report["queue"]["poisonDepth"] == 0


def test_defenders_429_reschedules_without_poisoning(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    name = "throttled-" + uuid.uuid4().hex[:12]
    gateway = host_factory(REQUESTS_QUEUE=name)
    queue = RequestQueue(azurite.connection_string, name)
    sim.fault("status", api="create_alert", status=429, count=1, retry_after=1)
    message_id = str(uuid.uuid4())
    queue.put(create_message(message_id))
    assert gateway.wait_for_operation(operation(gateway, message_id), timeout=60, queued=True).status_code == 200
    assert len(sim.calls("create_alert")) == 2
    for poison in (name + "-poison", name + "-create-alert-poison"):
        assert queue.depth(poison) == 0
