"""File-alerts lookups that share answers: from the answer cache within its TTL, and, in one process, one
upstream call for concurrent identical lookups. A shared answer spends no Defender quota and no rate-limit slot.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from shared.answer_cache import AnswerCache, CachedAnswer
from shared.defender_client import DefenderRequest
from shared.gateway import CallResult, Gateway, Sent
from shared.outcomes import Success


@dataclass(frozen=True)
class Cached:
    """Answered from the shared cache: nothing was sent."""

    answer: CachedAnswer


@dataclass(frozen=True)
class Fetched:
    """Asked Defender (through the rate limit). `joined`: another thread of this process asked, this one waited."""

    result: CallResult
    joined: bool = False


Lookup = Cached | Fetched


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    result: CallResult | None = None


def complete_answer(body: bytes) -> bool:
    """A whole list of alerts: no `@odata.nextLink` (a page of a longer list is not kept)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("value"), list) \
        and "@odata.nextLink" not in document


class FileAlertsLookups:
    """`lookup(sha1)`: the cache (unless `refresh`), else one upstream call per SHA-1 per process at a time."""

    def __init__(self, gateway: Gateway, cache: AnswerCache | None) -> None:
        self.gateway = gateway
        self.cache = cache
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._lock = threading.Lock()

    def lookup(self, sha1: str, correlation_id: str, *, refresh: bool = False) -> Lookup:
        identity = self.gateway.identity()
        if self.cache is not None and not refresh:
            hit = self.cache.get(identity.principal, sha1)
            if hit is not None:
                return Cached(hit)
        key = (identity.principal, sha1)
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        # Another thread is asking Defender for the same file: its answer is this one's too (if it comes in time).
        if not leading and flight.done.wait(self.gateway.retry.total_timeout + 5) and flight.result is not None:
            return Fetched(flight.result, joined=True)
        try:
            result = self.gateway.call(DefenderRequest.file_alerts(sha1), correlation_id, identity=identity)
            if leading:
                flight.result = result
        finally:
            if leading:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        last = result.last
        if self.cache is not None and isinstance(last, Sent) and isinstance(last.outcome, Success) \
                and complete_answer(last.outcome.body):
            self.cache.put(identity.principal, sha1, last.outcome.body)
        return Fetched(result)
