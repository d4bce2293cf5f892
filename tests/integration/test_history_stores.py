"""One contract, two history stores: Table Storage (Azurite) and the memory twin the in-process tests use. Additions
from many writers at once lose nothing and count nothing twice; the range read and the purge go by minute."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.data.tables import TableClient

from localdev.azurite import Azurite
from shared.history.memory_store import MemoryHistoryStore
from shared.history.store import HistoryStore
from shared.history.table_store import TableHistoryStore


@pytest.fixture(params=["memory", "table"])
def store(request: pytest.FixtureRequest) -> Iterator[HistoryStore]:
    if request.param == "memory":
        yield MemoryHistoryStore()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    client = TableClient.from_connection_string(azurite.connection_string, "hist" + uuid.uuid4().hex[:12])
    yield TableHistoryStore(client)  # the table does not exist yet: the first write creates it
    client.delete_table()


def test_an_empty_history_reads_as_nothing(store: HistoryStore) -> None:
    assert list(store.since(0)) == []
    assert store.purge_before(10**9, 10) == 0


def test_concurrent_additions_add_up(store: HistoryStore) -> None:
    def add(_: int) -> None:
        store.add(29_000_000, "count~file_alerts~t", {"refused": 1, "throttled": 2})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(12)))
    [row] = store.since(29_000_000)
    assert dict(row.values) == {"refused": 12, "throttled": 24}


def test_rows_are_read_from_a_minute_on_and_purged_before_one(store: HistoryStore) -> None:
    for minute in (29_000_000, 29_000_001, 29_000_002):
        store.peak(minute, "queue~requests", {"depth": minute - 29_000_000})
    store.peak(29_000_002, "queue~requests", {"depth": 7, "pending": 0})  # the minute's highest
    store.peak(29_000_002, "queue~requests", {"depth": 3, "pending": 1})
    assert [(row.minute, dict(row.values)) for row in store.since(29_000_001)] == [
        (29_000_001, {"depth": 1}), (29_000_002, {"depth": 7, "pending": 1})]
    assert store.purge_before(29_000_002, 1) == 1  # bounded per call
    assert store.purge_before(29_000_002, 10) == 1
    assert [row.minute for row in store.since(0)] == [29_000_002]
