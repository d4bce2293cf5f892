"""Rate limiting shared by every instance: an exact sliding log per (principal, API) in a state store.

A small library: it reads no settings and knows nothing of HTTP. Typical use::

    store = TableStore(TableClient.from_connection_string(conn, "ratelimits", **CLIENT_OPTIONS))
    limiters = build_rate_limiters(store, [RatePolicy("file_alerts", parse_windows("100/60,1500/3600"))],
                                   margin_seconds=2, max_conflict_retries=10)
    decision = limiters.for_api("file_alerts").acquire(principal)   # RateLimitStorageError: refuse the call
    if not decision.admitted: ...                                      # wait decision.retry_after seconds
    # on a 429 from upstream: limiters.for_api("file_alerts").block(principal, retry_after)

`memory_store.MemoryStore` keeps the same contract in process memory for the in-process tests (not deployed).
"""

from shared.ratelimit.decision import Decision, Reason, WindowState
from shared.ratelimit.entity import partition_key
from shared.ratelimit.factory import RateLimiters, build_rate_limiters
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import (
    DEFAULT_NEW_STATE_SHARE,
    MAX_CONFLICT_RETRIES,
    MAX_MARGIN_SECONDS,
    RatePolicy,
    Window,
    parse_windows,
)
from shared.ratelimit.store import RateLimitStorageError, Snapshot, StateStore, Tally
from shared.ratelimit.table_store import CLIENT_OPTIONS, TABLE_NAME, TableStore

__all__ = [
    "CLIENT_OPTIONS",
    "DEFAULT_NEW_STATE_SHARE",
    "MAX_CONFLICT_RETRIES",
    "MAX_MARGIN_SECONDS",
    "TABLE_NAME",
    "Decision",
    "RateLimitStorageError",
    "RateLimiter",
    "RateLimiters",
    "RatePolicy",
    "Reason",
    "Snapshot",
    "StateStore",
    "TableStore",
    "Tally",
    "Window",
    "WindowState",
    "build_rate_limiters",
    "parse_windows",
    "partition_key",
]
