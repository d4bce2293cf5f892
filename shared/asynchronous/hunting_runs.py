"""A queued hunting query's answer: through the hunting path the HTTP call takes too (a shared answer within
HUNTING_SHARE_SECONDS, else one Graph call), in the shape its caller asked for (Defender's, or Graph's)."""

from __future__ import annotations

from typing import TypeVar

from shared.answers.answer import Answer
from shared.answers.hunting import in_shape
from shared.answers.mapping import Answers
from shared.asynchronous.operations import Operation
from shared.defender.facts import Api
from shared.defender.gateway import Identity
from shared.lookups.file_alerts import Deferred, Send
from shared.lookups.hunting import HuntingLookups, Ran, Shared
from shared.validation.hunting import HuntingShape

_P = TypeVar("_P")


def hunting_answer(hunting: HuntingLookups, answers: Answers, operation: Operation, identity: Identity,
                   send: Send[_P]) -> tuple[Answer, int] | Deferred[_P]:
    """The operation's answer and how many requests went to Graph for it, or Deferred when `send` did not send.
    Defender's shape states how long the Graph request itself took (CallResult.seconds; a shared answer's: the call
    that got it) as Stats.ExecutionTime. A timeout or Graph's 400 is an answer like any other (never sent again);
    Answers gives each its problem."""
    found = hunting.run(operation.request, identity, send)
    if isinstance(found, Deferred):
        return found
    correlation_id = operation.correlation_id
    shape = operation.shape or HuntingShape.GRAPH
    if isinstance(found, Shared):  # nothing sent: Graph's answer as it was shared, its age said
        answer = answers.cached(Api.HUNTING, found.answer.body, found.answer.age, correlation_id)
        return in_shape(answer, shape, found.answer.seconds), 0
    answer = answers.result(Api.HUNTING, found.result, correlation_id, operation.request.tenant)
    sent = 0 if isinstance(found, Ran) and found.joined else found.result.sent
    return in_shape(answer, shape, found.result.seconds), sent
