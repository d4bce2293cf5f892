"""Rate limiting of the calls to Defender for Endpoint, shared by every instance through a table.

Typical use (once per process, then per call)::

    limiters = rate_limiters_from_env()
    decision = limiters.file_alerts.acquire(principal)      # may raise RateLimitStorageError -> 503
    headers = rate_limit_headers(decision)                   # add to the response either way
    if not decision.admitted: ...                            # 429 with Retry-After
    # on a 429 from Defender: limiters.file_alerts.block(principal, retry_after)
"""

from shared.ratelimit.decision import Decision, Reason, WindowState
from shared.ratelimit.entity import partition_key
from shared.ratelimit.factory import RateLimiters, rate_limiters_from_env
from shared.ratelimit.headers import policy_header, rate_limit_headers
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import (
    CREATE_ALERT,
    FILE_ALERTS,
    RateLimitSettings,
    RatePolicy,
    Window,
    load_rate_limit_settings,
    parse_windows,
)
from shared.ratelimit.storage import CLIENT_OPTIONS, RateLimitStorageError, table_client_from_env

__all__ = [
    "CLIENT_OPTIONS",
    "CREATE_ALERT",
    "FILE_ALERTS",
    "Decision",
    "RateLimitSettings",
    "RateLimitStorageError",
    "RateLimiter",
    "RateLimiters",
    "RatePolicy",
    "Reason",
    "Window",
    "WindowState",
    "load_rate_limit_settings",
    "parse_windows",
    "partition_key",
    "policy_header",
    "rate_limit_headers",
    "rate_limiters_from_env",
    "table_client_from_env",
]
