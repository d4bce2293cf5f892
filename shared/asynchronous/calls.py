"""Operations taken over HTTP: stored (durably, before any 202), queued for the worker, or run here once.

    submit(id, request)    Prefer: respond-async. The record is created, then the request queued; only then
                           may the caller hear 202. A queue failure deletes the record: nothing was accepted.
    run_here(id, request)  An Idempotency-Key on a synchronous call: the first call runs it (claiming the
                           record as sending, so no other instance sends it too) and keeps its answer and how
                           many requests it sent; repeats get it. A create that may have been sent is kept as
                           long as a queued one (Operation.kept_until), so no re-drive sends it again.
    status(id)             GET /api/operations/{id}.

The same id with the same request is the same operation (nothing is sent or spent again); with a
different request it is KeyReused (422).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from shared.answers.answer import Answer
from shared.asynchronous.messages import RequestMessage, encode
from shared.asynchronous.operations import Created, Operation, OperationStore, Source, State
from shared.asynchronous.queues import Queues
from shared.defender.client import DefenderRequest
from shared.telemetry.recorder import Telemetry
from shared.validation.hunting import HuntingShape

logger = logging.getLogger("mde_alert_gateway.operations")

#: Answers a repeat should not keep: the caller is told to wait or retry, so a repeat must try again.
_RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Accepted:
    """The operation (new or found): pending, or done with its answer."""

    operation: Operation


@dataclass(frozen=True)
class KeyReused:
    """The id names another request."""

    operation: Operation


Submitted = Accepted | KeyReused


class AsyncCalls:
    def __init__(self, operations: OperationStore, queues: Queues, *, lease_seconds: float,
                 clock: Callable[[], float] = time.time, telemetry: Telemetry | None = None) -> None:
        self.operations = operations
        self.queues = queues
        self._lease_seconds = lease_seconds
        self._clock = clock
        self.telemetry = telemetry or Telemetry()

    def submit(self, operation_id: str, request: DefenderRequest, caller: str, correlation_id: str, *,
               shape: HuntingShape | None = None) -> Submitted:
        """Store and queue a new operation, or find the one this id names (`shape`: a hunting query's answer shape,
        kept in its message and record).

        Raises OperationsStorageError or QueueStorageError when it could not be accepted.
        """
        operation = self.operations.new(operation_id, request, caller=caller, source=Source.HTTP,
                                        correlation_id=correlation_id, shape=shape)
        stored = self.operations.create(operation)
        if not isinstance(stored, Created):
            return Accepted(stored.operation) if stored.same else KeyReused(stored.operation)
        try:
            # The message carries this call's trace, so the worker's span continues it.
            # It names its caller too: were its record purged while it waits, the worker recreates the operation
            # for that caller (its reader) and checks again that it may act for the request's tenant.
            self.queues.put_request(encode(RequestMessage(operation_id, request, caller=caller,
                                                          traceparent=self.telemetry.traceparent(), shape=shape)))
        except Exception:
            if not self.operations.delete(stored.operation):
                logger.error("operation %s: not queued, and its record could not be removed", operation_id)
            raise
        logger.info("%s: operation %s accepted [correlation %s]", request.api, operation_id, correlation_id)
        self.telemetry.operation_created(request.api.value, Source.HTTP.value)
        return Accepted(stored.operation)

    def run_here(self, operation_id: str, request: DefenderRequest, caller: str, correlation_id: str,
                 run: Callable[[], tuple[Answer, int]], *, shape: HuntingShape | None = None) -> Submitted:
        """Run the operation in this call (once), keeping its answer; a repeat gets the kept answer (or 202 while
        the first is still running). `run` gives the answer and how many requests went to Defender.

        The claim marks it as sending before `run` (the synchronous path takes its slot inside the call): a crash
        during the call reads as a request that may have reached Defender."""
        operation = self.operations.new(operation_id, request, caller=caller, source=Source.HTTP,
                                        correlation_id=correlation_id, shape=shape)
        stored = self.operations.create(operation)
        if not isinstance(stored, Created):
            return Accepted(stored.operation) if stored.same else KeyReused(stored.operation)
        self.telemetry.operation_created(request.api.value, Source.HTTP.value)
        now = self._clock()
        claimed = self.operations.update(stored.operation, lease_until=now + self._lease_seconds, in_flight=True,
                                         expires_at=stored.operation.kept_until(now))
        if claimed is None:  # changed under us: whoever did holds it
            found = self.operations.get(operation_id)
            return Accepted(found or stored.operation)
        try:
            answer, sent = run()
        except Exception:
            self.operations.delete(claimed)  # nothing kept: a repeat may try again
            raise
        if answer.status in _RETRY_STATUSES:
            self.operations.delete(claimed)
            return Accepted(_done(claimed, answer))
        # A 429 or 503 is Defender's (or the budget's) refusal without acting: not kept, so a repeat tries again.
        # Anything else keeps how many requests were sent: a create sent once is never sent again (re-drive).
        done = self.operations.update(claimed, state=State.DONE, answer=answer, in_flight=False, lease_until=0.0,
                                      attempts=claimed.attempts + sent,
                                      expires_at=claimed.kept_until(self._clock()) if sent
                                      else stored.operation.expires_at)
        self.telemetry.operation_finished(request.api.value, answer.status, self._clock() - claimed.created_at)
        return Accepted(done or _done(claimed, answer))

    def status(self, operation_id: str, caller: str) -> Operation | None:
        """The operation, if it exists and `caller` may read it: the one it was stored for (an Entra object id, or ""
        for function-key callers and queue messages that name no caller)."""
        operation = self.operations.get(operation_id)
        if operation is None or operation.caller != caller:
            return None
        return operation


def _done(operation: Operation, answer: Answer) -> Operation:
    return replace(operation, state=State.DONE, answer=answer)
