"""What one worker process builds once, at start-up, from the settings: the edge and everything behind it.

function_app.py calls `start(load_settings())` when the Functions host loads it; the entry points
then use `edge()`. Nothing is built lazily, so a bad setting (storage included) stops start-up.
"""

from __future__ import annotations

from shared.answer_cache import AnswerCache
from shared.credentials import build_credential
from shared.defender_client import DefenderClient
from shared.edge import HttpEdge
from shared.gateway import Gateway, RetryPolicy
from shared.lookups import FileAlertsLookups
from shared.ratelimit import RateLimiters, TableStore, build_rate_limiters
from shared.settings import Settings
from shared.storage import table_client

_edge: HttpEdge | None = None


def rate_limiters(settings: Settings) -> RateLimiters:
    """One table client and one limiter per API, as the settings say."""
    limits = settings.rate_limits
    return build_rate_limiters(
        TableStore(table_client(settings.storage, limits.table_name)), limits.policies.values(),
        margin_seconds=limits.margin_seconds, max_conflict_retries=limits.max_conflict_retries,
        new_state_share=limits.new_state_share)


def build(settings: Settings) -> HttpEdge:
    """One credential (token cache), one HTTP session, one table client and one limiter per API."""
    defender = settings.defender
    client = DefenderClient(defender, build_credential(defender))
    limiters = rate_limiters(settings)
    retry = RetryPolicy(max_retries=defender.max_retries, max_retry_after=defender.max_retry_after,
                        total_timeout=defender.total_timeout,
                        attempt_seconds=defender.connect_timeout + defender.read_timeout)
    gateway = Gateway(client, limiters, retry)
    return HttpEdge(gateway, settings, FileAlertsLookups(gateway, answer_cache(settings)))


def answer_cache(settings: Settings) -> AnswerCache | None:
    """The shared answers of repeated lookups (None when FILE_ALERTS_CACHE_SECONDS is 0)."""
    cache = settings.answer_cache
    if not cache.ttl_seconds:
        return None
    return AnswerCache(table_client(settings.storage, cache.table_name), cache.ttl_seconds)


def start(settings: Settings) -> HttpEdge:
    """Build this process's edge from `settings` and keep it for the entry points."""
    global _edge
    _edge = build(settings)
    return _edge


def edge() -> HttpEdge:
    """The edge built at start-up."""
    if _edge is None:
        raise RuntimeError("shared.runtime.start() has not run: function_app.py starts the gateway")
    return _edge
