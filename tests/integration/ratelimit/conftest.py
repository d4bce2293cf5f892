"""Fixtures of the rate-limit tests: a fresh table per test in the session's Azurite, a settable clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.data.tables import TableClient

from localdev.azurite import Azurite
from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, TableStore
from tests.support.scripted import FakeClock, policy


@pytest.fixture
def table_name() -> str:
    return "rl" + uuid.uuid4().hex


@pytest.fixture
def new_client(azurite: Azurite, table_name: str) -> Iterator[Callable[[], TableClient]]:
    """Each call gives a separate client (its own connections) on the test's table, like another instance."""
    clients: list[TableClient] = []

    def make() -> TableClient:
        client = TableClient.from_connection_string(azurite.connection_string, table_name, **CLIENT_OPTIONS)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def new_limiter(new_client: Callable[[], TableClient], clock: FakeClock) -> Callable[..., RateLimiter]:
    """A limiter on its own client; `windows` like "3/60", margin 0 unless given.

    The clock is the test's hand-driven one, so it is not synchronised with the storage service's;
    and a new state admits its whole limit unless `share` says otherwise (exact counting is tested
    from fresh states; the share has tests of its own).
    """

    def make(windows: str, *, margin: float = 0.0, retries: int = 10, client: TableClient | None = None,
             api: str = "file_alerts", share: float = 1.0) -> RateLimiter:
        return RateLimiter(TableStore(client or new_client()), policy(windows, api), margin_seconds=margin,
                           max_conflict_retries=retries, clock=clock, sync_clock=False, new_state_share=share)

    return make
