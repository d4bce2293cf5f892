"""The shared answer cache against a real table (Azurite): chunking, size limit, TTL, unreadable entries."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient

from localdev.azurite import Azurite
from localdev.processes import free_port
from shared.lookups.answer_cache import AnswerCache
from shared.lookups.hunting import HUNTING_KIND
from shared.ratelimit import CLIENT_OPTIONS
from shared.tables.chunks import CHUNK_BYTES
from tests.support.scripted import FakeClock


@pytest.fixture
def client(azurite: Azurite) -> Iterator[TableClient]:
    table = "answers" + uuid.uuid4().hex[:12]
    with TableClient.from_connection_string(azurite.connection_string, table, **CLIENT_OPTIONS) as made:
        yield made


def test_an_answer_round_trips_and_ages(client: TableClient) -> None:
    clock = FakeClock()
    cache = AnswerCache(client, 60, clock=clock)
    assert cache.get("tenant|app", "ab" * 20) is None  # no table yet: a miss, not an error
    body = b'{"value": [{"id": "da1"}]}'
    assert cache.put("tenant|app", "ab" * 20, body)
    clock.advance(12.5)
    hit = cache.get("tenant|app", "ab" * 20)
    assert hit is not None and (hit.body, hit.age) == (body, 12)
    assert cache.get("other|app", "ab" * 20) is None  # answers are per principal
    clock.advance(47.5)  # 60 s after storing: expired
    assert cache.get("tenant|app", "ab" * 20) is None


def test_a_hunting_answer_keeps_the_time_of_the_call_that_got_it(client: TableClient) -> None:
    """A shared hunting answer's Stats.ExecutionTime is the Graph call's that got it: kept as a Double beside it; an
    answer kept without it (a file lookup's, or one an older version stored) reads as 0."""
    cache = AnswerCache(client, 60, clock=FakeClock(), kind=HUNTING_KIND)
    assert cache.put("tenant|app", "query-a", b'{"results": []}', seconds=2.0)  # whole: still a Double
    assert cache.put("tenant|app", "query-b", b'{"results": []}', seconds=0.8312)
    assert cache.put("tenant|app", "query-c", b'{"results": []}')
    found = [cache.get("tenant|app", key) for key in ("query-a", "query-b", "query-c")]
    assert [hit.seconds if hit else None for hit in found] == [2.0, 0.8312, 0.0]


def test_a_long_answer_is_split_across_properties(client: TableClient) -> None:
    cache = AnswerCache(client, 60, clock=FakeClock())
    body = os.urandom(3 * CHUNK_BYTES).hex().encode()  # hex compresses to about half: 3 chunks or more
    assert cache.put("p", "cd" * 20, body)
    entity = client.get_entity("p", "file_alerts~" + "cd" * 20)
    chunks = entity["BodyChunks"]
    assert chunks >= 3 and all(len(entity[f"Body{i}"]) <= CHUNK_BYTES for i in range(chunks))
    hit = cache.get("p", "cd" * 20)
    assert hit is not None and hit.body == body


def test_an_answer_too_large_for_an_entity_is_not_kept(client: TableClient) -> None:
    cache = AnswerCache(client, 60, clock=FakeClock())
    assert not cache.put("p", "ef" * 20, os.urandom(1024 * 1024))  # incompressible: over 15 chunks
    assert cache.get("p", "ef" * 20) is None


def test_an_unreadable_entry_is_a_miss(client: TableClient) -> None:
    cache = AnswerCache(client, 60, clock=FakeClock())
    assert cache.put("p", "12" * 20, b"{}")
    client.upsert_entity({"PartitionKey": "p", "RowKey": "file_alerts~" + "12" * 20, "Format": 1,
                          "StoredAt": "yesterday", "BodyChunks": 1, "Body0": b"not zlib"})
    assert cache.get("p", "12" * 20) is None


def test_storage_down_is_a_miss_and_a_skipped_store() -> None:
    dead = TableClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;", "answers", **CLIENT_OPTIONS)
    cache = AnswerCache(dead, 60)
    assert cache.get("p", "34" * 20) is None
    assert not cache.put("p", "34" * 20, b"{}")
