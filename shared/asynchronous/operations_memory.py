"""The operation store in process memory: the contract of TableOperationStore, for in-process tests of the queue
worker and the sweep, and for single-process use.

The same contract: an id is taken once (an expired one may be taken again), `update` writes only if the record
is unchanged since it was read (ETags), a pending operation has a pending entry until it is done, expired
records are purged. `available = False` makes every call fail as storage that is down does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from shared.asynchronous.operations import (
    Created,
    Existing,
    Operation,
    OperationsStorageError,
    PendingEntry,
    Source,
    new_operation,
)
from shared.defender.client import DefenderRequest
from shared.validation.hunting import HuntingShape


class MemoryOperationStore:
    """Operation records in a dict, with ETags; thread-safe."""

    name = "memory"

    def __init__(self, retention_seconds: int = 24 * 3600, *, clock: Callable[[], float] = time.time) -> None:
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._records: dict[str, Operation] = {}
        self._pending: dict[str, PendingEntry] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()
        #: False: every call raises OperationsStorageError, as a store that cannot be reached.
        self.available = True

    def new(self, operation_id: str, request: DefenderRequest, *, caller: str, source: Source, correlation_id: str,
            reply_queue: str | None = None, shape: HuntingShape | None = None) -> Operation:
        return new_operation(operation_id, request, caller=caller, source=source, correlation_id=correlation_id,
                             now=self._clock(), retention_seconds=self.retention_seconds, reply_queue=reply_queue,
                             shape=shape)

    def create(self, operation: Operation) -> Created | Existing:
        with self._locked():
            found = self._records.get(operation.id)
            if found is not None and found.expires_at > self._clock():
                return Existing(found, found.fingerprint == operation.fingerprint)
            stored = self._stored(operation)
            self._pending[operation.id] = PendingEntry(operation.id, operation.api, operation.created_at)
            return Created(stored)

    def get(self, operation_id: str) -> Operation | None:
        with self._locked():
            found = self._records.get(operation_id)
            return found if found is not None and found.expires_at > self._clock() else None

    def update(self, operation: Operation, **changes: Any) -> Operation | None:
        with self._locked():
            current = self._records.get(operation.id)
            if current is None or current.etag != operation.etag:
                return None
            updated = self._stored(replace(operation, **changes))
            if updated.done:
                self._pending.pop(operation.id, None)
            else:
                self._pending[operation.id] = PendingEntry(operation.id, updated.api, updated.created_at)
            return updated

    def delete(self, operation: Operation) -> bool:
        with self._locked():
            current = self._records.get(operation.id)
            if current is None or current.etag != operation.etag:
                return False
            del self._records[operation.id]
            self._pending.pop(operation.id, None)
            return True

    def pending(self) -> Iterator[PendingEntry]:
        with self._locked():
            entries = list(self._pending.values())
        yield from entries

    def unindex_pending(self, operation_id: str) -> None:
        with self._lock:
            self._pending.pop(operation_id, None)

    def purge_expired(self, limit: int = 100) -> int:
        with self._locked():
            now = self._clock()
            expired = [operation_id for operation_id, record in self._records.items() if record.expires_at <= now]
            for operation_id in expired[:limit]:
                del self._records[operation_id]
                self._pending.pop(operation_id, None)
            return min(limit, len(expired))

    def purge_unindexed(self, limit: int = 100) -> int:
        return 0  # every record here is indexed

    def recent(self, since: float, limit: int = 25) -> list[Operation]:
        with self._locked():
            found = [record for record in self._records.values() if record.created_at >= since]
        return sorted(found, key=lambda operation: operation.created_at, reverse=True)[:limit]

    def _stored(self, operation: Operation) -> Operation:
        stored = replace(operation, etag=f"W/\"{next(self._etags)}\"")
        self._records[operation.id] = stored
        return stored

    def _locked(self) -> threading.Lock:
        """The lock, once the store is known to answer."""
        if not self.available:
            raise OperationsStorageError("operations store memory: unavailable")
        return self._lock
