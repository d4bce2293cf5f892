"""The limiter against a real table (Azurite): the suite every store passes (tests/support/limiter_contract.py),
then what is the table's own: its round trips, and ETag conflicts counted exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.data.tables import TableClient, UpdateMode

from shared.ratelimit import CLIENT_OPTIONS, Decision, RateLimiter, Reason
from tests.support.limiter_contract import LimiterContract, remaining
from tests.support.scripted import FakeClock

NewLimiter = Callable[..., RateLimiter]


class InterleavingClient(TableClient):
    """A real client that runs queued actions right after a read returns: lost races, on demand."""

    after_read: list[Callable[[], object]]

    def get_entity(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_entity(*args, **kwargs)
        finally:
            while self.after_read:
                self.after_read.pop(0)()


@pytest.fixture
def interleaving_client(azurite: Any, table_name: str) -> InterleavingClient:
    client = InterleavingClient.from_connection_string(azurite.connection_string, table_name, **CLIENT_OPTIONS)
    assert isinstance(client, InterleavingClient)
    client.after_read = []
    return client


def test_lost_races_are_retried_and_counts_stay_exact(new_limiter: NewLimiter,
                                                      interleaving_client: InterleavingClient) -> None:
    a = new_limiter("6/60", client=interleaving_client)
    b = new_limiter("6/60")
    other: list[Decision] = []

    # First call: b creates the table and the entity between a's read and a's create (409 twice).
    interleaving_client.after_read.append(lambda: other.append(b.acquire("p")))
    first = a.acquire("p")
    assert first.admitted and first.conflicts == 1
    assert first.storage_round_trips == 5  # read, create table (exists), create (exists), read, update
    # Later call: b has written since, so a's remembered ETag is stale (412); a reads, and b updates again
    # between that read and a's If-Match update (412 once more); a reads again and wins.
    other.append(b.acquire("p"))
    interleaving_client.after_read.append(lambda: other.append(b.acquire("p")))
    second = a.acquire("p")
    assert second.admitted and second.conflicts == 2
    assert second.storage_round_trips == 5  # update (412), read, update (412), read, update
    assert all(d.admitted for d in other)
    assert remaining(second) == [1]  # 2 from a + 3 from b: nothing lost, nothing doubled
    assert [new_limiter("6/60").acquire("p").admitted for _ in range(2)] == [True, False]


def test_round_trips_of_a_first_call_an_update_and_a_restore(new_limiter: NewLimiter,
                                                              new_client: Callable[[], TableClient],
                                                              clock: FakeClock) -> None:
    limiter = new_limiter("4/60", share=0.5)
    start = clock.now
    assert limiter.acquire("p").storage_round_trips == 3  # read (no table yet), create table, create entity
    assert limiter.acquire("p").storage_round_trips == 1  # If-Match update on the remembered ETag
    clock.now = start + 61
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]
    _delete_entity(new_client())
    clock.advance(1)
    refused = limiter.acquire("p")
    # (update on the remembered ETag: 404, read: none, create the merged state)
    assert (refused.admitted, refused.reason, refused.storage_round_trips) == (False, Reason.RATE_LIMITED, 3)


def _delete_entity(client: TableClient) -> None:
    for entity in client.list_entities():
        client.delete_entity(entity["PartitionKey"], entity["RowKey"])


class TableBackend:
    """The suite's store: the test's table on Azurite, each instance on a client of its own."""

    def __init__(self, new_limiter: NewLimiter, new_client: Callable[[], TableClient], clock: FakeClock,
                 interleaving: InterleavingClient) -> None:
        self.clock = clock
        self._new_limiter = new_limiter
        self._new_client = new_client
        self._interleaving = interleaving

    def limiter(self, windows: str, *, margin: float = 0.0, share: float = 1.0, retries: int = 10,
                racing: bool = False) -> RateLimiter:
        return self._new_limiter(windows, margin=margin, share=share, retries=retries,
                                 client=self._interleaving if racing else None)

    def after_read(self, action: Callable[[], object]) -> None:
        self._interleaving.after_read.append(action)

    def race_next_reads(self, count: int) -> None:
        """Nothing to arrange: each instance's read is a round trip to Azurite, long enough for threads to race."""

    def lose_state(self) -> None:
        _delete_entity(self._new_client())

    def backup(self) -> Callable[[], None]:
        admin = self._new_client()
        saved = dict(next(iter(admin.list_entities())))

        def restore() -> None:
            admin.upsert_entity(saved, mode=UpdateMode.REPLACE)

        return restore


class TestTableStore(LimiterContract):
    @pytest.fixture
    def backend(self, new_limiter: NewLimiter, new_client: Callable[[], TableClient], clock: FakeClock,
                interleaving_client: InterleavingClient) -> TableBackend:
        return TableBackend(new_limiter, new_client, clock, interleaving_client)
