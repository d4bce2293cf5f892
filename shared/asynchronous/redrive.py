"""Poisoned requests, as the operator page lists them, and their re-drive: sent again under their own operation id,
so a create is never sent twice.

A poison queue holds three kinds of entry:
- the worker's record of an operation that ended in failure (`operation_id`, `status`, `reason`): re-driven, the
  operation is made pending again and its request queued again; a create that was sent at least once, or may have
  been (claimed and never answered), is never re-driven (Defender may have acted on it: send a new request if it
  did not);
- the worker's record of a message it could not run (invalid, or an id that names another request): nothing to
  re-drive, the sender must send a correct message;
- a message the Functions host moved after `maxDequeueCount` failed tries (the worker raised: storage down, say):
  queued again as it is; its operation's claim keeps the worker from sending anything twice. A create whose
  operation record is gone is never queued again: whether it ran cannot be told from the entry (a copy may be
  poisoned long after its operation began, and a poison entry lives as long as any message), so the sender sends a
  new request if Defender did not get it. A create that may have reached Defender keeps its record longer than any
  copy of its message lives (Operation.kept_until), so an entry whose record is gone names no sent create, or an
  old one.

A re-drive hides the entry first (no second operator takes it), checks again on the operation's latest record that
a create was never sent and reopens it with an ETag-conditional write on that very record (a worker that sent it
meanwhile makes the write fail), queues the request, then deletes the entry; if queueing fails, the operation is put
back as it was and the entry shown again: nothing is lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from shared.asynchronous.messages import InvalidMessageError, RequestMessage, encode, parse
from shared.asynchronous.operations import Operation, OperationsStorageError, OperationStore, State
from shared.asynchronous.queues import Hidden, Peeked, Queues, QueueStorageError
from shared.defender.facts import OPERATION_NAMES, Api
from shared.defender.tenants import MultiTenant

logger = logging.getLogger("mde_alert_gateway.redrive")


class Refusal(StrEnum):
    """Why an entry is not re-driven."""

    INVALID = "invalid-message"
    ID_REUSED = "id-reused"
    EXPIRED = "operation-expired"
    MAY_HAVE_REACHED_DEFENDER = "may-have-reached-defender"
    #: The operator may not act for its tenant (GATEWAY_TENANT_CALLERS); decided at the re-drive, per operator.
    TENANT_NOT_ALLOWED = "tenant-not-allowed"


#: How long a re-drive holds the entry out of sight while it queues the request.
HIDE_SECONDS = 60
#: The worker's reason for a create it claimed and never saw answered (it is not sent again).
OUTCOME_UNKNOWN = "upstream-outcome-unknown"
#: The worker's reasons for a message it could not run at all.
_UNRUNNABLE = {"invalid-message": Refusal.INVALID, "not-json": Refusal.INVALID,
               "message-too-large": Refusal.INVALID, "id-reused": Refusal.ID_REUSED}


@dataclass(frozen=True)
class Poisoned:
    """One entry of a poison queue, as an operator sees it."""

    queue: str
    message_id: str
    inserted_at: float
    operation_id: str | None
    #: The operation's name (GetFileRelatedAlerts, CreateAlertByReference), when known.
    operation: str | None
    reason: str
    detail: str
    #: The failed answer's status, for an operation that ended in failure.
    status: int | None
    #: Why it cannot be re-driven; None: it can.
    refusal: Refusal | None
    #: What a re-drive puts on the request queue (None when refused).
    requeue: str | None
    #: The customer tenant of what a re-drive sends (its id; None: the home tenant, or nothing to send).
    tenant: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "messageId": self.message_id, "operationId": self.operation_id,
                "operation": self.operation, "reason": self.reason, "detail": self.detail, "status": self.status,
                "redrivable": self.refusal is None, "refusal": self.refusal.value if self.refusal else None}


@dataclass(frozen=True)
class Redriven:
    operation_id: str | None
    queue: str


@dataclass(frozen=True)
class NotPoisoned:
    """No such entry among the poison queue's visible ones (re-driven already, or never there)."""


@dataclass(frozen=True)
class RedriveRefused:
    entry: Poisoned


RedriveResult = Redriven | NotPoisoned | RedriveRefused


def describe(queue: str, peeked: Peeked, operations: OperationStore, tenants: MultiTenant | None = None) -> Poisoned:
    """What an entry is and whether it may be re-driven (reads its operation; OperationsStorageError). Decided by the
    operation's record alone, never by the entry's age."""
    try:
        document = json.loads(peeked.text)
    except ValueError:
        document = None
    if isinstance(document, dict) and "reason" in document and "message" in document:
        return _recorded(queue, peeked, document, operations)
    try:
        message = parse(peeked.text, tenants=tenants)
    except InvalidMessageError as error:
        return Poisoned(queue, peeked.id, peeked.inserted_at, error.message_id, None, "failed-tries",
                        f"The host gave up after its tries; the message is not valid ({error.reason}).", None,
                        Refusal.INVALID, None)
    base = (queue, peeked.id, peeked.inserted_at, message.id, OPERATION_NAMES.get(message.request.api),
            "failed-tries", "The Functions host gave up after its tries (the worker raised each time).", None)
    if message.request.method == "POST":
        operation = operations.get(message.id)
        if operation is None:  # it may have run, and its record been purged since: never a second create
            return Poisoned(*base, Refusal.EXPIRED, None)
        if operation.may_have_reached_defender:
            return Poisoned(*base, Refusal.MAY_HAVE_REACHED_DEFENDER, None)
    return Poisoned(*base, None, peeked.text, message.request.tenant)


def _recorded(queue: str, peeked: Peeked, document: dict[str, Any], operations: OperationStore) -> Poisoned:
    reason, detail = str(document.get("reason")), str(document.get("detail") or "")
    operation_id = document.get("operation_id")
    refusal = _UNRUNNABLE.get(reason)
    if refusal is not None or not isinstance(operation_id, str):
        return Poisoned(queue, peeked.id, peeked.inserted_at, _message_id(document.get("message")), None, reason,
                        detail, None, refusal or Refusal.INVALID, None)
    status = document.get("status")
    operation = operations.get(operation_id)
    name = OPERATION_NAMES.get(operation.api) if operation else None
    base = (queue, peeked.id, peeked.inserted_at, operation_id, name, reason, detail,
            status if isinstance(status, int) else None)
    if operation is None:
        return Poisoned(*base, Refusal.EXPIRED, None)
    # A create that may have reached Defender is never sent twice; a hunting query sent again only reads again.
    if operation.api is Api.CREATE_ALERT and (reason == OUTCOME_UNKNOWN or operation.may_have_reached_defender):
        return Poisoned(*base, Refusal.MAY_HAVE_REACHED_DEFENDER, None)
    return Poisoned(*base, None, encode(RequestMessage(operation.id, operation.request, operation.reply_queue,
                                                       operation.caller, shape=operation.shape)),
                    operation.request.tenant)


def poisoned(queues: Queues, operations: OperationStore, poison_queues: list[str],
             tenants: MultiTenant | None = None) -> list[Poisoned]:
    """The visible entries of each poison queue (at most 32 each), described."""
    return [describe(queue, peeked, operations, tenants) for queue in poison_queues
            for peeked in queues.peek(queue)]


def redrive(queues: Queues, operations: OperationStore, queue: str, message_id: str, now: float,
            tenants: MultiTenant | None = None,
            may_redrive: Callable[[str | None], bool] | None = None) -> RedriveResult:
    """Send the poisoned entry `message_id` of `queue` again, if it may be and `may_redrive` its tenant (the
    operator's GATEWAY_TENANT_CALLERS) (OperationsStorageError, QueueStorageError). The entry is hidden first, so
    two operators never re-drive it twice."""
    found = next((peeked for peeked in queues.peek(queue) if peeked.id == message_id), None)
    if found is None:
        return NotPoisoned()
    entry = describe(queue, found, operations, tenants)
    if entry.refusal is not None or entry.requeue is None:
        return RedriveRefused(entry)
    if may_redrive is not None and not may_redrive(entry.tenant):
        return RedriveRefused(replace(entry, refusal=Refusal.TENANT_NOT_ALLOWED, requeue=None))
    hidden = queues.hide(queue, message_id, HIDE_SECONDS)
    if hidden is None:
        return NotPoisoned()
    before: Operation | None = None
    reopened: Operation | None = None
    try:
        latest = operations.get(entry.operation_id) if entry.operation_id is not None else None
        if _sent_since(entry, latest):
            queues.show(hidden)
            return RedriveRefused(replace(entry, refusal=Refusal.MAY_HAVE_REACHED_DEFENDER, requeue=None))
        if entry.operation_id is not None and entry.status is not None:
            before = latest
            if before is not None and before.done:
                # Conditional on the very record just checked: had a worker sent it since, the write would fail.
                # Accepted again now: its age, its expiry and the pending index start from the re-drive.
                reopened = operations.update(before, state=State.PENDING, answer=None, failures=0, replied=False,
                                             in_flight=False, lease_until=0.0, created_at=now,
                                             expires_at=now + operations.retention_seconds)
                if reopened is None:
                    raise RuntimeError(f"operation {before.id} changed while it was re-driven; try again")
        queues.put_request(entry.requeue)
    except Exception:
        _undo(queues, operations, hidden, before, reopened)
        raise
    try:
        queues.delete(hidden)
    except QueueStorageError as error:  # it shows again after HIDE_SECONDS: a second re-drive sends nothing twice
        logger.warning("re-drove %s, but its poison entry stays for now: %s", message_id, error)
    logger.info("re-drove %s from %s (operation %s)", message_id, queue, entry.operation_id)
    return Redriven(entry.operation_id, queue)


def _sent_since(entry: Poisoned, latest: Operation | None) -> bool:
    """Whether the create `entry` names has become one that may have reached Defender, or lost its record, since it
    was described: checked on the record whose ETag the re-drive's write is conditioned on."""
    if entry.operation != OPERATION_NAMES[Api.CREATE_ALERT]:
        return False
    return latest is None or latest.may_have_reached_defender


def _undo(queues: Queues, operations: OperationStore, hidden: Hidden, before: Operation | None,
          reopened: Operation | None) -> None:
    """Put back what a failed re-drive changed (best effort: what cannot be undone now shows again by itself)."""
    if before is not None and reopened is not None:
        try:
            operations.update(reopened, state=before.state, answer=before.answer, failures=before.failures,
                              replied=before.replied, created_at=before.created_at, expires_at=before.expires_at)
        except OperationsStorageError as error:
            logger.error("operation %s: left pending after a failed re-drive: %s", before.id, error)
    try:
        queues.show(hidden)
    except QueueStorageError as error:
        logger.warning("poison entry %s shows again in %d s: %s", hidden.id, HIDE_SECONDS, error)


def _message_id(text: object) -> str | None:
    """The `id` of a message the worker could not run, when that much of it is readable."""
    try:
        document = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    found = document.get("id") if isinstance(document, dict) else None
    return found if isinstance(found, str) else None
