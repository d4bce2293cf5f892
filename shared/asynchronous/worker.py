"""The queue worker: runs one request message to its operation's final answer, or schedules it again.

    handle(text)
      parse (invalid: the operation records the 400, the message goes to the poison queue with the reason)
      -> the operation (created, or found: a different request under the same id goes to poison, 422)
      -> done already: reply if not yet replied; nothing is sent again
      -> held by another worker: look again when its lease ends
      -> marked as sending and never answered: a GET is sent again; a POST ends 504 upstream-outcome-unknown (it
         may have reached Defender). A claim that lapsed while waiting for a slot sent nothing: simply run again
      -> with Entra ID, a caller GATEWAY_TENANT_CALLERS does not let act for the request's tenant: 403, nothing
         sent (a message naming no caller is the queue writer's own: its data role is the boundary)
      -> a file-alerts lookup goes through shared.lookups (the path the HTTP GET takes too): a SHA-256's SHA-1
         from the shared map, else one file-information call within its own budget, paced, retried and answered
         like any call (an unknown file is 200 with no alerts); then the shared answer, else Defender. A hunting
         query too (shared.asynchronous.hunting_runs): the shared answer, else Graph, answered in the caller's shape
      -> a slot of the shared budget. A message from the request queue is only tried: if the budget is spent, a
         copy goes to the API's own waiting queue (`<queue>-create-alert` ...) for when it frees, so a spent
         budget never holds up requests for the other APIs. A message from a waiting queue waits in place up to
         MAX_HOLD_SECONDS (the slot is taken the moment it frees), else it is queued there again for later.
         Neither counts as a failure: throttling never poisons
      -> claim (ETag), take the slot, mark a create as sending (ETag), send once, record the answer (a create
         that may have been sent is kept SENT_CREATE_RETENTION_SECONDS); a 429 is scheduled again like a refusal
         (Graph's CPU 429: to the block's end); transient failures back off and are retried QUEUE_MAX_RETRIES
         times (never a POST that may have left: a hunting timeout is its answer), then the answer is final
      -> reply queue, and the poison queue for any answer that is not a success

The worker rescheduling by sending a new message (and completing the one it was given) keeps the
Functions host's dequeue count for real failures: a message the worker raises on is retried by the
host and poisoned after maxDequeueCount (host.json).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.answers.answer import Answer
from shared.answers.mapping import (
    Answers,
    identity_problem,
    input_problem,
    interrupted_problem,
    key_reused_problem,
    storage_problem,
    tenant_not_allowed_problem,
)
from shared.answers.problems import Problem
from shared.asynchronous.claims import Claim
from shared.asynchronous.hunting_runs import hunting_answer
from shared.asynchronous.messages import InvalidMessageError, parse, poison_entry, problem_detail, problem_kind, reply
from shared.asynchronous.operations import Created, Operation, OperationsStorageError, OperationStore, Source, State
from shared.asynchronous.queue_names import POISON_SUFFIX
from shared.asynchronous.queues import Queues, QueueStorageError
from shared.asynchronous.settings import AsyncSettings
from shared.defender.client import DefenderRequest, IdentityError
from shared.defender.facts import API_FACTS, Api
from shared.defender.gateway import CallResult, Gateway, Identity, RetryPolicy, Sent
from shared.defender.outcomes import Outcome, Success, Throttled, Unavailable
from shared.defender.tenants import HOME_TENANT
from shared.lookups.file_alerts import Cached, Deferred, Fetched, FileAlertsLookups, UnknownFile
from shared.lookups.hunting import HuntingLookups
from shared.ratelimit import RateLimitStorageError
from shared.telemetry import catalogue
from shared.telemetry.catalogue import ErrorKind, SpanName
from shared.validation import InvalidInputError

logger = logging.getLogger("mde_alert_gateway.worker")

#: A slot that frees within this many seconds is waited for in place (exact timing: no budget left idle).
MAX_HOLD_SECONDS = 5.0
#: A message scheduled for later comes back this much early and waits the rest in place.
EARLY_SECONDS = 1.0
#: Backoff after the n-th transient failure: 5, 10, 20, 40 ... seconds, at most 5 minutes, with jitter.
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0
#: A claim's lease outlasts the longest attempt at its API by this much (the time around the request itself).
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class _Later:
    """Come back after `seconds`, in the queue where requests wait for `api`'s budget."""

    api: Api
    seconds: float


class _Sender:
    """How the worker sends an operation's requests: a file-information request (a lookup's first step) on a slot
    it may hold for; any other after claiming the operation, so it is sent once. Keeps the claimed record."""

    def __init__(self, worker: RequestWorker, operation: Operation, identity: Identity, hold_until: float) -> None:
        self.worker, self.operation, self.identity, self.hold_until = worker, operation, identity, hold_until

    def __call__(self, request: DefenderRequest) -> CallResult | Deferred[_Later | None]:
        worker = self.worker
        if request.api is Api.FILE_INFO:
            sent = worker._send_on_a_slot(request, self.identity, self.operation.correlation_id, self.hold_until)
            if not isinstance(sent, Sent):
                return Deferred(_Later(Api.FILE_INFO, max(0.0, (sent or 0.0) - EARLY_SECONDS)))
            return CallResult(sent, 1, sent.outcome)
        claimed = worker._claim_and_send(self.operation, request, self.identity, self.hold_until)
        if isinstance(claimed, Deferred):
            return claimed
        self.operation, result = claimed
        return result


class RequestWorker:
    """One per process. `handle` is the queue function's whole body."""

    def __init__(self, gateway: Gateway, operations: OperationStore, queues: Queues, answers: Answers,
                 settings: AsyncSettings, *, lookups: FileAlertsLookups | None = None,
                 hunting: HuntingLookups | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 may_act: Callable[[str, str | None], bool] | None = None) -> None:
        self.gateway, self.operations, self.queues, self.answers = gateway, operations, queues, answers
        self.settings = settings
        #: The file-alerts lookups and hunting queries the HTTP edge takes too (one of each per process: what is in
        #: flight is shared).
        self.lookups, self.hunting = lookups or FileAlertsLookups(gateway), hunting or HuntingLookups(gateway)
        self._clock, self._sleep = clock, sleep
        self._random = random.Random()  # noqa: S311 - jitter only
        #: With Entra ID, GATEWAY_TENANT_CALLERS: whether caller (an object id) may act for a tenant (None: home).
        self._may_act = may_act
        self._forbidden_replies = frozenset({*settings.queues, settings.poison_queue,
                                             *(queue + POISON_SUFFIX for queue in settings.queues)})

    def handle(self, text: str, *, waiting: bool = False, invocation: str | None = None) -> None:
        """Run the message to an answer or schedule it again. `waiting`: the message comes from a waiting queue
        (it may wait in place for its slot). `invocation`: the host's `traceparent` for this invocation. Raises
        only when the message must come back (storage down): the host then retries it and counts the failure."""
        try:
            self._handle(text, waiting, invocation)
        except OperationsStorageError:
            self.gateway.telemetry.error(ErrorKind.OPERATIONS_STORAGE)
            raise
        except QueueStorageError:
            self.gateway.telemetry.error(ErrorKind.QUEUE_STORAGE)
            raise

    def _handle(self, text: str, waiting: bool, invocation: str | None) -> None:
        try:
            message = parse(text, forbidden_reply_queues=self._forbidden_replies,
                            tenants=self.gateway.client.settings.multi_tenant)
        except InvalidMessageError as error:
            self._refuse(text, error)
            return
        operation = self.operations.new(message.id, message.request, caller=message.caller, source=Source.QUEUE,
                                        correlation_id=message.id, reply_queue=message.reply_queue,
                                        shape=message.shape)
        stored = self.operations.create(operation)
        if not isinstance(stored, Created) and not stored.same:
            logger.warning("message %s names an operation of a different request: poisoned", message.id)
            self._poison(text, "id-reused", key_reused_problem().detail)
            return
        telemetry = self.gateway.telemetry
        if isinstance(stored, Created):
            telemetry.operation_created(operation.api.value, Source.QUEUE.value)
        attributes = {catalogue.API: operation.api.value, catalogue.OPERATION_ID: message.id,
                      catalogue.CORRELATION_ID: stored.operation.correlation_id}
        # The trace of the HTTP call that queued the request goes on, linked to the host's invocation that runs it
        # now; a request from automation carries no trace and is a child of that invocation.
        queued_by, run_by = telemetry.continued(message.traceparent), telemetry.continued(invocation)
        with telemetry.span(SpanName.QUEUED, attributes, parent=queued_by or run_by,
                            link=run_by if queued_by is not None else None):
            self._run(stored.operation, text, MAX_HOLD_SECONDS if waiting else 0.0)

    def _run(self, operation: Operation, text: str, hold: float) -> None:
        if operation.done:
            self._deliver(operation, text)
            return
        later = self._step(operation, hold)
        if later is not None:
            self.queues.put_waiting(later.api, text, delay_seconds=later.seconds)

    def _step(self, operation: Operation, hold: float) -> _Later | None:
        """Take the operation one step, waiting in place for a slot up to `hold` seconds; `_Later` when the
        message must come back."""
        now = self._clock()
        if operation.lease_until > now:
            return _Later(operation.api, operation.lease_until - now + 1)  # another worker holds it
        request = operation.request
        if operation.in_flight and request.method == "POST":
            logger.warning("%s: operation %s was interrupted on its way to Defender; not sent again", request.api,
                           operation.id)
            self._complete(operation, self.answers.problem(request.api, interrupted_problem(),
                                                           operation.correlation_id))
            return None
        if operation.caller and self._may_act is not None and not self._may_act(operation.caller, request.tenant):
            logger.warning("%s: operation %s: its caller may not act for its tenant (no longer, or never); not sent",
                           request.api, operation.id)
            self._complete(operation, self.answers.problem(request.api, tenant_not_allowed_problem(
                request.tenant or HOME_TENANT), operation.correlation_id))
            return None
        try:
            identity = self.gateway.identity(request.tenant, request.service)  # Graph's token for hunting
        except IdentityError as error:
            self.gateway.telemetry.error(ErrorKind.IDENTITY if error.tenant is None else ErrorKind.TENANT_IDENTITY)
            return self._failed(operation, identity_problem(error))
        sender = _Sender(self, operation, identity, self._clock() + hold)
        try:
            if request.api is Api.FILE_ALERTS:
                return self._look_up(sender, request.file_hash)
            if request.api is Api.HUNTING:
                return self._hunt(sender)
            result = sender(request)
            if isinstance(result, Deferred):
                return result.reason
            self._complete(sender.operation, self.answers.result(request.api, result, operation.correlation_id,
                                                              request.tenant),
                           attempts=sender.operation.attempts + result.sent)
            return None
        except RateLimitStorageError as error:
            logger.warning("%s: operation %s: rate-limit storage failed: %s", request.api, operation.id, error)
            self.gateway.telemetry.error(ErrorKind.RATE_LIMIT_STORAGE)
            return self._failed(sender.operation, storage_problem())

    def _look_up(self, sender: _Sender, file_hash: str) -> _Later | None:
        """A file-alerts operation through the lookups the HTTP GET takes too (the shared answer, the SHA-256 map,
        Defender), its requests sent by `sender`. Raises RateLimitStorageError."""
        operation = sender.operation
        correlation_id = operation.correlation_id
        found = self.lookups.lookup(file_hash, sender.identity, sender, tenant=operation.request.tenant)
        if isinstance(found, Deferred):
            return found.reason
        if isinstance(found, Cached):
            answer = self.answers.cached(Api.FILE_ALERTS, found.answer.body, found.answer.age, correlation_id)
        elif isinstance(found, Fetched):
            answer = self.answers.result(Api.FILE_ALERTS, found.result, correlation_id, operation.request.tenant)
        elif isinstance(found, UnknownFile):
            answer = self.answers.unknown_file(found.result, correlation_id)
        else:  # the SHA-256 is not resolved: Defender's file information failed
            outcome = found.result.outcome
            if isinstance(outcome, Throttled):  # like a refusal: never counted as a failure
                return _Later(Api.FILE_INFO, outcome.retry_after or 60)
            if outcome is not None and RetryPolicy.retryable(API_FACTS[Api.FILE_INFO].method, outcome) \
                    and operation.failures < self.settings.max_retries:
                updated = self.operations.update(operation, failures=operation.failures + 1)
                return self._backoff(Api.FILE_INFO, operation.failures + 1, _retry_after(outcome)) \
                    if updated is not None else _Later(Api.FILE_INFO, 1)
            answer = self.answers.result(Api.FILE_INFO, found.result, correlation_id, operation.request.tenant)
        sent = found.result.sent if isinstance(found, Fetched) and not found.joined else 0
        self._complete(sender.operation, answer, attempts=sender.operation.attempts + sent)
        return None

    def _hunt(self, sender: _Sender) -> _Later | None:
        """A hunting operation, its query sent by `sender` (a large answer goes to a blob with the record)."""
        found = hunting_answer(self.hunting, self.answers, sender.operation, sender.identity, sender)
        if not isinstance(found, Deferred):
            self._complete(sender.operation, found[0], attempts=sender.operation.attempts + found[1])
        return found.reason if isinstance(found, Deferred) else None

    def _claim_and_send(self, operation: Operation, request: DefenderRequest, identity: Identity,
                        hold_until: float) -> tuple[Operation, CallResult] | Deferred[_Later | None]:
        """Claim the operation (ETag) and send `request` once on a slot: the claimed record and what Defender
        answered, or Deferred when it must come back (the claim given back). Raises RateLimitStorageError."""
        refusal = self.gateway.known_refusal(request.api, identity)
        if refusal is not None and self._clock() + refusal.retry_after_ms / 1000 > hold_until:
            # The budget is spent for longer than this message may wait here (nothing claimed, nothing written).
            return Deferred(_Later(request.api, max(0.0, refusal.retry_after_ms / 1000 - EARLY_SECONDS)))
        # Claim first (ETag), so that no worker holds a slot while it competes for the operation. A create is
        # claimed as waiting for its slot and marked as sending once it holds one (one write between slot and
        # request: the windows' margin covers it, and a slot grown stale is never used); a lookup, harmless to
        # send again, is claimed as sending at once.
        post = request.method == "POST"
        # Per API: a hunting query's lease (Graph's 3 minutes) never delays finishing a dead instance's create.
        lease = self.gateway.retry.attempt_seconds_of(request.api) + LEASE_MARGIN_SECONDS
        claimed = self.operations.update(operation, lease_until=self._clock() + lease, in_flight=not post)
        if claimed is None:  # another worker changed it since it was read: look again
            return Deferred(_Later(request.api, 1))
        claim = Claim(self.operations, claimed, self._clock, lease) if post else None
        try:
            sent = self._send_on_a_slot(request, identity, operation.correlation_id, hold_until, claim)
        except RateLimitStorageError:
            self._release(claim.record if claim else claimed)
            raise
        if sent is None:  # the record changed under the claim: whoever changed it has the operation
            return Deferred(None)
        if claim is not None:
            claimed = claim.record
        if not isinstance(sent, Sent):
            released = self._release(claimed)
            return Deferred(_Later(request.api, max(0.0, sent - EARLY_SECONDS)) if released else None)
        outcome = sent.outcome
        attempts = claimed.attempts + 1
        if isinstance(outcome, Throttled):  # back when the block it set on every instance ends (Graph's CPU too)
            released = self._release(claimed, attempts=attempts)
            assert sent.blocked_for is not None, "Gateway.send sets the block of every 429"
            return Deferred(_Later(request.api, sent.blocked_for) if released else None)
        if not isinstance(outcome, Success) and RetryPolicy.retryable(request.method, outcome) \
                and claimed.failures < self.settings.max_retries:
            released = self._release(claimed, attempts=attempts, failures=claimed.failures + 1)
            return Deferred(self._backoff(request.api, claimed.failures + 1, _retry_after(outcome))
                            if released else None)
        return claimed, CallResult(sent, 1, outcome)

    def _send_on_a_slot(self, request: DefenderRequest, identity: Identity, correlation_id: str,
                        hold_until: float, claim: Claim | None = None) -> Sent | float | None:
        """Send `request` once on a slot of its API's shared budget, waiting here for one until `hold_until`;
        else the seconds until the budget frees. With a `claim`, the record is marked as sending once the slot is
        held, just before the request leaves (None: the record changed under the claim, nothing was sent).
        Raises RateLimitStorageError."""
        while True:
            decision = self.gateway.admit(request.api, identity, correlation_id)
            if decision.admitted:
                if claim is not None and not claim.sending():
                    return None
                attempt = self.gateway.send(request, identity, decision, correlation_id,
                                            time_left=self.gateway.retry.attempt_seconds_of(request.api))
                if isinstance(attempt, Sent):
                    return attempt
                decision = attempt.decision  # the slot went stale and no other was free: nothing left
                if claim is not None and not claim.waiting():
                    return None
            wait = decision.retry_after_ms / 1000
            if self._clock() + wait > hold_until:
                return wait
            self._sleep(wait)

    def _failed(self, operation: Operation, problem: Problem) -> _Later | None:
        """A transient failure before anything was sent: back off, or give the final answer when retries are spent."""
        if operation.failures >= self.settings.max_retries:
            self._complete(operation, self.answers.problem(operation.api, problem, operation.correlation_id))
            return None
        updated = self.operations.update(operation, failures=operation.failures + 1)
        return self._backoff(operation.api, operation.failures + 1, None) if updated is not None \
            else _Later(operation.api, 1)

    def _backoff(self, api: Api, failures: int, retry_after: float | None) -> _Later:
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
        return _Later(api, max(retry_after or 0, delay * self._random.uniform(0.8, 1.2)))

    def _release(self, operation: Operation, **changes: int) -> bool:
        """Give the claim back (nothing was decided); False when the record changed under us (someone else has it)."""
        return self.operations.update(operation, in_flight=False, lease_until=0.0, **changes) is not None

    def _complete(self, operation: Operation, answer: Answer, **changes: int) -> None:
        """Record the final answer. A create that may have reached Defender is kept from now on as long as a copy of
        its message may still come back (a copy put while it was pending is found done and dropped)."""
        done = self.operations.update(operation, state=State.DONE, answer=answer, in_flight=False, lease_until=0.0,
                                      expires_at=self._kept(operation, changes), **changes)
        if done is None:
            current = self.operations.get(operation.id)
            if current is None or current.done:
                return  # someone else finished it (and delivers it)
            done = self.operations.update(current, state=State.DONE, answer=answer, in_flight=False,
                                          lease_until=0.0, expires_at=self._kept(current, changes), **changes)
            if done is None:
                raise RuntimeError(f"operation {operation.id}: the answer could not be recorded")
        logger.info("%s: operation %s done: %d", operation.api, operation.id, answer.status)
        self.gateway.telemetry.operation_finished(operation.api.value, answer.status,
                                                  self._clock() - operation.created_at)
        self._deliver(done, None)

    def _kept(self, operation: Operation, changes: dict[str, int]) -> float:
        """The record's expiry once `changes` (attempts) are written."""
        sent = operation.may_have_reached_defender or changes.get("attempts", operation.attempts) > 0
        return operation.kept_until(self._clock()) if sent else operation.expires_at

    def _deliver(self, operation: Operation, text: str | None) -> None:
        """The reply (once per operation), and the poison queue for an answer that is not a success."""
        answer = operation.answer
        assert answer is not None
        if operation.reply_queue and not operation.replied:
            self.queues.put(operation.reply_queue, reply(operation.id, answer))
            self.operations.update(operation, replied=True)
        if text is None and answer.status >= 400:
            self._poison(json.dumps({"version": 1, "id": operation.id, "operation": operation.api.value}),
                         problem_kind(answer), problem_detail(answer), operation_id=operation.id, status=answer.status)

    def _refuse(self, text: str, error: InvalidMessageError) -> None:
        """An invalid message: its operation (when it has an id) records the 400; the message goes to poison."""
        problem = input_problem(InvalidInputError(list(error.errors)))
        logger.warning("invalid request message (%s): %s", error.reason, ", ".join(map(str, error.errors)))
        if error.message_id is not None:
            answer = self.answers.problem(None, problem, error.message_id)
            placeholder = self.operations.new(error.message_id, DefenderRequest(Api.CREATE_ALERT, "", None),
                                              caller="", source=Source.QUEUE, correlation_id=error.message_id)
            stored = self.operations.create(placeholder)
            if isinstance(stored, Created):
                self.operations.update(stored.operation, state=State.DONE, answer=answer)
        self._poison(text, error.reason, problem.detail, errors=[e.to_json() for e in error.errors])

    def _poison(self, text: str, reason: str, detail: str, **extra: object) -> None:
        self.queues.put_poison(poison_entry(text, reason, detail, **extra))
        self.gateway.telemetry.request_poisoned(reason)


def _retry_after(outcome: Outcome) -> float | None:
    return outcome.retry_after if isinstance(outcome, Unavailable) else None
