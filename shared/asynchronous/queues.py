"""The gateway's storage queues: the request queue, the waiting queues (one per API), the poison queue, and
callers' reply queues.

Messages are written as plain JSON text (the host reads the request queue with `messageEncoding:
none`, see host.json). A queue that does not exist yet is created on first use.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.asynchronous.queue_names import MESSAGE_TTL_SECONDS
from shared.asynchronous.settings import AsyncSettings
from shared.configuration import ConfigurationError
from shared.defender.facts import Api
from shared.tables.errors import described, translated
from shared.tables.settings import StorageSettings

logger = logging.getLogger("mde_alert_gateway.queues")

#: Fail fast like the table clients: the caller decides what a failure means.
QUEUE_CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": 2.0, "read_timeout": 5.0, "retry_total": 2, "retry_connect": 2, "retry_read": 1,
    "retry_status": 1, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
}
#: Azure's longest visibility delay for a message (7 days).
MAX_DELAY_SECONDS = 7 * 24 * 3600
#: The most messages a peek or a receive gives at once (Azure's limit).
MAX_PEEK = 32
#: `hide`: how many messages it looks at before giving up.
HIDE_SCAN = 320


class QueueStorageError(RuntimeError):
    """A queue could not be written or read."""


def queue_service(storage: StorageSettings) -> QueueServiceClient:
    """The storage account's Queue service (no request is made)."""
    if storage.connection_string:
        try:
            return QueueServiceClient.from_connection_string(storage.connection_string, **QUEUE_CLIENT_OPTIONS)
        except ValueError as exc:
            raise ConfigurationError(f"AzureWebJobsStorage is not a usable connection string: {exc}",
                                     setting="AzureWebJobsStorage") from None
    from azure.identity import ManagedIdentityCredential

    assert storage.queue_endpoint is not None  # load_storage_settings sets one with the table endpoint
    return QueueServiceClient(storage.queue_endpoint, credential=ManagedIdentityCredential(client_id=storage.client_id),
                              **QUEUE_CLIENT_OPTIONS)


class Queues(ABC):
    """The gateway's queues, named from the settings: StorageQueues (Azure Storage), or
    shared.asynchronous.queues_memory.MemoryQueues (process memory: in-process tests). Writes raise
    QueueStorageError when the message could not be stored."""

    def __init__(self, settings: AsyncSettings) -> None:
        self._settings = settings
        self.requests_name = settings.requests_queue
        self.poison_name = settings.poison_queue

    def put_request(self, text: str) -> None:
        """Queue a request message, visible at once."""
        self.put(self.requests_name, text)

    def waiting_name(self, api: Api) -> str:
        return self._settings.waiting_queue(api)

    def put_waiting(self, api: Api, text: str, *, delay_seconds: float = 0) -> None:
        """Queue a request message to wait for `api`'s budget, visible after `delay_seconds` (rounded up)."""
        self.put(self.waiting_name(api), text, delay_seconds=delay_seconds)

    def put_poison(self, text: str) -> None:
        self.put(self.poison_name, text)

    @abstractmethod
    def put(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        """Store `text` on `queue`, visible after `delay_seconds` (rounded up); QueueStorageError if it could not."""

    @abstractmethod
    def depth(self, queue: str) -> int | None:
        """Approximate number of messages (None when the queue cannot be read)."""

    @abstractmethod
    def peek(self, queue: str, limit: int = MAX_PEEK) -> list[Peeked]:
        """Up to `limit` (at most 32) visible messages, oldest first, left in place; QueueStorageError."""

    @abstractmethod
    def hide(self, queue: str, message_id: str, seconds: int) -> Hidden | None:
        """Hide the visible message `message_id` of `queue` from every reader for `seconds` and give it (to `delete`
        or `show` again); None when it is not there (any more). Other messages are left visible. QueueStorageError."""

    @abstractmethod
    def delete(self, hidden: Hidden) -> None:
        """Delete a message `hide` gave (QueueStorageError: it shows again when its time is up)."""

    @abstractmethod
    def show(self, hidden: Hidden) -> None:
        """Make a message `hide` gave visible again at once (QueueStorageError: it shows when its time is up)."""


@dataclass(frozen=True)
class Peeked:
    """A message seen in a queue and left there."""

    id: str
    text: str
    #: When it was put there (epoch seconds).
    inserted_at: float
    #: How often a trigger has taken it (a poison queue's message: how often its original was tried).
    dequeue_count: int


@dataclass(frozen=True)
class Hidden:
    """A message taken out of sight (`Queues.hide`), until deleted or shown again."""

    queue: str
    id: str
    text: str
    #: The queue's proof of the hold (Azure's pop receipt).
    receipt: str


def visibility_delay(delay_seconds: float) -> int:
    """A delay as a queue takes it: whole seconds, rounded up, at most Azure's 7 days."""
    return min(MAX_DELAY_SECONDS, max(0, -int(-delay_seconds // 1)))


class StorageQueues(Queues):
    """Puts messages on the gateway's queues in Azure Storage (Azurite locally) and reads their depth."""

    def __init__(self, service: QueueServiceClient, settings: AsyncSettings) -> None:
        super().__init__(settings)
        self._service = service

    def put(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        """Raises QueueStorageError when the message could not be stored. Every message lives MESSAGE_TTL_SECONDS:
        a create's record is kept longer once it may have been sent (shared.asynchronous.operations)."""
        delay = visibility_delay(delay_seconds)
        client = self._service.get_queue_client(queue)
        for attempt in range(2):
            with _translated(queue):
                try:
                    client.send_message(text, visibility_timeout=delay or None, time_to_live=MESSAGE_TTL_SECONDS)
                    return
                except ResourceNotFoundError:
                    if attempt == 0 and self._create(client):
                        continue
                    raise QueueStorageError(f"queue {queue} does not exist and could not be created") from None

    def depth(self, queue: str) -> int | None:
        """Approximate number of messages (None when the queue cannot be read)."""
        try:
            return self._service.get_queue_client(queue).get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0
        except AzureError as error:
            logger.warning("queue %s: depth unknown (%s)", queue, described(error))
            return None

    def peek(self, queue: str, limit: int = MAX_PEEK) -> list[Peeked]:
        with _translated(queue):
            try:
                found = self._service.get_queue_client(queue).peek_messages(max_messages=max(1, min(limit, MAX_PEEK)))
            except ResourceNotFoundError:
                return []
        return [Peeked(message.id, str(message.content), message.inserted_on.timestamp() if message.inserted_on
                       else 0.0, message.dequeue_count or 0) for message in found]

    def hide(self, queue: str, message_id: str, seconds: int) -> Hidden | None:
        """Receives the queue's messages a page at a time, each hidden for `seconds`, until `message_id` comes: it
        stays hidden, every other is shown again at once when the scan ends (or when its own `seconds` are up, if
        showing it fails). At most HIDE_SCAN messages are looked at."""
        client = self._service.get_queue_client(queue)
        others: list[Any] = []
        try:
            with _translated(queue), suppress(ResourceNotFoundError):  # no queue: no message to hide
                return self._hide(client, queue, message_id, seconds, others)
            return None
        finally:
            for other in others:
                try:
                    client.update_message(other, visibility_timeout=0)
                except AzureError as error:  # it shows again when its own time is up
                    logger.warning("queue %s: message %s stays hidden %d s (%s)", queue, other.id, seconds,
                                   described(error))

    @staticmethod
    def _hide(client: QueueClient, queue: str, message_id: str, seconds: int, others: list[Any]) -> Hidden | None:
        """`hide`'s scan: each message received that is not `message_id` goes to `others`, to be shown again."""
        while len(others) < HIDE_SCAN:
            page = list(client.receive_messages(messages_per_page=MAX_PEEK, max_messages=MAX_PEEK,
                                                visibility_timeout=seconds))
            if not page:
                return None
            for message in page:
                if message.id == message_id:
                    others.extend(other for other in page if other is not message)
                    return Hidden(queue, message.id, str(message.content), str(message.pop_receipt))
            others.extend(page)
        return None

    def delete(self, hidden: Hidden) -> None:
        with _translated(hidden.queue):
            self._service.get_queue_client(hidden.queue).delete_message(hidden.id, hidden.receipt)

    def show(self, hidden: Hidden) -> None:
        with _translated(hidden.queue):
            self._service.get_queue_client(hidden.queue).update_message(hidden.id, hidden.receipt,
                                                                        visibility_timeout=0)

    @staticmethod
    def _create(client: QueueClient) -> bool:
        """Create `client`'s queue; True when it exists now (another instance may have created it meanwhile)."""
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        except AzureError:
            return False
        return True


def _translated(queue: str) -> AbstractContextManager[None]:
    """Azure's errors as QueueStorageError naming `queue`."""
    return translated(lambda what: QueueStorageError(f"queue {queue}: {what}"))
