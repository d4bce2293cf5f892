"""The limiter's clock corrected by a real table's answers (Azurite); the in-process part: tests/unit/test_clock.py."""

from __future__ import annotations

import time

from localdev.azurite import Azurite
from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, TableStore
from tests.support.scripted import policy


def test_limiter_decides_on_the_storage_services_time(azurite: Azurite, table_name: str) -> None:
    """A real table answer's Date corrects an instance whose clock is 30 s ahead."""
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(azurite.connection_string, table_name, **CLIENT_OPTIONS)
    limiter = RateLimiter(TableStore(client), policy("10/60"), margin_seconds=1, max_conflict_retries=3,
                          clock=lambda: time.time() + 30)
    before = time.time()
    decision = limiter.acquire("p")
    after = time.time()
    assert decision.admitted
    # Azurite runs on this machine's clock: the answers' Dates place the offset in an interval that holds the true
    # -30 s, and the correction is that interval's point nearest to zero (its upper end).
    bounds = limiter.clock.bounds()
    assert bounds is not None
    low, high = bounds
    assert low <= -30 <= high < 0 and limiter.clock.offset == high
    # The decision was dated by the corrected clock (the first answer's Date had already moved it back), never
    # earlier than the true time allows and before the instance's own +30 s.
    assert before + 30 + low <= decision.decided_at < after + 30
