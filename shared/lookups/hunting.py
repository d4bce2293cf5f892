"""Hunting queries: the one path an HTTP call and a queued query both take, and where identical queries share one
Graph call when HUNTING_SHARE_SECONDS is above 0.

    run(request, identity, send)
      sharing off (the default): one Graph call through `send`, every time: Ran
      sharing on: the shared answer of the same query (same principal: tenant and app; same `Query` and `Timespan`,
      byte for byte) within HUNTING_SHARE_SECONDS: Shared, nothing sent; else one Graph call per query per process
      at a time (a concurrent identical query joins it), whose success is kept as the shared answer for every
      instance, with how long its Graph request took (a shared answer's Stats.ExecutionTime is the call's that got it)

Off by default: hunting results change by the second (new events arrive all the time), and a playbook that runs a
query again expects a fresh answer; sharing suits many playbooks running the same query at once (an incident that
fans out). What is kept is Graph's own answer (its shape); the caller's shape is made from it by the answers, as
for a fresh one. How a request is sent is the caller's, as for file lookups (shared.lookups.file_alerts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TypeVar

from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.defender.gateway import CallResult, Gateway, Identity, Sent
from shared.defender.outcomes import Success
from shared.lookups.answer_cache import AnswerCache, CachedAnswer
from shared.lookups.file_alerts import Deferred, Send
from shared.lookups.flights import Flights

_P = TypeVar("_P")

#: How much longer than the running query's longest attempt an identical one waits for its answer.
JOIN_MARGIN_SECONDS = 5.0
#: The answer cache's kind (RowKey prefix) of shared hunting answers.
HUNTING_KIND = "hunting"


@dataclass(frozen=True)
class Shared:
    """Answered from the shared answers (Graph's body, and its age): nothing was sent."""

    answer: CachedAnswer


@dataclass(frozen=True)
class Ran:
    """Graph's answer to this query. `joined`: an identical query of this process was running; this one took its
    answer (nothing sent for this one)."""

    result: CallResult
    joined: bool = False


Hunt = Shared | Ran


def query_key(request: DefenderRequest) -> str:
    """The query's key among the shared answers: a SHA-256 of its `Query` and `Timespan`, byte for byte (the tenant
    is the cache's partition: the principal)."""
    body = request.body or {}
    text = json.dumps([body.get("Query"), body.get("Timespan")], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class HuntingLookups:
    """Hunting queries over the shared answers (`cache`: HUNTING_SHARE_SECONDS as its TTL; None: sharing off). One per
    process: it also keeps the queries in flight."""

    def __init__(self, gateway: Gateway, cache: AnswerCache | None = None, *,
                 flights: Flights[CallResult] | None = None) -> None:
        self.gateway = gateway
        self.cache = cache
        self._flights: Flights[CallResult] = flights or Flights()

    @property
    def sharing(self) -> bool:
        return self.cache is not None

    def run(self, request: DefenderRequest, identity: Identity, send: Send[_P]) -> Hunt | Deferred[_P]:
        """The query's answer: shared (when sharing is on), else from Graph through `send`."""
        if request.api is not Api.HUNTING:
            raise ValueError(f"a {request.api} request is no hunting query")
        if self.cache is None:
            result = send(request)
            return result if isinstance(result, Deferred) else Ran(result)
        key = query_key(request)
        hit = self.cache.get(identity.principal, key)
        if hit is not None:
            return Shared(hit)
        # An identical query of this process is running: its answer is this one's too, waited for as long as the
        # running one's Graph call can take (a queued query's whole attempt; a synchronous one ends sooner).
        result, joined = self._flights.run((identity.principal, key), lambda: send(request),
                                           lambda found: not isinstance(found, Deferred),
                                           self.gateway.retry.attempt_seconds_of(Api.HUNTING) + JOIN_MARGIN_SECONDS)
        if isinstance(result, Deferred):
            return result
        last = result.last
        if not joined and isinstance(last, Sent) and isinstance(last.outcome, Success):
            self.cache.put(identity.principal, key, last.outcome.body, seconds=result.seconds)
        return Ran(result, joined)

    def call(self, request: DefenderRequest, identity: Identity, correlation_id: str) -> Hunt:
        """`run` with the HTTP path's sending: `Gateway.call`, which always comes to a result."""
        def send(sent: DefenderRequest) -> CallResult | Deferred[None]:
            return self.gateway.call(sent, correlation_id, identity=identity)

        found = self.run(request, identity, send)
        assert not isinstance(found, Deferred), "Gateway.call always comes to a result"
        return found
