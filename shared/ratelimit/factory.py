"""One limiter per upstream API, all over one store: what a process builds once and keeps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.policy import DEFAULT_NEW_STATE_SHARE, RatePolicy
from shared.ratelimit.store import StateStore


@dataclass(frozen=True)
class RateLimiters:
    """The limiters of a process, by API name."""

    by_api: Mapping[str, RateLimiter]

    def for_api(self, api: str) -> RateLimiter:
        """The limiter of `api`; KeyError for an API without a policy."""
        return self.by_api[api]


def build_rate_limiters(store: StateStore, policies: Iterable[RatePolicy], *, margin_seconds: float,
                        max_conflict_retries: int, new_state_share: float = DEFAULT_NEW_STATE_SHARE,
                        clock: Callable[[], float] = time.time, sync_clock: bool = True) -> RateLimiters:
    """A limiter for each policy, sharing `store`. Build once per process: the limiters hold its memory."""
    return RateLimiters({
        policy.api: RateLimiter(store, policy, margin_seconds=margin_seconds, max_conflict_retries=max_conflict_retries,
                                clock=clock, sync_clock=sync_clock, new_state_share=new_state_share)
        for policy in policies
    })
