"""Answers too large for an operation's record, over Azurite: kept as blobs in RESULTS_CONTAINER (created on first
write), named by the record, read back whole, deleted with the record, and deleted by the maintenance sweep once
past their expiry, orphans (a blob no record names) among them. Storage that fails is a ResultsStorageError, an
OperationsStorageError, which the edge and the worker already answer."""

from __future__ import annotations

import json
import uuid
from types import MappingProxyType

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from localdev.azurite import DEV_ACCOUNT, DEV_KEY, Azurite
from shared.answers.answer import Answer
from shared.asynchronous.maintenance import Maintenance
from shared.asynchronous.operations import Created, Operation, OperationsStorageError, Source, State
from shared.asynchronous.operations_table import ROW_KEY, TableOperationStore
from shared.asynchronous.queues_memory import MemoryQueues
from shared.asynchronous.results import RESULT_INLINE_LIMIT, ResultsStorageError, expiry_of
from shared.asynchronous.results_blob import BlobResultsStore
from shared.asynchronous.settings import AsyncSettings
from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from tests.support.scripted import FakeClock

RETENTION = 3600
REQUEST = DefenderRequest(Api.HUNTING, "/v1.0/security/runHuntingQuery",
                          {"Query": "DeviceProcessEvents | take 5000"})
HEADERS = MappingProxyType({"Content-Type": "application/json"})


def large_answer(rows: int = 4000) -> Answer:
    body = json.dumps({"schema": [{"name": "ReportId", "type": "Int64"}],
                       "results": [{"ReportId": row, "DeviceId": uuid.uuid4().hex} for row in range(rows)]}).encode()
    assert len(body) > RESULT_INLINE_LIMIT
    return Answer(200, HEADERS, body)


def container(azurite: Azurite, name: str | None = None) -> ContainerClient:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.get_container_client(name or "results" + uuid.uuid4().hex[:12])


def stores(azurite: Azurite, clock: FakeClock) -> tuple[TableOperationStore, BlobResultsStore, ContainerClient]:
    blobs = container(azurite)
    results = BlobResultsStore(blobs)
    table = TableClient.from_connection_string(azurite.connection_string, "ops" + uuid.uuid4().hex[:16])
    return TableOperationStore(table, RETENTION, clock=clock, results=results), results, blobs


def done(store: TableOperationStore, operation_id: str, answer: Answer) -> Operation:
    created = store.create(store.new(operation_id, REQUEST, caller="", source=Source.QUEUE, correlation_id="c"))
    assert isinstance(created, Created)
    finished = store.update(created.operation, state=State.DONE, answer=answer)
    assert finished is not None
    return finished


def names(blobs: ContainerClient) -> list[str]:
    return list(blobs.list_blob_names()) if blobs.exists() else []


def test_a_large_answer_is_kept_as_a_blob_the_record_names(azurite: Azurite) -> None:
    clock = FakeClock()
    store, _, blobs = stores(azurite, clock)
    answer = large_answer()
    finished = done(store, "op-large", answer)
    assert finished.answer_blob and names(blobs) == [finished.answer_blob]  # the container was created for it
    entity = store._client.get_entity("op-large", ROW_KEY)
    assert entity["AnswerBlob"] == finished.answer_blob and "Answer0" not in entity  # the record holds no body
    assert (expiry_of(finished.answer_blob) or 0) >= finished.expires_at
    read = store.get("op-large")
    assert read is not None and read.answer == answer  # whole, byte for byte
    replied = store.update(read, replied=True)  # the same answer: the same blob, not written again
    assert replied is not None and replied.answer_blob == finished.answer_blob and names(blobs) == [replied.answer_blob]
    again = store.create(store.new("op-large", REQUEST, caller="", source=Source.QUEUE, correlation_id="c"))
    assert again.operation.answer == answer  # a repeat (Idempotency-Key, message id) finds the whole answer too


def test_a_small_answer_stays_in_the_record(azurite: Azurite) -> None:
    store, _, blobs = stores(azurite, FakeClock())
    small = Answer(200, HEADERS, b'{"schema": [], "results": []}')
    finished = done(store, "op-small", small)
    assert finished.answer_blob == "" and names(blobs) == []
    read = store.get("op-small")
    assert read is not None and read.answer == small


def test_a_record_deleted_or_given_a_new_answer_drops_its_blob(azurite: Azurite) -> None:
    store, _, blobs = stores(azurite, FakeClock())
    first = done(store, "op-redo", large_answer())
    read = store.get("op-redo")
    assert read is not None
    reopened = store.update(read, state=State.PENDING, answer=None)  # a re-drive
    assert reopened is not None and names(blobs) == []
    second = store.update(reopened, state=State.DONE, answer=large_answer(5000))
    assert second is not None and second.answer_blob not in ("", first.answer_blob)
    assert names(blobs) == [second.answer_blob]
    assert store.delete(second) and names(blobs) == []


def test_the_sweep_deletes_expired_results_and_orphans_and_keeps_the_rest(azurite: Azurite) -> None:
    clock = FakeClock()
    store, results, blobs = stores(azurite, clock)
    expiring = done(store, "op-old", large_answer())
    orphan = results.put("op-never-recorded", b"{}", clock() + 10)  # a crash between the blob and its record
    clock.advance(RETENTION / 2)
    kept = done(store, "op-new", large_answer())
    maintenance = Maintenance(store, MemoryQueues(AsyncSettings("requests", "ops", RETENTION, False, 3, "history",
                                                                "results")),
                              clock=clock, results=results)
    first = maintenance.sweep()
    assert first.results_purged == 1 and orphan not in names(blobs)  # the orphan is past its expiry
    assert sorted(names(blobs)) == sorted([expiring.answer_blob, kept.answer_blob])
    clock.advance(RETENTION / 2 + 1)
    maintenance.sweep()
    assert store.get("op-old") is None and names(blobs) == [kept.answer_blob]  # went with its record
    read = store.get("op-new")
    assert read is not None and read.answer == kept.answer


def test_a_missing_container_holds_nothing_to_purge(azurite: Azurite) -> None:
    results = BlobResultsStore(container(azurite))
    assert results.purge_expired(2e9) == 0
    with pytest.raises(ResultsStorageError, match="missing"):
        results.get(f"{2_000_000_000:011d}/op/{uuid.uuid4().hex}")


def test_storage_that_fails_is_a_results_storage_error_naming_no_secret(azurite: Azurite) -> None:
    wrong_key = DEV_KEY[:-8] + "AAAAAAA="
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string.replace(DEV_KEY, wrong_key), retry_total=0)
    results = BlobResultsStore(service.get_container_client("results" + uuid.uuid4().hex[:12]))
    with pytest.raises(ResultsStorageError) as raised:
        results.put("op", b"{}", 2e9)
    assert isinstance(raised.value, OperationsStorageError)  # answered as the operation store's failures are
    assert DEV_ACCOUNT not in str(raised.value) and str(azurite.blob_port) not in str(raised.value)
