"""A create's claim while a worker sends it: waiting for a slot, then sending.

A worker claims a create (an ETag-conditional write with a lease) before it takes a slot of the budget, and marks it
as sending only once it holds one, just before the request leaves. So the record says which of the two a crash
interrupted: a lapsed claim that was waiting sent nothing (the next attempt or the sweep runs it as any pending
operation); one that was sending may have reached Defender (it ends 504 upstream-outcome-unknown, never sent again).
The mark also keeps the record as long as a copy of the create's message may come back (Operation.kept_until).
"""

from __future__ import annotations

from collections.abc import Callable

from shared.asynchronous.operations import Operation, OperationStore


class Claim:
    """The record a worker holds for a create; `record` is always the latest it wrote."""

    def __init__(self, operations: OperationStore, record: Operation, clock: Callable[[], float],
                 lease_seconds: float) -> None:
        self.operations = operations
        self.record = record
        self._clock = clock
        self._lease_seconds = lease_seconds

    def sending(self) -> bool:
        """Mark the record as sending (a slot is held; the request leaves next); False when it changed under the
        claim: someone else has the operation, and nothing may be sent."""
        if self.record.in_flight:
            return True
        now = self._clock()
        marked = self.operations.update(self.record, in_flight=True, lease_until=now + self._lease_seconds,
                                        expires_at=self.record.kept_until(now))
        if marked is None:
            return False
        self.record = marked
        return True

    def waiting(self) -> bool:
        """Back to waiting for a slot (the slot could not be used after all: nothing left); False when the record
        changed under the claim."""
        if not self.record.in_flight:
            return True
        unmarked = self.operations.update(self.record, in_flight=False)
        if unmarked is None:
            return False
        self.record = unmarked
        return True
