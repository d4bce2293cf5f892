"""File-alerts lookups that share answers: from the answer cache within its TTL, and, in one process, one
upstream call for concurrent identical lookups. A shared answer spends no Defender quota and no rate-limit slot.

A lookup by SHA-256 is resolved to the file's SHA-1 first (`FileHashResolver`: the shared map in Table
Storage, else Defender's file information API within its own budget), then looked up like any SHA-1.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from shared.answer_cache import AnswerCache, CachedAnswer
from shared.defender_client import DefenderRequest
from shared.gateway import CallResult, Gateway, Identity, Sent
from shared.hash_map import FileHashMap
from shared.outcomes import Malformed, Rejected, Success, file_entity_sha1


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


@dataclass(frozen=True)
class Resolved:
    """The SHA-256's file has this SHA-1. `result`: the file-information call that said so (None: the map knew)."""

    sha1: str
    result: CallResult | None = None


@dataclass(frozen=True)
class UnknownFile:
    """Defender does not know the file (file information answered 404): it has no alerts either."""

    result: CallResult


@dataclass(frozen=True)
class Unresolved:
    """No SHA-1: the file-information call was refused by the budget, or Defender's answer was a failure."""

    result: CallResult


Resolution = Resolved | UnknownFile | Unresolved


class FileHashResolver:
    """SHA-256 -> SHA-1: from the shared map (`hash_map`; None: none), else Defender's file information API."""

    def __init__(self, gateway: Gateway, hash_map: FileHashMap | None) -> None:
        self.gateway = gateway
        self.hash_map = hash_map

    def known(self, sha256: str) -> str | None:
        """The SHA-1 some instance resolved `sha256` to before, or None: nothing is sent."""
        return self.hash_map.get(sha256) if self.hash_map is not None else None

    def resolve(self, sha256: str, correlation_id: str, *, identity: Identity | None = None) -> Resolution:
        """The HTTP path: the map, else one file-information call (retried as Gateway.call retries)."""
        sha1 = self.known(sha256)
        if sha1 is not None:
            return Resolved(sha1)
        return self.learn(sha256, self.gateway.call(DefenderRequest.file_info(sha256), correlation_id,
                                                    identity=identity))

    def learn(self, sha256: str, result: CallResult) -> Resolution:
        """What a file-information call for `sha256` came to; a SHA-1 it names is kept in the map."""
        last = result.last
        if isinstance(last, Sent) and isinstance(last.outcome, Success):
            try:
                sha1 = file_entity_sha1(json.loads(last.outcome.body))
            except ValueError:
                sha1 = None
            if sha1 is None:  # classify accepts the body only with one; never pass a file entity on as alerts
                malformed = Malformed(200, is_json=True)
                return Unresolved(CallResult(Sent(malformed, last.decision), result.sent, malformed))
            if self.hash_map is not None:
                self.hash_map.put(sha256, sha1)
            return Resolved(sha1, result)
        if isinstance(last, Sent) and isinstance(last.outcome, Rejected) and last.outcome.status == 404:
            return UnknownFile(result)
        return Unresolved(result)


class FileAlertsLookups:
    """`lookup(sha1)`: the cache (unless `refresh`), else one upstream call per SHA-1 per process at a time.
    `resolver` turns a SHA-256 into the SHA-1 to look up."""

    def __init__(self, gateway: Gateway, cache: AnswerCache | None, resolver: FileHashResolver | None = None) -> None:
        self.gateway = gateway
        self.cache = cache
        self.resolver = resolver or FileHashResolver(gateway, None)
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
