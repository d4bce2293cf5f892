"""Operations: every asynchronous request (HTTP 202 or queue input), its status and its final answer.

An operation holds the validated request (so any instance can run it), a fingerprint of that request (an
idempotency key or message id used again with a different request is refused), who may read it, and, once
done, the answer the synchronous call would have given.

Exactly-once sending rests on the claim: before a request goes to Defender the record is updated with an ETag
condition, so of two workers holding the same message only one sends. A claimed operation is in one of two stages
(`Stage`): waiting for a slot of its budget (a lease, nothing sent), or sending (`in_flight`: the request may have
left). A claim that expired while waiting is a request never sent; one that expired while sending tells the next
worker that the request may have reached Defender. Records expire after the retention; a create that may have
reached Defender is kept at least SENT_CREATE_RETENTION_SECONDS, longer than any copy of its message can live in a
queue (MESSAGE_TTL_SECONDS), so no copy, re-driven or replayed, finds its record gone and sends it again.

Where they are kept is an OperationStore: TableOperationStore (shared.asynchronous.operations_table, Azure Table
Storage) or MemoryOperationStore (shared.asynchronous.operations_memory, process memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.answers.answer import Answer
from shared.asynchronous.queue_names import MESSAGE_TTL_SECONDS
from shared.defender.client import DefenderRequest
from shared.defender.facts import OPERATION_NAMES, Api
from shared.validation.hunting import HuntingShape

logger = logging.getLogger("mde_alert_gateway.operations")

#: Operation ids: the gateway's own are 32 hex digits; a queue message's id is its caller's (a GUID, say).
OPERATION_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
#: How long the record of a create that may have reached Defender is kept at least: longer than a copy of its message
#: put as late as it finishes can live in a queue (a day's slack over MESSAGE_TTL_SECONDS).
SENT_CREATE_RETENTION_SECONDS = MESSAGE_TTL_SECONDS + 24 * 3600


class OperationsStorageError(RuntimeError):
    """The operations table cannot be read or written; nothing about the operation changed."""


class State(StrEnum):
    PENDING = "pending"
    DONE = "done"


class Stage(StrEnum):
    """Where a pending operation stands (derived from its lease and `in_flight`)."""

    #: Nobody holds it: queued, or waiting on a waiting queue.
    QUEUED = "queued"
    #: A worker claimed it and waits for a slot of its budget: nothing has been sent by this claim.
    WAITING = "waiting"
    #: A worker marked it just before the request left: it may have reached Defender.
    SENDING = "sending"
    DONE = "done"


class Source(StrEnum):
    """How the operation came in."""

    HTTP = "http"
    QUEUE = "queue"


@dataclass(frozen=True)
class Operation:
    id: str
    request: DefenderRequest
    fingerprint: str
    #: Who may read it: the Entra principal that asked over HTTP ("" for function-key callers and queue input).
    caller: str
    source: Source
    correlation_id: str
    created_at: float
    expires_at: float
    state: State = State.PENDING
    #: Requests sent to Defender for it.
    attempts: int = 0
    #: Transient failures met so far (throttling is never counted).
    failures: int = 0
    #: Until when a worker holds it (epoch seconds; 0: nobody): waiting for a slot, or sending (`in_flight`).
    lease_until: float = 0.0
    #: A worker marked it as sending and has not recorded the answer: the request may have reached Defender.
    in_flight: bool = False
    answer: Answer | None = None
    reply_queue: str | None = None
    replied: bool = False
    etag: str = ""
    #: The blob that holds the answer's body when it is too large for the record (shared.asynchronous.results; ""
    #: when the record holds it).
    answer_blob: str = ""
    #: A hunting operation's answer shape, as its caller asked (Defender's or Graph's); None for the other APIs.
    shape: HuntingShape | None = None

    @property
    def api(self) -> Api:
        return self.request.api

    @property
    def done(self) -> bool:
        return self.state is State.DONE

    @property
    def stage(self) -> Stage:
        if self.done:
            return Stage.DONE
        if self.in_flight:
            return Stage.SENDING
        return Stage.WAITING if self.lease_until else Stage.QUEUED

    @property
    def may_have_reached_defender(self) -> bool:
        """A create sent at least once, or marked as sending and never answered: it is never sent again."""
        return self.request.method == "POST" and (self.attempts > 0 or self.in_flight)

    def kept_until(self, now: float) -> float:
        """Its expiry once its request may leave at `now`: a create is kept as long as a copy of its message may
        come back (SENT_CREATE_RETENTION_SECONDS); a lookup keeps its retention (sent again, it is harmless)."""
        if self.request.api is not Api.CREATE_ALERT:  # a hunting query sent again reads again: nothing duplicated
            return self.expires_at
        return max(self.expires_at, now + SENT_CREATE_RETENTION_SECONDS)

    def summary(self) -> dict[str, object]:
        """What a 202 Accepted says of the operation (the OpenAPI document's Operation schema)."""
        created = datetime.fromtimestamp(self.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return {"id": self.id, "status": self.state.value, "operation": OPERATION_NAMES[self.api],
                "createdAt": created, "attempts": self.attempts}


def fingerprint(request: DefenderRequest, shape: HuntingShape | None = None) -> str:
    """The same request gives the same fingerprint (the body is canonical once validated); a hunting query asked
    for in another shape is another request."""
    fields: dict[str, object] = {"api": request.api.value, "path": request.path, "body": request.body}
    if shape is not None:
        fields["shape"] = shape.value
    if request.tenant:  # the home tenant's fingerprints are what they always were
        fields["tenant"] = request.tenant
    canonical = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_operation_id() -> str:
    return uuid.uuid4().hex


def keyed_operation_id(caller: str, idempotency_key: str, tenant: str | None = None) -> str:
    """The operation an Idempotency-Key names, per caller (and customer tenant): a repeat finds it, another caller's
    key (or the same key for another tenant) never does."""
    scope = f"http\0{caller}\0{idempotency_key}" + (f"\0{tenant}" if tenant else "")
    return hashlib.sha256(scope.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Created:
    operation: Operation


@dataclass(frozen=True)
class Existing:
    """The id was taken: by the same request (`same`) or by a different one."""

    operation: Operation
    same: bool


@dataclass(frozen=True)
class PendingEntry:
    """A row of the pending index."""

    operation_id: str
    api: Api
    created_at: float


class OperationStore(Protocol):
    """Where operations are kept, shared by every instance: TableOperationStore (Azure Table Storage), or
    shared.asynchronous.operations_memory.MemoryOperationStore (process memory: in-process tests). Failures raise
    OperationsStorageError."""

    retention_seconds: int

    @property
    def name(self) -> str: ...

    def new(self, operation_id: str, request: DefenderRequest, *, caller: str, source: Source, correlation_id: str,
            reply_queue: str | None = None, shape: HuntingShape | None = None) -> Operation:
        """A pending operation, not stored yet (`shape`: a hunting query's answer shape)."""

    def create(self, operation: Operation) -> Created | Existing:
        """Store a new operation, or find the one that already has its id (an expired one is replaced)."""

    def get(self, operation_id: str) -> Operation | None:
        """The operation, or None when there is none (or it expired); its answer whole, read from its blob if the
        record names one."""

    def update(self, operation: Operation, **changes: Any) -> Operation | None:
        """Write `changes` if the record is unchanged since `operation` was read; None if someone else changed it.
        A done operation made pending again (a re-drive) is in the pending index again; a new `expires_at` is
        the one `purge_expired` goes by. A new answer too large for the record goes to a blob first."""

    def delete(self, operation: Operation) -> bool:
        """Delete the record if unchanged since read (and the blob of its answer, if any)."""

    def pending(self) -> Iterator[PendingEntry]:
        """One entry per pending operation (an entry may outlive its operation by a crash until the next sweep)."""

    def unindex_pending(self, operation_id: str) -> None:
        """Drop the operation's pending entry (best effort)."""

    def purge_expired(self, limit: int = 100) -> int:
        """Delete up to `limit` expired records; how many went."""

    def purge_unindexed(self, limit: int = 100) -> int:
        """Delete up to `limit` expired records that no expiry entry names; how many went."""

    def recent(self, since: float, limit: int = 25) -> list[Operation]:
        """Up to `limit` operations created since `since` (epoch seconds), the newest first (the operator page). An
        answer kept in a blob is not read here: its body is empty, `answer_blob` names it."""


def new_operation(operation_id: str, request: DefenderRequest, *, caller: str, source: Source, correlation_id: str,
                  now: float, retention_seconds: int, reply_queue: str | None = None,
                  shape: HuntingShape | None = None) -> Operation:
    """A pending operation created at `now`, not stored yet."""
    return Operation(operation_id, request, fingerprint(request, shape), caller, source, correlation_id, now,
                     now + retention_seconds, reply_queue=reply_queue, shape=shape)
