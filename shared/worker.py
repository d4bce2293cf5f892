"""The queue worker: runs one request message to its operation's final answer, or schedules it again.

    handle(text)
      parse (invalid: the operation records the 400, the message goes to the poison queue with the reason)
      -> the operation (created, or found: a different request under the same id goes to poison, 422)
      -> done already: reply if not yet replied; nothing is sent again
      -> held by another worker: look again when its lease ends
      -> claimed earlier and never answered: a GET is sent again; a POST is not (it may have reached
         Defender), it ends as 504 upstream-outcome-unknown
      -> a lookup by SHA-256: the file's SHA-1 first (the shared map, else one file-information call within its
         own budget, paced, retried and answered like any call; an unknown file is 200 with no alerts)
      -> a slot of the shared budget. A message from the request queue is only tried: if the budget is spent, a
         copy goes to the API's own waiting queue (`<queue>-create-alert` ...) for when it frees, so a spent
         budget never holds up requests for the other APIs. A message from a waiting queue waits in place up to
         MAX_HOLD_SECONDS (the slot is taken the moment it frees), else it is queued there again for later.
         Neither counts as a failure: throttling never poisons
      -> claim (ETag), send once, record the answer; a Defender 429 is scheduled again like a refusal;
         transient failures back off and are retried QUEUE_MAX_RETRIES times, then the answer is final
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

from shared.answer import Answer
from shared.answer_cache import AnswerCache
from shared.answers import (
    Answers,
    identity_problem,
    input_problem,
    interrupted_problem,
    key_reused_problem,
    storage_problem,
)
from shared.defender import API_FACTS, Api
from shared.defender_client import DefenderRequest, IdentityError
from shared.gateway import CallResult, Gateway, Identity, RetryPolicy, Sent
from shared.lookups import FileHashResolver, Resolved, UnknownFile, complete_answer
from shared.operations import Created, Operation, OperationStore, Source, State
from shared.outcomes import Outcome, Success, Throttled, Unavailable
from shared.problems import Problem
from shared.queue_messages import InvalidMessageError, parse
from shared.queue_names import POISON_SUFFIX
from shared.queues import Queues
from shared.ratelimit import RateLimitStorageError
from shared.settings import AsyncSettings
from shared.validation import InvalidInputError

logger = logging.getLogger("mde_alert_gateway.worker")

#: A slot that frees within this many seconds is waited for in place (exact timing: no budget left idle).
MAX_HOLD_SECONDS = 5.0
#: A message scheduled for later comes back this much early and waits the rest in place.
EARLY_SECONDS = 1.0
#: Backoff after the n-th transient failure: 5, 10, 20, 40 ... seconds, at most 5 minutes, with jitter.
BACKOFF_FIRST = 5.0
BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class _Later:
    """Come back after `seconds`, in the queue where requests wait for `api`'s budget."""

    api: Api
    seconds: float


class RequestWorker:
    """One per process. `handle` is the queue function's whole body."""

    def __init__(self, gateway: Gateway, operations: OperationStore, queues: Queues, answers: Answers,
                 settings: AsyncSettings, *, cache: AnswerCache | None = None,
                 resolver: FileHashResolver | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.gateway = gateway
        self.operations = operations
        self.queues = queues
        self.answers = answers
        self.settings = settings
        self.cache = cache
        self.resolver = resolver or FileHashResolver(gateway, None)
        self._clock = clock
        self._sleep = sleep
        self._random = random.Random()  # noqa: S311 - jitter only
        self._lease_seconds = gateway.retry.attempt_seconds + 30
        self._forbidden_replies = frozenset({*settings.queues, settings.poison_queue,
                                             *(queue + POISON_SUFFIX for queue in settings.queues)})

    def handle(self, text: str, *, waiting: bool = False) -> None:
        """Run the message to an answer or schedule it again. `waiting`: the message comes from a waiting queue
        (it may wait in place for its slot). Raises only when the message must come back (storage down): the host
        then retries it and counts the failure."""
        try:
            message = parse(text, forbidden_reply_queues=self._forbidden_replies)
        except InvalidMessageError as error:
            self._refuse(text, error)
            return
        operation = self.operations.new(message.id, message.request, caller=message.caller, source=Source.QUEUE,
                                        correlation_id=message.id, reply_queue=message.reply_queue)
        stored = self.operations.create(operation)
        if not isinstance(stored, Created) and not stored.same:
            logger.warning("message %s names an operation of a different request: poisoned", message.id)
            self._poison(text, "id-reused", key_reused_problem().detail)
            return
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
        try:
            identity = self.gateway.identity()
        except IdentityError as error:
            return self._failed(operation, identity_problem(error))
        try:
            if request.api is Api.FILE_ALERTS and len(file_hash := request.file_hash) == 64:
                resolved = self._resolve(operation, file_hash, identity, hold)  # SHA-256: the file's SHA-1 first
                if not isinstance(resolved, str):
                    return resolved
                request = DefenderRequest.file_alerts(resolved)
            if request.api is Api.FILE_ALERTS and self.cache is not None:
                hit = self.cache.get(identity.principal, request.file_hash)
                if hit is not None:
                    self._complete(operation, self.answers.cached(request.api, hit.body, hit.age,
                                                                  operation.correlation_id))
                    return None
            return self._send(operation, request, identity, hold)
        except RateLimitStorageError as error:
            logger.warning("%s: operation %s: rate-limit storage failed: %s", request.api, operation.id, error)
            return self._failed(operation, storage_problem())

    def _resolve(self, operation: Operation, sha256: str, identity: Identity, hold: float) -> str | _Later | None:
        """The SHA-1 of the file `sha256` names (the shared map, else one file-information call); `_Later` when the
        message must come back (budget refused, Defender's 429, a transient failure), None when the operation got
        its final answer (an unknown file: no alerts; or the failure's problem). Raises RateLimitStorageError."""
        sha1 = self.resolver.known(sha256)
        if sha1 is not None:
            return sha1
        sent = self._send_on_a_slot(DefenderRequest.file_info(sha256), identity, operation.correlation_id,
                                    self._clock() + hold)
        if not isinstance(sent, Sent):
            return _Later(Api.FILE_INFO, max(0.0, sent - EARLY_SECONDS))
        resolution = self.resolver.learn(sha256, CallResult(sent, 1, sent.outcome))
        if isinstance(resolution, Resolved):
            return resolution.sha1
        if isinstance(resolution, UnknownFile):
            self._complete(operation, self.answers.unknown_file(resolution.result, operation.correlation_id))
            return None
        outcome = resolution.result.outcome
        if isinstance(outcome, Throttled):  # like a refusal: never counted as a failure
            return _Later(Api.FILE_INFO, outcome.retry_after or 60)
        if outcome is not None and RetryPolicy.retryable(API_FACTS[Api.FILE_INFO].method, outcome) \
                and operation.failures < self.settings.max_retries:
            updated = self.operations.update(operation, failures=operation.failures + 1)
            return self._backoff(Api.FILE_INFO, operation.failures + 1, _retry_after(outcome)) \
                if updated is not None else _Later(Api.FILE_INFO, 1)
        self._complete(operation, self.answers.result(Api.FILE_INFO, resolution.result, operation.correlation_id))
        return None

    def _send(self, operation: Operation, request: DefenderRequest, identity: Identity, hold: float) -> _Later | None:
        hold_until = self._clock() + hold
        refusal = self.gateway.known_refusal(request.api, identity)
        if refusal is not None and self._clock() + refusal.retry_after_ms / 1000 > hold_until:
            # The budget is spent for longer than this message may wait here (nothing claimed, nothing written).
            return _Later(request.api, max(0.0, refusal.retry_after_ms / 1000 - EARLY_SECONDS))
        # Claim first (ETag), so that nothing stands between the slot and the request: the margin of the
        # windows then covers only the request's own way to Defender.
        claimed = self.operations.update(operation, lease_until=self._clock() + self._lease_seconds, in_flight=True)
        if claimed is None:  # another worker changed it since it was read: look again
            return _Later(request.api, 1)
        try:
            sent = self._send_on_a_slot(request, identity, operation.correlation_id, hold_until)
        except RateLimitStorageError:
            self._release(claimed)
            raise
        if not isinstance(sent, Sent):
            released = self._release(claimed)
            return _Later(request.api, max(0.0, sent - EARLY_SECONDS)) if released else None
        outcome = sent.outcome
        attempts = claimed.attempts + 1
        if isinstance(outcome, Throttled):
            released = self._release(claimed, attempts=attempts)
            return _Later(request.api, outcome.retry_after or 60) if released else None
        answer = self.answers.result(request.api, CallResult(sent, 1, outcome), operation.correlation_id)
        if not isinstance(outcome, Success) and RetryPolicy.retryable(request.method, outcome) \
                and claimed.failures < self.settings.max_retries:
            released = self._release(claimed, attempts=attempts, failures=claimed.failures + 1)
            return self._backoff(request.api, claimed.failures + 1, _retry_after(outcome)) if released else None
        if isinstance(outcome, Success) and request.api is Api.FILE_ALERTS and self.cache is not None \
                and complete_answer(outcome.body):
            self.cache.put(identity.principal, request.file_hash, outcome.body)
        self._complete(claimed, answer, attempts=attempts)
        return None

    def _send_on_a_slot(self, request: DefenderRequest, identity: Identity, correlation_id: str,
                        hold_until: float) -> Sent | float:
        """Send `request` once on a slot of its API's shared budget, waiting here for one until `hold_until`;
        else the seconds until the budget frees. Raises RateLimitStorageError."""
        while True:
            attempt = self.gateway.attempt(request, identity, correlation_id, time_left=self._lease_seconds - 30)
            if isinstance(attempt, Sent):
                return attempt
            wait = attempt.decision.retry_after_ms / 1000
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
        done = self.operations.update(operation, state=State.DONE, answer=answer, in_flight=False, lease_until=0.0,
                                      **changes)
        if done is None:
            current = self.operations.get(operation.id)
            if current is None or current.done:
                return  # someone else finished it (and delivers it)
            done = self.operations.update(current, state=State.DONE, answer=answer, in_flight=False,
                                          lease_until=0.0, **changes)
            if done is None:
                raise RuntimeError(f"operation {operation.id}: the answer could not be recorded")
        logger.info("%s: operation %s done: %d", operation.api, operation.id, answer.status)
        self._deliver(done, None)

    def _deliver(self, operation: Operation, text: str | None) -> None:
        """The reply (once per operation), and the poison queue for an answer that is not a success."""
        answer = operation.answer
        assert answer is not None
        if operation.reply_queue and not operation.replied:
            self.queues.put(operation.reply_queue, _reply(operation, answer))
            self.operations.update(operation, replied=True)
        if text is None and answer.status >= 400:
            self._poison(json.dumps({"version": 1, "id": operation.id, "operation": operation.api.value}),
                         _kind(answer), _detail(answer), operation_id=operation.id, status=answer.status)

    def _refuse(self, text: str, error: InvalidMessageError) -> None:
        """An invalid message: its operation (when it has an id) records the 400; the message goes to poison."""
        problem = input_problem(InvalidInputError(list(error.errors)))
        logger.warning("invalid request message (%s): %s", error.reason,
                       ", ".join(f"{e.field} {e.message}" for e in error.errors))
        if error.message_id is not None:
            answer = self.answers.problem(None, problem, error.message_id)
            placeholder = self.operations.new(error.message_id, DefenderRequest(Api.CREATE_ALERT, "", None),
                                              caller="", source=Source.QUEUE, correlation_id=error.message_id)
            stored = self.operations.create(placeholder)
            if isinstance(stored, Created):
                self.operations.update(stored.operation, state=State.DONE, answer=answer)
        self._poison(text, error.reason, problem.detail, errors=[e.to_json() for e in error.errors])

    def _poison(self, text: str, reason: str, detail: str, **extra: object) -> None:
        self.queues.put_poison(json.dumps({"reason": reason, "detail": detail, **extra, "message": text}))


def _retry_after(outcome: Outcome) -> float | None:
    return outcome.retry_after if isinstance(outcome, Unavailable) else None


def _reply(operation: Operation, answer: Answer) -> str:
    """The reply message: the operation's answer, its body inline when it fits a queue message."""
    document: dict[str, object] = {"version": 1, "id": operation.id, "status": answer.status,
                                   "headers": dict(answer.headers)}
    try:
        document["body"] = json.loads(answer.body)
    except ValueError:
        document["body"] = answer.body.decode("utf-8", "replace")
    text = json.dumps(document)
    if len(text.encode()) > 60 * 1024:
        del document["body"]
        document["bodyOmitted"] = True  # larger than a queue message: GET /api/operations/{id} has it
        text = json.dumps(document)
    return text


def _problem_field(answer: Answer, name: str) -> str:
    try:
        value = json.loads(answer.body).get(name)
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _kind(answer: Answer) -> str:
    kind = _problem_field(answer, "type")
    return kind.rsplit(":", 1)[-1] if kind else f"status-{answer.status}"


def _detail(answer: Answer) -> str:
    return _problem_field(answer, "detail")
