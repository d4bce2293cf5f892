"""The maintenance sweep against real hosts, Azurite and the simulator, with Azure's 10-minute message lease in force:
an instance killed mid-request has its operation finished within the claim lease plus one sweep period (a create
ends 504 upstream-outcome-unknown and is never sent twice, a lookup is sent again), expired operations are
deleted, and the pending index keeps health's reading to what is pending."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.data.tables import EdmType, EntityProperty, TableClient

from localdev.azurite import Azurite
from localdev.simulator.data import SEED_FILE_SHA1
from shared.asynchronous.operations import Operation, Source
from shared.asynchronous.operations_table import EXPIRY_PREFIX, PENDING_PARTITION, ROW_KEY, TableOperationStore, _entity
from shared.defender.client import DefenderRequest
from tests.support.inputs import VALID
from tests.support.servers import FUNCTION_KEY, GatewayClient, HostFactory, IdentityAdmin, RequestQueue, SimulatorAdmin

SWEEP_SECONDS = 2
CONNECT, READ = 1, 3
#: The worker's claim lease: one attempt's connect + read timeout, and 30 s (shared.asynchronous.worker).
CLAIM_LEASE = CONNECT + READ + 30


def settings(**extra: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:12]
    return {"REQUESTS_QUEUE": "crash-" + suffix, "OPERATIONS_TABLE": "ops" + suffix, "RATE_LIMIT_TABLE": "rl" + suffix,
            "MDE_CONNECT_TIMEOUT_SECONDS": str(CONNECT), "MDE_READ_TIMEOUT_SECONDS": str(READ),
            "MAINTENANCE_SCHEDULE": f"*/{SWEEP_SECONDS} * * * * *", **extra}


def store(azurite: Azurite, table: str, clock: Callable[[], float] = time.time) -> TableOperationStore:
    return TableOperationStore(TableClient.from_connection_string(azurite.connection_string, table), 24 * 3600,
                          clock=clock)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """What `condition` gives once it is neither None nor False (a 5xx requests.Response is falsy, yet an answer)."""
    deadline = time.monotonic() + timeout
    while (found := condition()) is None or found is False:
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)
    return found


@pytest.mark.timeout(300)
def test_a_killed_instances_operations_are_finished_within_the_claim_lease_plus_one_sweep(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    shared = settings()
    operations = store(azurite, shared["OPERATIONS_TABLE"])
    doomed = host_factory(**shared)
    assert "lease 600 s)" in doomed.host.log()  # Azure's message lease: the dead host's messages wait it out
    sim.fault("latency", api="*", delay=READ - 0.5, count=2)  # both calls are on their way when the host dies
    queue = RequestQueue(azurite.connection_string, shared["REQUESTS_QUEUE"])
    create_id, lookup_id = uuid.uuid4().hex, uuid.uuid4().hex
    queue.put({"version": 1, "id": create_id, "operation": "CreateAlertByReference", "body": VALID})
    queue.put({"version": 1, "id": lookup_id, "operation": "GetFileRelatedAlerts", "fileHash": SEED_FILE_SHA1})

    def in_flight() -> bool:
        found = [operations.get(operation_id) for operation_id in (create_id, lookup_id)]
        return all(operation is not None and operation.in_flight for operation in found)

    wait_until(in_flight, 30, "both operations claimed")
    wait_until(lambda: sim.held() == 2, 30, "both requests at the simulator")
    os.killpg(doomed.host.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    survivor = host_factory(**shared)

    def answer(operation_id: str) -> requests.Response | None:
        response = survivor.get(f"/api/operations/{operation_id}")
        return response if response.status_code not in (202, 404) else None

    created = wait_until(lambda: answer(create_id), CLAIM_LEASE + SWEEP_SECONDS + 30, "the create's answer")
    looked_up = wait_until(lambda: answer(lookup_id), CLAIM_LEASE + SWEEP_SECONDS + 30, "the lookup's answer")
    recovered_in = time.monotonic() - killed_at
    print(f"recovered {recovered_in:.1f} s after the kill (claim lease {CLAIM_LEASE} s, sweep {SWEEP_SECONDS} s)")
    assert created.status_code == 504 and created.json()["type"].endswith(":upstream-outcome-unknown")
    assert looked_up.status_code == 200 and looked_up.json()["value"]
    sim.wait_for_calls(1, "create_alert", timeout=10)
    assert len(sim.calls("create_alert")) == 1  # sent once, by the instance that died; never again
    assert len(sim.wait_for_calls(2, "file_alerts", timeout=10)) == 2  # the lost lookup, and the one sent again
    # The dead instance's messages are still leased (Azure's 10 minutes): the sweep did not wait for them.
    assert queue.depth(shared["REQUESTS_QUEUE"]) == 2
    assert list(queue.service.get_queue_client(shared["REQUESTS_QUEUE"]).peek_messages()) == []
    assert "abandoned in flight" in survivor.host.log()
    survivor.host.stop()


def test_expired_operations_are_deleted_and_pending_rows_follow_their_operations(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    shared = settings()
    table = shared["OPERATIONS_TABLE"]
    two_days_ago = time.time() - 2 * 24 * 3600
    old = store(azurite, table, clock=lambda: two_days_ago)
    expired = [old.create(old.new(uuid.uuid4().hex, DefenderRequest.file_alerts(SEED_FILE_SHA1), caller="",
                                  source=Source.QUEUE, correlation_id="c")) for _ in range(30)]
    client = TableClient.from_connection_string(azurite.connection_string, table)
    legacy = [uuid.uuid4().hex for _ in range(20)]  # written by a version before the expiry index: no index rows
    for operation_id in legacy:
        record = Operation(operation_id, DefenderRequest.file_alerts(SEED_FILE_SHA1), "f", "", Source.QUEUE, "c",
                           two_days_ago, two_days_ago + 3600)
        client.create_entity(_entity(record))
    orphan = {"PartitionKey": PENDING_PARTITION, "RowKey": uuid.uuid4().hex, "Api": "file_alerts",
              "CreatedAt": 0}  # a pending row whose record never came (a crash between the two writes)
    client.create_entity(orphan)
    young = {"PartitionKey": PENDING_PARTITION, "RowKey": uuid.uuid4().hex, "Api": "file_alerts",
             "CreatedAt": EntityProperty(round(time.time() * 1000), EdmType.INT64)}  # its record may be coming
    client.create_entity(young)
    assert len(list(client.query_entities(f"RowKey eq '{ROW_KEY}'"))) == 50

    gateway = host_factory(**shared)
    fresh_id = uuid.uuid4().hex
    RequestQueue(azurite.connection_string, shared["REQUESTS_QUEUE"]).put(
        {"version": 1, "id": fresh_id, "operation": "GetFileRelatedAlerts", "fileHash": SEED_FILE_SHA1})

    def swept() -> bool:
        return len(list(client.query_entities(f"RowKey eq '{ROW_KEY}'"))) == 1
    wait_until(swept, 30, "the expired records deleted")
    remaining = list(client.list_entities())
    assert [row["PartitionKey"] for row in remaining if row["RowKey"] == ROW_KEY] == [fresh_id]
    # Done or long gone: no pending row; a row written a moment ago may have its record coming, and is kept.
    assert [row["RowKey"] for row in remaining if row["PartitionKey"] == PENDING_PARTITION] == [young["RowKey"]]
    hours = {row["PartitionKey"] for row in remaining if row["PartitionKey"].startswith(EXPIRY_PREFIX)}
    assert len(hours) == 1 and [row["RowKey"] for row in remaining if row["PartitionKey"] in hours] == [fresh_id]
    assert all(store(azurite, table).get(operation.operation.id) is None for operation in expired)
    health = gateway.get("/api/health").json()
    assert health["status"] == "healthy"
    pending = {name: api["pendingOperations"] for name, api in health["apis"].items()}
    assert pending == {"file_alerts": 1, "create_alert": 0, "file_info": 0, "hunting": 0}  # the young row's API


def test_health_counts_pending_operations_from_the_pending_index(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    shared = settings(RATE_LIMIT_CREATE_ALERT="1/60", RATE_LIMIT_NEW_STATE_SHARE="1")
    gateway: GatewayClient = host_factory(**shared)
    accepted = [gateway.create({**VALID, "title": f"waits {index}"}, headers={"Prefer": "respond-async"})
                for index in range(4)]
    assert [response.status_code for response in accepted] == [202] * 4
    sim.wait_for_calls(1, "create_alert", timeout=30)

    def report() -> dict[str, Any]:
        document: dict[str, Any] = gateway.get("/api/health").json()["apis"]["create_alert"]
        return document

    create = wait_until(lambda: (found := report())["pendingOperations"] == 3 and found, 30, "three waiting")
    assert create["oldestPendingAgeSeconds"] is not None and create["oldestPendingAgeSeconds"] >= 0
    rows = list(TableClient.from_connection_string(azurite.connection_string, shared["OPERATIONS_TABLE"])
                .query_entities(f"PartitionKey eq '{PENDING_PARTITION}'"))
    assert len(rows) == 3 and {row["Api"] for row in rows} == {"create_alert"}
    assert json.loads(requests.get(f"{gateway.url}/api/health", headers={"x-functions-key": FUNCTION_KEY},
                                   timeout=30).text)["apis"]["file_alerts"]["pendingOperations"] == 0
    gateway.host.stop()  # three creates still wait for 1/60: they must not spend a later test's budget


@pytest.mark.timeout(300)
def test_a_create_killed_while_waiting_for_its_slot_is_sent_and_one_killed_while_sending_ends_504(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """Unknown means unknown: one host dies with one create on its way to Defender and another waiting in place for
    the slot the first one holds. After the claim lease, the sweep finishes both: the one that may have reached
    Defender ends 504 upstream-outcome-unknown and is not sent again; the one that never left is sent (200)."""
    read = 8  # the first create's answer is delayed past the moment the host dies
    shared = settings(MDE_READ_TIMEOUT_SECONDS=str(read), RATE_LIMIT_CREATE_ALERT="1/3",
                      RATE_LIMIT_MARGIN_SECONDS="1", RATE_LIMIT_NEW_STATE_SHARE="1")
    operations = store(azurite, shared["OPERATIONS_TABLE"])
    sending_id, waiting_id = uuid.uuid4().hex, uuid.uuid4().hex
    titles = {sending_id: f"sending {sending_id}", waiting_id: f"waiting {waiting_id}"}

    def create(operation_id: str) -> dict[str, Any]:
        return {"version": 1, "id": operation_id, "operation": "CreateAlertByReference",
                "body": {**VALID, "title": titles[operation_id]}}

    def sent(operation_id: str) -> int:
        return sum(json.loads(call["body"])["title"] == titles[operation_id] for call in sim.calls("create_alert"))

    doomed = host_factory(**shared)
    sim.fault("latency", api="*", delay=read - 0.5, count=1)
    RequestQueue(azurite.connection_string, shared["REQUESTS_QUEUE"]).put(create(sending_id))
    wait_until(lambda: (found := operations.get(sending_id)) is not None and found.in_flight, 30, "the first sending")
    # The second waits on the waiting queue's function for the slot the first took (it frees within the hold).
    RequestQueue(azurite.connection_string, shared["REQUESTS_QUEUE"] + "-create-alert").put(create(waiting_id))

    def waiting_for_its_slot() -> bool:
        found = operations.get(waiting_id)
        return found is not None and found.lease_until > 0 and sent(waiting_id) == 0

    wait_until(waiting_for_its_slot, 30, "the second claimed, waiting for its slot")
    os.killpg(doomed.host.process.pid, signal.SIGKILL)
    survivor = host_factory(**shared)

    def answer(operation_id: str) -> requests.Response | None:
        response = survivor.get(f"/api/operations/{operation_id}")
        return response if response.status_code not in (202, 404) else None

    lease = CONNECT + read + 30
    interrupted = wait_until(lambda: answer(sending_id), lease + SWEEP_SECONDS + 30, "the first create's answer")
    recovered = wait_until(lambda: answer(waiting_id), lease + SWEEP_SECONDS + 30, "the second create's answer")
    sim.wait_for_calls(2, "create_alert", timeout=10)
    assert interrupted.status_code == 504 and interrupted.json()["type"].endswith(":upstream-outcome-unknown")
    assert recovered.status_code == 200 and recovered.json()["title"] == titles[waiting_id]
    # Each answer against what Defender got: the 504 one reached it (once), the 200 one was sent once, after the kill.
    assert (sent(sending_id), sent(waiting_id)) == (1, 1)
    assert "waiting for a slot, never sent" in survivor.host.log()
    survivor.host.stop()
