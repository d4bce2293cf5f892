"""The gateway's queues in process memory: the contract of StorageQueues, for in-process tests of the queue worker.

Messages are kept per queue with the time they become visible (a delay is rounded up to whole seconds, as Azure
does); `take` hands out what is visible, as a queue trigger would. `available = False` makes every write fail as
storage that is down does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shared.asynchronous.queue_names import MAX_MESSAGE_BYTES, message_bytes
from shared.asynchronous.queues import MAX_PEEK, Hidden, Peeked, Queues, QueueStorageError, visibility_delay
from shared.asynchronous.settings import AsyncSettings


@dataclass(frozen=True)
class QueuedMessage:
    text: str
    visible_at: float
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    inserted_at: float = 0.0
    #: Set while `hide` holds it.
    receipt: str = ""


class MemoryQueues(Queues):
    """Queues in a dict; thread-safe."""

    def __init__(self, settings: AsyncSettings, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings)
        self._clock = clock
        self.messages: dict[str, list[QueuedMessage]] = {}
        self._lock = threading.Lock()
        #: False: every write raises QueueStorageError and every depth is unknown, as a queue service that is down.
        self.available = True

    def put(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
        if not self.available:
            raise QueueStorageError(f"queue {queue}: unavailable")
        if message_bytes(text) > MAX_MESSAGE_BYTES:  # refused as Azure refuses it (413)
            raise QueueStorageError(f"queue {queue}: a message larger than 64 KiB")
        with self._lock:
            now = self._clock()
            self.messages.setdefault(queue, []).append(
                QueuedMessage(text, now + visibility_delay(delay_seconds), inserted_at=now))

    def depth(self, queue: str) -> int | None:
        if not self.available:
            return None
        with self._lock:
            return len(self.messages.get(queue, []))

    def peek(self, queue: str, limit: int = MAX_PEEK) -> list[Peeked]:
        if not self.available:
            raise QueueStorageError(f"queue {queue}: unavailable")
        with self._lock:
            now = self._clock()
            visible = [message for message in self.messages.get(queue, []) if message.visible_at <= now]
        return [Peeked(message.id, message.text, message.inserted_at, 0)
                for message in visible[:max(1, min(limit, MAX_PEEK))]]

    def hide(self, queue: str, message_id: str, seconds: int) -> Hidden | None:
        if not self.available:
            raise QueueStorageError(f"queue {queue}: unavailable")
        with self._lock:
            found = self.messages.get(queue, [])
            now = self._clock()
            for index, message in enumerate(found):
                if message.id == message_id and message.visible_at <= now:
                    receipt = str(uuid.uuid4())
                    found[index] = replace(message, visible_at=now + seconds, receipt=receipt)
                    return Hidden(queue, message.id, message.text, receipt)
        return None

    def delete(self, hidden: Hidden) -> None:
        self._held(hidden, lambda found, index: found.pop(index))

    def show(self, hidden: Hidden) -> None:
        self._held(hidden, lambda found, index: found.__setitem__(
            index, replace(found[index], visible_at=self._clock(), receipt="")))

    def _held(self, hidden: Hidden, change: Callable[[list[QueuedMessage], int], object]) -> None:
        if not self.available:
            raise QueueStorageError(f"queue {hidden.queue}: unavailable")
        with self._lock:
            found = self.messages.get(hidden.queue, [])
            for index, message in enumerate(found):
                if message.id == hidden.id and message.receipt == hidden.receipt:
                    change(found, index)
                    return
        raise QueueStorageError(f"queue {hidden.queue}: message {hidden.id} is not held with this receipt")

    def take(self, queue: str) -> list[QueuedMessage]:
        """Every message of `queue` that is visible now, removed (what a trigger would run next)."""
        with self._lock:
            now = self._clock()
            found = self.messages.get(queue, [])
            visible = [message for message in found if message.visible_at <= now]
            self.messages[queue] = [message for message in found if message.visible_at > now]
            return visible
