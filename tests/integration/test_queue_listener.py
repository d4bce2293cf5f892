"""The local host's queue listener against the queue extension, over Azurite (localdev/queue_host.py names the rules):
a message that cannot be decoded goes to the poison queue at once without running, and a function gets the
message's trigger metadata as the Python library fills it."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from localdev.azurite import Azurite
from localdev.queue_host import QueueFunction, QueueListener, QueueOptions
from localdev.workers import IndexedFunction

#: base64 as the extension expects by default; a failed run's message comes back only after a minute, so a test
#: that sees a message in the poison queue sooner knows it was never retried.
BASE64 = QueueOptions(batch_size=4, new_batch_threshold=2, max_dequeue_count=5, visibility_timeout=60.0,
                      max_polling_interval=0.2, message_encoding="base64")
NONE = QueueOptions(batch_size=4, new_batch_threshold=2, max_dequeue_count=5, visibility_timeout=0.0,
                    max_polling_interval=0.2, message_encoding="none")


def queued(name: str, queue: str, handler: Callable[..., None],
           connection: str = "AzureWebJobsStorage") -> QueueFunction:
    """A queue function as the host reads it from the worker's metadata, run by the emulated worker."""
    return QueueFunction(IndexedFunction(name, (), handler), queue, connection)


def queue_pair(azurite: Azurite) -> tuple[QueueClient, QueueClient]:
    name = "listener-" + uuid.uuid4().hex[:12]
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    client.create_queue()
    return client, QueueClient.from_connection_string(azurite.connection_string, name + "-poison")


def poisoned(poison: QueueClient) -> list[str]:
    try:
        return [str(message.content) for message in poison.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def wait_for(condition: str, check: Callable[[], object], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never: {condition}"
        time.sleep(0.05)


def test_a_message_that_is_not_base64_goes_to_poison_at_once_without_running(azurite: Azurite,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    client, poison = queue_pair(azurite)
    ran: list[bytes] = []
    listener = QueueListener(queued("Decode", client.queue_name, lambda message: ran.append(message.get_body())),
                             client, poison, BASE64)
    client.send_message("{not base64: a producer that forgot to encode}")
    client.send_message(base64.b64encode(b"encoded").decode())
    listener.start()
    try:
        wait_for("the undecodable message in the poison queue", lambda: poisoned(poison))
        wait_for("the encoded message run", lambda: ran == [b"encoded"])
    finally:
        listener.stop()
    assert poisoned(poison) == ["{not base64: a producer that forgot to encode}"]  # as it was sent
    wait_for("the main queue empty", lambda: not list(client.peek_messages()))
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("could not be decoded" in w and poison.queue_name in w and "producer" not in w for w in warnings)


def test_the_function_gets_the_messages_dequeue_count_and_times(azurite: Azurite) -> None:
    client, poison = queue_pair(azurite)
    seen: list[func.QueueMessage] = []
    done = threading.Event()

    def handler(message: func.QueueMessage) -> None:
        seen.append(message)
        if len(seen) == 1:
            raise RuntimeError("fails once, so the second delivery counts two")
        done.set()

    listener = QueueListener(queued("Metadata", client.queue_name, handler), client, poison, NONE)
    sent = client.send_message("hello")
    listener.start()
    try:
        assert done.wait(15), [m.dequeue_count for m in seen]
    finally:
        listener.stop()
    first, second = seen
    assert [first.dequeue_count, second.dequeue_count] == [1, 2]
    assert first.id == second.id == sent.id and first.get_body() == b"hello"
    assert first.insertion_time == sent.inserted_on and first.expiration_time == sent.expires_on
    assert isinstance(first.time_next_visible, datetime) and first.time_next_visible.tzinfo is not None
    assert first.insertion_time is not None
    assert first.time_next_visible > first.insertion_time  # taken for the host's lease from its receipt
    assert first.pop_receipt and second.pop_receipt and first.pop_receipt != second.pop_receipt
