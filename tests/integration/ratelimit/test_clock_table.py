"""The limiter's clock corrected by a real table's answers (Azurite); the in-process part: tests/unit/test_clock.py."""

from __future__ import annotations

import time

import pytest

from localdev.azurite import Azurite
from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, TableStore
from tests.support.scripted import policy


def test_limiter_decides_on_the_storage_services_time(azurite: Azurite, table_name: str) -> None:
    """A real table answer's Date corrects an instance whose clock is 30 s ahead."""
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(azurite.connection_string, table_name, **CLIENT_OPTIONS)
    limiter = RateLimiter(TableStore(client), policy("10/60"), margin_seconds=1, max_conflict_retries=3,
                          clock=lambda: time.time() + 30)
    decision = limiter.acquire("p")
    assert decision.admitted
    assert abs(decision.decided_at - time.time()) < 1.5
    assert limiter.clock.offset == pytest.approx(-30, abs=1.5)
