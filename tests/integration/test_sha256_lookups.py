"""Lookups by SHA-256 over loopback HTTP, against a local host, Azurite and the simulator: the SHA-256 is resolved
to the file's SHA-1 with Get file information (File.Read.All, its own budget), kept in FILE_HASH_TABLE, then
looked up like the SHA-1; synchronously, with Prefer: respond-async, with an Idempotency-Key, and from the queue."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from localdev.azurite import Azurite
from localdev.simulator.data import DOCS_FILE_SHA1, DOCS_FILE_SHA256, SEED_FILE_SHA1, SEED_FILE_SHA256
from shared.defender.facts import file_alerts_path, file_info_path
from tests.support.inputs import lookup_message
from tests.support.servers import (
    GatewayClient,
    HostFactory,
    IdentityAdmin,
    RequestQueue,
    SimulatorAdmin,
    assert_problem,
)

UNKNOWN_SHA256 = "f" * 64
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
ASYNC = {"Prefer": "respond-async"}


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:20]


@pytest.fixture(scope="module")
def hash_table() -> str:
    return unique("h")


@pytest.fixture(scope="module")
def queue_name() -> str:
    return "sha256-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def sha_gateway(host_factory: HostFactory, hash_table: str, queue_name: str) -> GatewayClient:
    """A host of its own map and queue (the answer cache off, as for every test host unless asked)."""
    return host_factory(FILE_HASH_TABLE=hash_table, REQUESTS_QUEUE=queue_name)


@pytest.fixture
def hashes(azurite: Azurite, hash_table: str) -> TableClient:
    """The host's FILE_HASH_TABLE in Azurite."""
    return TableClient.from_connection_string(azurite.connection_string, hash_table)


@pytest.fixture
def gw(sha_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin, hashes: TableClient) -> GatewayClient:
    """The module's host, with the simulator and identity reset and the seeded files' mappings forgotten."""
    for sha256 in (SEED_FILE_SHA256, DOCS_FILE_SHA256):
        with contextlib.suppress(ResourceNotFoundError):
            hashes.delete_entity("sha256", sha256)
    return sha_gateway


def paths(sim: SimulatorAdmin) -> list[tuple[str, str]]:
    return [(call["api"], call["path"]) for call in sim.calls()]


def test_a_seeded_files_sha256_answers_its_sha1s_alerts(gw: GatewayClient, sim: SimulatorAdmin) -> None:
    response = gw.get_alerts(SEED_FILE_SHA256.upper())
    assert response.status_code == 200, response.text
    assert paths(sim) == [("file_info", file_info_path(SEED_FILE_SHA256)),
                          ("file_alerts", file_alerts_path(SEED_FILE_SHA1))]
    by_sha1 = gw.get_alerts(SEED_FILE_SHA1)
    assert by_sha1.status_code == 200
    assert response.json() == by_sha1.json() and len(response.json()["value"]) == 2
    assert response.headers["Content-Type"] == by_sha1.headers["Content-Type"]
    assert response.headers["RateLimit-Policy"] == by_sha1.headers["RateLimit-Policy"]


def test_a_repeated_sha256_costs_no_resolution(gw: GatewayClient, sim: SimulatorAdmin, hashes: TableClient) -> None:
    first, second = gw.get_alerts(SEED_FILE_SHA256), gw.get_alerts(SEED_FILE_SHA256)
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    assert len(sim.calls("file_info")) == 1
    assert len(sim.calls("file_alerts")) == 2  # FILE_ALERTS_CACHE_SECONDS=0: the alerts are asked each time
    entity = hashes.get_entity("sha256", SEED_FILE_SHA256)
    assert (entity["PartitionKey"], entity["RowKey"], entity["Sha1"]) == ("sha256", SEED_FILE_SHA256, SEED_FILE_SHA1)


def test_an_unknown_sha256_is_200_with_no_alerts_like_an_unknown_sha1(
        gw: GatewayClient, sim: SimulatorAdmin, hashes: TableClient) -> None:
    response = gw.get_alerts(UNKNOWN_SHA256)
    assert response.status_code == 200, response.text
    assert paths(sim) == [("file_info", file_info_path(UNKNOWN_SHA256))]  # no alerts call
    unknown_sha1 = gw.get_alerts("0" * 40)
    assert response.json() == unknown_sha1.json() == {"@odata.context": unknown_sha1.json()["@odata.context"],
                                                      "value": []}
    assert response.headers["Cache-Control"] == "no-store"
    with pytest.raises(ResourceNotFoundError):
        hashes.get_entity("sha256", UNKNOWN_SHA256)  # nothing kept: the file may become known


@pytest.mark.parametrize("value", [MD5, MD5.upper(), "ab" * 64, UNKNOWN_SHA256[:-1], "not-a-hash"])
def test_md5_and_other_values_are_400_naming_the_route_parameter(gw: GatewayClient, sim: SimulatorAdmin,
                                                                 value: str) -> None:
    problem = assert_problem(gw.get_alerts(value), 400, "route.fileHash")
    if value.lower() == MD5:
        assert "MD5" in problem["errors"][0]["message"]
    assert sim.calls() == []


def test_without_file_read_all_a_sha256_is_502_naming_the_role(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    identity.configure(roles=["Alert.Read.All", "Alert.ReadWrite.All"])
    fresh = host_factory(FILE_HASH_TABLE=unique("h"))  # a new worker process fetches a token with these roles
    try:
        response = fresh.get_alerts(SEED_FILE_SHA256)
        problem = assert_problem(response, 502)
        assert problem["type"].endswith(":upstream-forbidden")
        assert "File.Read.All" in problem["detail"] and "WindowsDefenderATP" in problem["detail"]
        assert [call["api"] for call in sim.calls()] == ["file_info"]
        assert fresh.get_alerts(SEED_FILE_SHA1).status_code == 200  # SHA-1 lookups need no File.Read.All
    finally:
        fresh.host.stop()


def test_a_spent_file_information_budget_is_429_and_sha1_lookups_still_pass(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    limited = host_factory(FILE_HASH_TABLE=unique("h"), RATE_LIMIT_FILE_INFO="1/60", RATE_LIMIT_NEW_STATE_SHARE="1")
    try:
        assert limited.get_alerts(SEED_FILE_SHA256).status_code == 200
        refused = limited.get_alerts(DOCS_FILE_SHA256)
        problem = assert_problem(refused, 429)
        assert problem["type"].endswith(":rate-limited") and "Nothing was sent to Defender." in problem["detail"]
        assert 58 <= int(refused.headers["Retry-After"]) <= 62
        assert refused.headers["RateLimit-Policy"] == '"60s";q=1;w=60'
        assert limited.get_alerts(SEED_FILE_SHA1).status_code == 200  # its own budget: SHA-1 lookups still pass
        assert limited.get_alerts(SEED_FILE_SHA256).status_code == 200  # known: no resolution needed
        assert len(sim.calls("file_info")) == 1 and len(sim.calls("file_alerts")) == 3
    finally:
        limited.host.stop()


def test_a_queue_message_with_a_sha256_becomes_an_operation_with_the_alerts(
        gw: GatewayClient, sim: SimulatorAdmin, azurite: Azurite, queue_name: str) -> None:
    queue = RequestQueue(azurite.connection_string, queue_name)
    known, unknown = str(uuid.uuid4()), str(uuid.uuid4())
    reply_queue = "replies-" + uuid.uuid4().hex[:8]
    queue.put(lookup_message(known, SEED_FILE_SHA256.upper(), replyQueue=reply_queue))
    queue.put(lookup_message(unknown, UNKNOWN_SHA256))
    final = gw.wait_for_operation(f"{gw.url}/api/operations/{known}", queued=True)
    assert final.status_code == 200, final.text
    assert final.json()["value"] == gw.get_alerts(SEED_FILE_SHA1).json()["value"]
    [reply] = queue.drain(reply_queue, count=1)
    assert reply["id"] == known and reply["status"] == 200
    empty = gw.wait_for_operation(f"{gw.url}/api/operations/{unknown}", queued=True)
    assert empty.status_code == 200 and empty.json()["value"] == []
    asked: dict[str, Any] = {}
    for api, path in paths(sim):
        asked.setdefault(api, []).append(path)
    assert sorted(asked["file_info"]) == sorted([file_info_path(SEED_FILE_SHA256), file_info_path(UNKNOWN_SHA256)])


def test_an_invalid_file_hash_in_a_queue_message_is_poisoned_naming_it(
        gw: GatewayClient, sim: SimulatorAdmin, azurite: Azurite, queue_name: str) -> None:
    queue = RequestQueue(azurite.connection_string, queue_name)
    message_id = str(uuid.uuid4())
    queue.put(lookup_message(message_id, MD5))
    poisoned = [entry for entry in queue.drain(queue_name + "-poison", count=1)]
    assert [error["field"] for error in poisoned[0]["errors"]] == ["fileHash"]
    assert_problem(gw.wait_for_operation(f"{gw.url}/api/operations/{message_id}", queued=True), 400, "fileHash")
    assert sim.calls() == []


def test_respond_async_by_sha256_is_202_then_the_alerts(gw: GatewayClient, sim: SimulatorAdmin) -> None:
    accepted = gw.get_alerts(SEED_FILE_SHA256, headers=ASYNC)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["operation"] == "GetFileRelatedAlerts"
    final = gw.wait_for_operation(accepted.headers["Location"])
    assert final.status_code == 200, final.text
    assert final.json()["value"] == gw.get_alerts(SEED_FILE_SHA1).json()["value"]
    assert len(sim.calls("file_info")) == 1


def test_an_idempotency_key_on_a_sha256_lookup_runs_once(gw: GatewayClient, sim: SimulatorAdmin) -> None:
    key = {"Idempotency-Key": unique("k")}
    first = gw.get_alerts(DOCS_FILE_SHA256, headers=key)
    assert first.status_code == 200, first.text
    assert first.json()["value"] == []  # Defender knows the file, but no alert names it
    repeat = gw.get_alerts(DOCS_FILE_SHA256, headers=key)
    assert repeat.status_code == 200 and repeat.content == first.content
    assert paths(sim) == [("file_info", file_info_path(DOCS_FILE_SHA256)),
                          ("file_alerts", file_alerts_path(DOCS_FILE_SHA1))]
