"""The shared rate limit as callers see it, over HTTP through local hosts backed by Azurite."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from localdev.azurite import Azurite, start_azurite
from localdev.processes import free_port
from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.inputs import VALID
from tests.support.servers import HostFactory, IdentityAdmin, SimulatorAdmin, assert_problem


def test_limit_is_exact_and_refusals_cost_no_upstream_call(host_factory: HostFactory, sim: SimulatorAdmin,
                                                           identity: IdentityAdmin) -> None:
    # The whole limit from the first call (a new state's share is tested with the limiter).
    gateway = host_factory(RATE_LIMIT_CREATE_ALERT="3/60", RATE_LIMIT_NEW_STATE_SHARE="1")
    remaining = []
    for _ in range(3):
        response = gateway.create(VALID)
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Policy"] == '"60s";q=3;w=60'
        remaining.append(response.headers["RateLimit"].split(";")[1])
    assert remaining == ["r=2", "r=1", "r=0"]
    refused = gateway.create(VALID)
    problem = assert_problem(refused, 429)
    assert problem["type"].endswith(":rate-limited")
    assert 55 <= int(refused.headers["Retry-After"]) <= 62
    assert refused.headers["RateLimit"].startswith('"60s";r=0;')
    assert len(sim.calls("create_alert")) == 3
    gateway.host.stop()


def test_retries_take_slots_too(host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    gateway = host_factory(RATE_LIMIT_FILE_ALERTS="2/60", RATE_LIMIT_NEW_STATE_SHARE="1")
    sim.fault("status", status=503, count=5)
    response = gateway.get_alerts(SEED_FILE_SHA1)
    assert_problem(response, 429)
    assert [c["status"] for c in sim.calls("file_alerts")] == [503, 503]
    gateway.host.stop()


def test_storage_down_fails_closed_then_recovers(host_factory: HostFactory, sim: SimulatorAdmin,
                                                 identity: IdentityAdmin) -> None:
    ports = (free_port(), free_port(), free_port())
    dead = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
            f"TableEndpoint=http://127.0.0.1:{ports[2]}/devstoreaccount1;"
            f"QueueEndpoint=http://127.0.0.1:{ports[1]}/devstoreaccount1;")
    gateway = host_factory(AzureWebJobsStorage=dead)
    response = gateway.get_alerts(SEED_FILE_SHA1)
    problem = assert_problem(response, 503)
    assert "never admits blindly" in problem["detail"]
    assert sim.calls() == []
    azurite = start_azurite(blob_port=ports[0], queue_port=ports[1], table_port=ports[2])
    try:
        assert gateway.get_alerts(SEED_FILE_SHA1).status_code == 200
    finally:
        azurite.stop()
        gateway.host.stop()


def blocked(states: TableClient) -> bool:
    """Whether a rate-limit state in `states` holds a block (the table is created by the first call)."""
    try:
        return any("BlockedUntil" in entity for entity in states.list_entities())
    except ResourceNotFoundError:
        return False


def test_a_429_that_was_retried_still_blocks_other_instances(host_factory: HostFactory, sim: SimulatorAdmin,
                                                             identity: IdentityAdmin, azurite: Azurite) -> None:
    table = "t" + uuid.uuid4().hex[:20]
    first, second = host_factory(RATE_LIMIT_TABLE=table), host_factory(RATE_LIMIT_TABLE=table)
    sim.fault("status", status=429, retry_after=3, api="file_alerts", count=1)
    states = TableClient.from_connection_string(azurite.connection_string, table)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(first.get_alerts, SEED_FILE_SHA1)  # waits out the 3 s, then retries
        deadline = time.monotonic() + 15  # until the first host has shared Defender's block through the table
        while not blocked(states):
            assert time.monotonic() < deadline, "the 429's block never reached the table"
            time.sleep(0.05)
        held = second.get_alerts(SEED_FILE_SHA1)
        assert_problem(held, 429)
        assert 1 <= int(held.headers["Retry-After"]) <= 3
        assert waiting.result().status_code == 200
    assert [c["status"] for c in sim.calls("file_alerts")] == [429, 200]
    first.host.stop()
    second.host.stop()
