"""File-alerts lookups: the one path an HTTP GET and a queued lookup both take.

    lookup(file hash, identity, send)
      a SHA-256: the file's SHA-1 from the shared map, else one file-information call (`send`); a SHA-1 it names
                 is kept in the map; a file Defender does not know (404) has no alerts either
      the shared answer within its TTL (unless a fresh one is asked for): Cached, nothing sent
      else one file-alerts call (`send`), one per SHA-1 per process at a time (a concurrent lookup of the same
      file joins it); a whole list of alerts is kept as the shared answer for every instance

How a request is sent is the caller's: the HTTP edge sends through `Gateway.call` (attempts retried within the
total timeout), the queue worker on a slot it claims and may hold for, and it may decide not to send now
(`Deferred`, carrying the worker's own reason). A shared answer spends no Defender quota and no rate-limit slot.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.defender.gateway import CallResult, Gateway, Identity, Sent
from shared.defender.outcomes import Malformed, Rejected, Success, file_entity_sha1
from shared.lookups.answer_cache import AnswerCache, CachedAnswer
from shared.lookups.flights import Flights
from shared.lookups.hash_map import FileHashMap

_P = TypeVar("_P")


@dataclass(frozen=True)
class Deferred(Generic[_P]):
    """The sender did not send, or came to no result this lookup may use; `reason` is the sender's own (the queue
    worker's: when the message comes back)."""

    reason: _P


#: Sends one Defender request for a lookup: its result, or Deferred.
Send = Callable[[DefenderRequest], CallResult | Deferred[_P]]


@dataclass(frozen=True)
class Cached:
    """Answered from the shared answers: nothing was sent."""

    sha1: str
    answer: CachedAnswer


@dataclass(frozen=True)
class Fetched:
    """Defender's answer for the file's alerts. `joined`: another thread of this process asked, this one waited."""

    sha1: str
    result: CallResult
    joined: bool = False


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
_RESOLUTION_RESULTS: dict[type, str] = {Resolved: "resolved", UnknownFile: "unknown", Unresolved: "failed"}
Lookup = Cached | Fetched | UnknownFile | Unresolved


def complete_answer(body: bytes) -> bool:
    """A whole list of alerts: no `@odata.nextLink` (a page of a longer list is not kept)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("value"), list) \
        and "@odata.nextLink" not in document


class FileAlertsLookups:
    """Lookups by SHA-1 or SHA-256 over the shared answers (`cache`; None: none) and the SHA-256 map (`hash_map`;
    None: none). One per process: it also keeps the lookups in flight."""

    def __init__(self, gateway: Gateway, cache: AnswerCache | None = None, hash_map: FileHashMap | None = None) -> None:
        self.gateway = gateway
        self.cache = cache
        self.hash_map = hash_map
        self._flights: Flights[CallResult] = Flights()

    def lookup(self, file_hash: str, identity: Identity, send: Send[_P], *, refresh: bool = False,
               tenant: str | None = None) -> Lookup | Deferred[_P]:
        """The file's alerts in the home tenant or customer tenant `tenant` (`identity` is its): from the shared
        answer (unless `refresh`), else from Defender through `send`."""
        sha1 = file_hash
        if len(file_hash) == 64:
            resolution = self.resolve(file_hash, send, tenant)
            if not isinstance(resolution, Resolved):
                return resolution
            sha1 = resolution.sha1
        if self.cache is not None and not refresh:
            hit = self.cache.get(identity.principal, sha1)
            self.gateway.telemetry.cache_lookup(hit=hit is not None)
            if hit is not None:
                return Cached(sha1, hit)
        return self._fetch(sha1, identity, send, tenant)

    def resolve(self, sha256: str, send: Send[_P], tenant: str | None = None) -> Resolution | Deferred[_P]:
        """The SHA-1 of the file `sha256` names: the shared map, else one file-information call through `send`."""
        sha1 = self.hash_map.get(sha256, tenant) if self.hash_map is not None else None
        if sha1 is not None:
            self.gateway.telemetry.sha256_resolution("map", "resolved")
            return Resolved(sha1)
        result = send(DefenderRequest.file_info(sha256).for_tenant(tenant))
        if isinstance(result, Deferred):
            return result
        resolution = self._learn(sha256, result, tenant)
        self.gateway.telemetry.sha256_resolution("file_info", _RESOLUTION_RESULTS[type(resolution)])
        return resolution

    def call(self, file_hash: str, identity: Identity, correlation_id: str, *, refresh: bool = False,
             tenant: str | None = None) -> Lookup:
        """`lookup` with the HTTP path's sending: `Gateway.call`, which always comes to a result."""
        found = self.lookup(file_hash, identity, self.http_send(identity, correlation_id), refresh=refresh,
                            tenant=tenant)
        assert not isinstance(found, Deferred), "Gateway.call always comes to a result"
        return found

    def http_send(self, identity: Identity, correlation_id: str) -> Send[None]:
        """The HTTP path's sending: attempts retried as the gateway's RetryPolicy allows."""
        return lambda request: self.gateway.call(request, correlation_id, identity=identity)

    def _fetch(self, sha1: str, identity: Identity, send: Send[_P], tenant: str | None) -> Fetched | Deferred[_P]:
        # Another thread is asking Defender for the same file: its answer is this one's too (if it comes in time).
        result, joined = self._flights.run((identity.principal, sha1),
                                           lambda: send(DefenderRequest.file_alerts(sha1).for_tenant(tenant)),
                                           lambda found: not isinstance(found, Deferred),
                                           self.gateway.retry.deadline_of(Api.FILE_ALERTS) + 5)
        if isinstance(result, Deferred):
            return result
        if joined:
            return Fetched(sha1, result, joined=True)
        last = result.last
        if self.cache is not None and isinstance(last, Sent) and isinstance(last.outcome, Success) \
                and complete_answer(last.outcome.body):
            self.cache.put(identity.principal, sha1, last.outcome.body)
        return Fetched(sha1, result)

    def _learn(self, sha256: str, result: CallResult, tenant: str | None) -> Resolution:
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
                self.hash_map.put(sha256, sha1, tenant)
            return Resolved(sha1, result)
        if isinstance(last, Sent) and isinstance(last.outcome, Rejected) and last.outcome.status == 404:
            return UnknownFile(result)
        return Unresolved(result)
