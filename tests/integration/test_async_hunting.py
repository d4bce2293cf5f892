"""Advanced hunting through the queue, over a local host, Azurite, the identity endpoint and the simulator's Graph:
Prefer: respond-async is 202 + Location, and GET /api/operations/{id} answers in the shape the caller asked for (Graph's
or Defender's); an answer too large for a table entity is kept as a blob that the operation names and that goes with
it at the sweep; a query Graph rejects ends its operation with that problem, sent once."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from shared.asynchronous.maintenance import Maintenance
from shared.asynchronous.operations_table import ROW_KEY, TableOperationStore
from shared.asynchronous.queues_memory import MemoryQueues
from shared.asynchronous.results import RESULT_INLINE_LIMIT
from shared.asynchronous.results_blob import BlobResultsStore
from shared.asynchronous.settings import AsyncSettings
from shared.defender.facts import HUNTING_MAX_QUERY_BYTES
from shared.validation.hunting import query_json_bytes
from tests.support.servers import FUNCTION_KEY, GatewayClient, HostFactory, IdentityAdmin, SimulatorAdmin

ASYNC = {"Prefer": "respond-async"}
GRAPH_PATH = "/api/security/runHuntingQuery"
DEFENDER_PATH = "/api/advancedqueries/run"


@pytest.fixture(scope="module")
def container() -> str:
    return "results-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def operations_table() -> str:
    return "o" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="module")
def hunting_gateway(host_factory: HostFactory, container: str, operations_table: str) -> GatewayClient:
    """A host whose Graph is the simulator (as the local stack sets GRAPH_BASE_URL), its own results container."""
    return host_factory(RESULTS_CONTAINER=container, OPERATIONS_TABLE=operations_table)


def hunt(gateway: GatewayClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) \
        -> requests.Response:
    return requests.post(f"{gateway.url}{path}", data=json.dumps(body), timeout=60,
                         headers={"x-functions-key": FUNCTION_KEY, "Content-Type": "application/json",
                                  **(headers or {})})


def add_events(sim: SimulatorAdmin, sha1: str, count: int) -> list[dict[str, Any]]:
    # A minute back: an event stamped "now" may lie a fraction of a second after the query's "now".
    minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = requests.post(f"{sim.url}/_sim/hunting/events", timeout=10,
                             json={"sha1": sha1, "count": count, "timestamp": minute_ago})
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["results"]
    return rows


def query_for(sha1: str, project: str = " | project Timestamp, ReportId, DeviceId") -> str:
    return f'DeviceFileEvents | where SHA1 == "{sha1}"{project} | order by ReportId asc'


def accepted(response: requests.Response) -> str:
    assert response.status_code == 202, response.text
    assert response.headers["Preference-Applied"] == "respond-async"
    assert response.json()["operation"] == "RunHuntingQuery"
    location: str = response.headers["Location"]
    return location


def test_a_graph_shape_query_is_202_then_graphs_answer(hunting_gateway: GatewayClient, sim: SimulatorAdmin,
                                                       identity: IdentityAdmin) -> None:
    sha1 = uuid.uuid4().hex + "00000000"
    rows = add_events(sim, sha1, 3)
    location = accepted(hunt(hunting_gateway, GRAPH_PATH, {"Query": query_for(sha1), "Timespan": "P1D"}, ASYNC))
    final = hunting_gateway.wait_for_operation(location)
    assert final.status_code == 200, final.text
    document = final.json()
    assert [column["name"] for column in document["schema"]] == ["Timestamp", "ReportId", "DeviceId"]
    assert [row["ReportId"] for row in document["results"]] == [row["ReportId"] for row in rows]
    assert len(sim.calls("hunting")) == 1
    again = hunting_gateway.get(location)  # polled again: the same answer, nothing sent
    assert again.status_code == 200 and again.content == final.content and len(sim.calls("hunting")) == 1


def test_a_defender_shape_query_is_answered_in_defenders_shape(hunting_gateway: GatewayClient, sim: SimulatorAdmin,
                                                               identity: IdentityAdmin) -> None:
    sha1 = uuid.uuid4().hex + "11111111"
    rows = add_events(sim, sha1, 2)
    location = accepted(hunt(hunting_gateway, DEFENDER_PATH, {"Query": query_for(sha1)}, ASYNC))
    document = hunting_gateway.wait_for_operation(location).json()
    assert set(document) == {"Stats", "Schema", "Results"}
    assert document["Schema"][1] == {"Name": "ReportId", "Type": "Int64"}
    assert [row["ReportId"] for row in document["Results"]] == [row["ReportId"] for row in rows]
    assert document["Stats"]["dataset_statistics"][0]["table_row_count"] == 2
    assert document["Stats"]["ExecutionTime"] >= 0


def test_a_query_graph_rejects_ends_the_operation_with_its_problem_sent_once(
        hunting_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    location = accepted(hunt(hunting_gateway, GRAPH_PATH, {"Query": "DeviceFileEvents | frobnicate"}, ASYNC))
    final = hunting_gateway.wait_for_operation(location)
    assert final.status_code == 400, final.text
    assert final.json()["type"].endswith(":hunting-query-rejected")
    assert len(sim.calls("hunting")) == 1


def test_a_large_answer_goes_through_a_blob_gone_after_the_sweep(
        hunting_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin, azurite: Azurite,
        container: str, operations_table: str) -> None:
    sha1 = uuid.uuid4().hex + "22222222"
    rows = add_events(sim, sha1, 400)
    location = accepted(hunt(hunting_gateway, GRAPH_PATH, {"Query": query_for(sha1, "")}, ASYNC))
    final = hunting_gateway.wait_for_operation(location)
    assert final.status_code == 200, final.text
    assert len(final.content) > RESULT_INLINE_LIMIT
    assert [row["ReportId"] for row in final.json()["results"]] == [row["ReportId"] for row in rows]

    operation_id = location.rsplit("/", 1)[-1]
    table = TableClient.from_connection_string(azurite.connection_string, operations_table)
    blob = table.get_entity(operation_id, ROW_KEY)["AnswerBlob"]
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)
    assert blob in list(blobs.list_blob_names())
    assert blobs.download_blob(blob).readall() == final.content  # the answer, byte for byte, is the blob's

    # The sweep as the timer runs it, once the operation has expired (its retention is at least an hour).
    later = time.time() + 2 * 24 * 3600
    store = TableOperationStore(table, 3600, clock=lambda: later, results=BlobResultsStore(blobs))
    queues = MemoryQueues(AsyncSettings("requests", operations_table, 3600, False, 3, "history", container))
    Maintenance(store, queues, clock=lambda: later, results=BlobResultsStore(blobs)).sweep()
    assert blob not in list(blobs.list_blob_names())
    assert store.get(operation_id) is None


def test_the_longest_valid_query_in_4_byte_utf8_is_queued_and_answered(
        hunting_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """Review 27 #5: the queue message is UTF-8 (not 6-byte `\\uXXXX` escapes), and the validated limit in bytes keeps
    any valid query, with its message's envelope, within a queue message's 64 KiB: the largest query of emoji the
    validator takes is queued (not 503 queue-unavailable forever) and answered; one more emoji is a 400 naming
    body.Query, nothing queued and nothing sent."""
    sha1 = uuid.uuid4().hex + "22222222"
    rows = add_events(sim, sha1, 1)
    head, tail = f'DeviceFileEvents | where SHA1 == "{sha1}" and FileName != "', '" | project ReportId'
    emoji = (HUNTING_MAX_QUERY_BYTES - query_json_bytes(head + tail)) // 4
    query = head + "\U0001f600" * emoji + tail
    assert query_json_bytes(query) <= HUNTING_MAX_QUERY_BYTES < query_json_bytes(query + "\U0001f600")

    def hunt_utf8(text: str) -> requests.Response:
        return requests.post(f"{hunting_gateway.url}{GRAPH_PATH}", timeout=60,
                             data=json.dumps({"Query": text}, ensure_ascii=False).encode(),
                             headers={"x-functions-key": FUNCTION_KEY, "Content-Type": "application/json", **ASYNC})

    calls = len(sim.calls("hunting"))
    too_long = hunt_utf8(head + "\U0001f600" * (emoji + 1) + tail)
    assert too_long.status_code == 400 and "body.Query" in too_long.text, too_long.text
    assert len(sim.calls("hunting")) == calls
    final = hunting_gateway.wait_for_operation(accepted(hunt_utf8(query)))
    assert final.status_code == 200, final.text
    assert [row["ReportId"] for row in final.json()["results"]] == [row["ReportId"] for row in rows]
