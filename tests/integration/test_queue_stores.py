"""One contract, two queue stores: Azure Storage queues (Azurite) and the memory twin the in-process tests use.
Peek and remove are what the operator page and its re-drive stand on."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from localdev.azurite import Azurite
from shared.asynchronous.queues import QUEUE_CLIENT_OPTIONS, Queues, StorageQueues
from shared.asynchronous.queues_memory import MemoryQueues
from shared.asynchronous.settings import AsyncSettings
from tests.support.scripted import FakeClock


@pytest.fixture(params=["memory", "storage"])
def queues(request: pytest.FixtureRequest) -> Iterator[Queues]:
    settings = AsyncSettings("q" + uuid.uuid4().hex[:20], "ops", 3600, False, 3, "history", "results")
    if request.param == "memory":
        yield MemoryQueues(settings, clock=FakeClock())
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    service = QueueServiceClient.from_connection_string(azurite.connection_string, **QUEUE_CLIENT_OPTIONS)
    yield StorageQueues(service, settings)
    for name in (settings.requests_queue, settings.poison_queue):
        with contextlib.suppress(ResourceNotFoundError):
            service.delete_queue(name)


def test_peek_leaves_messages_and_hide_takes_exactly_the_one_named(queues: Queues) -> None:
    for text in ("one", "two", "three"):
        queues.put_poison(text)
    queues.put(queues.poison_name, "later", delay_seconds=600)
    peeked = queues.peek(queues.poison_name)
    assert [message.text for message in peeked] == ["one", "two", "three"]  # the delayed one is not visible
    assert queues.depth(queues.poison_name) == 4
    hidden = queues.hide(queues.poison_name, peeked[1].id, 60)
    assert hidden is not None and hidden.text == "two"
    assert queues.hide(queues.poison_name, peeked[1].id, 60) is None  # held already: nobody else takes it
    assert queues.hide(queues.poison_name, "no-such-message", 60) is None
    assert [message.text for message in queues.peek(queues.poison_name)] == ["one", "three"]  # the rest at once
    queues.show(hidden)
    assert sorted(message.text for message in queues.peek(queues.poison_name)) == ["one", "three", "two"]
    again = queues.hide(queues.poison_name, peeked[1].id, 60)
    assert again is not None
    queues.delete(again)
    assert sorted(message.text for message in queues.peek(queues.poison_name)) == ["one", "three"]
    assert queues.depth(queues.poison_name) == 3


def test_an_empty_or_missing_queue_peeks_nothing(queues: Queues) -> None:
    assert queues.peek(queues.requests_name) == []
    assert queues.hide(queues.requests_name, "anything", 60) is None
