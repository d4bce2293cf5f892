"""Build the limiters of both Defender APIs from the app settings (once per process)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from azure.data.tables import TableClient

from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import CREATE_ALERT, FILE_ALERTS, load_rate_limit_settings
from shared.ratelimit.storage import table_client_from_env


@dataclass(frozen=True)
class RateLimiters:
    """One limiter per upstream API, sharing one table client."""

    file_alerts: RateLimiter
    create_alert: RateLimiter

    def for_api(self, api: str) -> RateLimiter:
        """The limiter for `file_alerts` or `create_alert`."""
        if api == FILE_ALERTS:
            return self.file_alerts
        if api == CREATE_ALERT:
            return self.create_alert
        raise KeyError(api)


def rate_limiters_from_env(env: Mapping[str, str] | None = None, *, clock: Callable[[], float] = time.time,
                           table_client: TableClient | None = None) -> RateLimiters:
    """Read the RATE_LIMIT_* and storage settings (ConfigurationError if wrong) and build both limiters.

    Call it once per process and keep the result; `table_client` overrides the one from settings.
    """
    env = os.environ if env is None else env
    settings = load_rate_limit_settings(env)
    client = table_client if table_client is not None else table_client_from_env(env, settings.table_name)

    def build(api: str) -> RateLimiter:
        return RateLimiter(client, settings.policies[api], margin_seconds=settings.margin_seconds,
                           max_conflict_retries=settings.max_conflict_retries, clock=clock,
                           new_state_share=settings.new_state_share)

    return RateLimiters(file_alerts=build(FILE_ALERTS), create_alert=build(CREATE_ALERT))
