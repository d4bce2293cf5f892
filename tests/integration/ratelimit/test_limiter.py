"""The limiter against a real table (Azurite): exact counts, blocks, memory and ETag conflicts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.data.tables import TableClient, UpdateMode

from shared.ratelimit import CLIENT_OPTIONS, Decision, RateLimiter, Reason
from tests.support.scripted import FakeClock, acquire_until_refused

NewLimiter = Callable[..., RateLimiter]


def remaining(decision: Decision) -> list[int]:
    return [w.remaining for w in decision.windows]


def test_exact_boundary_with_margin(new_limiter: NewLimiter, clock: FakeClock) -> None:
    limiter = new_limiter("3/10", margin=2.0)
    start = clock.now
    first = limiter.acquire("tenant-a")
    assert first.admitted and first.retry_after == 0 and remaining(first) == [2]
    assert first.decided_at == start
    assert first.storage_round_trips == 3  # read (no table yet), create table, create entity
    clock.advance(0.5)
    assert limiter.acquire("tenant-a").storage_round_trips == 1  # If-Match update on the remembered ETag
    assert remaining(limiter.acquire("tenant-a")) == [0]

    refused = limiter.acquire("tenant-a")  # the 4th: the window is full until start + 10 + 2 s
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, Reason.RATE_LIMITED, 12)
    assert refused.windows[0].reset_seconds == 12

    clock.now = start + 11.999
    assert not limiter.acquire("tenant-a").admitted
    another_instance = new_limiter("3/10", margin=2.0)  # no memory: decides from the table alone
    late = another_instance.acquire("tenant-a")
    assert (late.admitted, late.retry_after, late.storage_round_trips) == (False, 1, 1)

    clock.now = start + 12.0  # the oldest call leaves window + margin exactly now
    again = limiter.acquire("tenant-a")
    assert again.admitted and remaining(again) == [0]
    assert not another_instance.acquire("tenant-a").admitted
    # Other principals have their own budget.
    assert new_limiter("3/10", margin=2.0).acquire("tenant-b").admitted


def test_hour_window_binds_before_minute_window(new_limiter: NewLimiter, clock: FakeClock) -> None:
    limiter = new_limiter("2/1,3/10")  # scaled down: 2 per "minute" (1 s), 3 per "hour" (10 s)
    start = clock.now
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, False]
    clock.advance(1.0)
    assert limiter.acquire("p").admitted  # minute window has room again; hour now holds 3
    refused = limiter.acquire("p")
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, Reason.RATE_LIMITED, 9)
    assert remaining(refused) == [1, 0]  # the minute window would allow it; the hour window does not
    clock.now = start + 9.999
    assert not limiter.acquire("p").admitted
    clock.now = start + 10.0  # both calls made at start leave the hour window together
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, False]


def test_retry_after_rounds_up_to_when_the_first_slot_frees(new_limiter: NewLimiter, clock: FakeClock) -> None:
    limiter = new_limiter("2/5,4/30", margin=0.5)
    start = clock.now
    limiter.acquire("p")
    clock.advance(0.3)
    limiter.acquire("p")
    clock.advance(0.9)
    refused = limiter.acquire("p")
    assert refused.retry_after == 5  # start + 5.5 s - (start + 1.2 s) = 4.3 s
    clock.now = start + 5.5
    assert limiter.acquire("p").admitted
    clock.now = start + 5.8
    assert limiter.acquire("p").admitted  # the 4th call in 30.5 s
    refused = limiter.acquire("p")
    assert refused.retry_after == 25  # 30 s window full until start + 30.5 s: 24.7 s away
    assert [(w.name, w.remaining, w.reset_seconds) for w in refused.windows] == [("5s", 0, 6), ("30s", 0, 25)]


def test_upstream_block_is_shared_and_kept_in_memory(new_limiter: NewLimiter, clock: FakeClock) -> None:
    a = new_limiter("5/600")
    b = new_limiter("5/600")  # another instance: its own client and memory
    assert a.acquire("p").admitted
    a.block("p", 30)

    first = b.acquire("p")
    assert (first.admitted, first.reason, first.retry_after, first.storage_round_trips) == \
        (False, Reason.BLOCKED, 30, 1)
    clock.advance(10)
    during = [b.acquire("p"), a.acquire("p")]
    assert all(not d.admitted and d.retry_after == 20 and d.storage_round_trips == 0 for d in during)

    # The later end wins, whoever writes last.
    b.block("p", 60)
    a.block("p", 5)
    third = new_limiter("5/600").acquire("p")
    assert (third.reason, third.retry_after) == (Reason.BLOCKED, 60)

    clock.advance(60)
    assert a.acquire("p").admitted and b.acquire("p").admitted
    # The block kept the log: 3 of 5 used, so 2 more then refused.
    assert [a.acquire("p").admitted for _ in range(3)] == [True, True, False]


def test_block_before_any_call_creates_the_entity(new_limiter: NewLimiter, clock: FakeClock) -> None:
    new_limiter("5/60").block("fresh", 3)
    refused = new_limiter("5/60").acquire("fresh")
    assert (refused.reason, refused.retry_after) == (Reason.BLOCKED, 3)


def test_full_window_refusals_come_from_memory(new_limiter: NewLimiter, clock: FakeClock) -> None:
    limiter = new_limiter("2/60")
    limiter.acquire("p")
    limiter.acquire("p")
    refusals = [limiter.acquire("p") for _ in range(5)]
    assert all(not d.admitted and d.storage_round_trips == 0 and d.retry_after == 60 for d in refusals)
    clock.advance(60)
    assert limiter.acquire("p").storage_round_trips == 1  # an If-Match update on the remembered ETag


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


def test_out_of_conflict_retries_refuses(new_limiter: NewLimiter, interleaving_client: InterleavingClient) -> None:
    a = new_limiter("3/60", client=interleaving_client, retries=0)
    b = new_limiter("3/60")
    assert b.acquire("p").admitted
    interleaving_client.after_read.append(lambda: b.acquire("p"))
    refused = a.acquire("p")
    assert (refused.admitted, refused.reason, refused.retry_after, refused.conflicts) == \
        (False, Reason.CONTENTION, 1, 1)
    # Only b's two calls are logged: one slot left.
    assert [new_limiter("3/60").acquire("p").admitted for _ in range(2)] == [True, False]


def test_threads_on_separate_clients_admit_exactly_the_limit(new_limiter: NewLimiter) -> None:
    decisions = acquire_until_refused([new_limiter("25/60", retries=50) for _ in range(8)])
    assert sum(d.admitted for d in decisions) == 25
    assert sum(d.conflicts for d in decisions) > 0

def test_threads_sharing_one_limiter_admit_exactly_the_limit(new_limiter: NewLimiter) -> None:
    limiter = new_limiter("30/60")
    with ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda _: limiter.acquire("shared"), range(60)))
    assert sum(d.admitted for d in decisions) == 30
    assert all(d.reason is Reason.RATE_LIMITED for d in decisions if not d.admitted)


def _delete_entity(client: TableClient) -> None:
    for entity in client.list_entities():
        client.delete_entity(entity["PartitionKey"], entity["RowKey"])


def test_a_lost_entity_gets_back_what_this_instance_remembers(
        new_limiter: NewLimiter, new_client: Callable[[], TableClient], clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    limiter = new_limiter("4/60")
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, True]
    admin = new_client()
    _delete_entity(admin)  # the entity (or the whole table, or Azurite's memory) is gone
    clock.advance(1)
    with caplog.at_level(logging.WARNING, "mde_alert_gateway.ratelimit"):
        decisions = [limiter.acquire("p") for _ in range(3)]
    assert [d.admitted for d in decisions] == [True, False, False]  # 3 remembered + 1 = the limit
    assert "was missing: restored 3 admission(s)" in caplog.text
    # The restored log is back in the table: an instance with no memory counts all four.
    assert not new_limiter("4/60").acquire("p").admitted


def test_an_entity_restored_from_an_older_copy_is_merged(new_limiter: NewLimiter,
                                                         new_client: Callable[[], TableClient],
                                                         clock: FakeClock) -> None:
    limiter = new_limiter("5/60")
    limiter.acquire("p")
    admin = new_client()
    old = dict(next(iter(admin.list_entities())))
    for _ in range(3):
        limiter.acquire("p")
    admin.upsert_entity(old, mode=UpdateMode.REPLACE)  # a backup from after the first call
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, False]


def test_a_refused_call_still_writes_back_what_it_restored(new_limiter: NewLimiter,
                                                           new_client: Callable[[], TableClient],
                                                           clock: FakeClock) -> None:
    limiter = new_limiter("4/60", share=0.5)
    start = clock.now
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]  # a new state: 2 of 4
    clock.now = start + 61
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]  # grown up: room for 4
    _delete_entity(new_client())
    clock.advance(1)
    # This instance's memory has room (2 of 4), but the table's state was lost: it starts anew, so only
    # a share counts as free, and the 2 remembered calls fill it. The merge is written back regardless ...
    refused = limiter.acquire("p")
    # (update on the remembered ETag: 404, read: none, create the merged state)
    assert (refused.admitted, refused.reason, refused.storage_round_trips) == (False, Reason.RATE_LIMITED, 3)
    # ... so an instance that remembers nothing still counts them.
    assert not new_limiter("4/60", share=0.5).acquire("p").admitted


def test_without_memory_a_new_state_admits_only_its_share_for_one_window(new_limiter: NewLimiter,
                                                                          clock: FakeClock) -> None:
    limiter = new_limiter("6/10", margin=1.0, share=0.5)
    start = clock.now
    assert [limiter.acquire("p").admitted for _ in range(4)] == [True, True, True, False]
    clock.now = start + 10.999
    assert not limiter.acquire("p").admitted
    clock.now = start + 11.0  # the window + margin has passed since the state began: the whole limit
    assert [limiter.acquire("p").admitted for _ in range(7)] == [True] * 6 + [False]
    # An instance that meets the same state later sees it as grown up too.
    assert not new_limiter("6/10", margin=1.0, share=0.5).acquire("p").admitted
