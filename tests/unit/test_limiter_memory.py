"""The real RateLimiter over the real MemoryStore with a hand-driven clock: exact counts, blocks, memory,
lost state, storage failures and threads, in milliseconds instead of Azurite round trips."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.ratelimit import Decision, MemoryStore, RateLimiter, RateLimitStorageError, Reason, Snapshot, Tally
from shared.ratelimit.entity import partition_key
from shared.ratelimit.sliding_log import LogState
from tests.support.scripted import FakeClock, RecordingStore, acquire_until_refused, policy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


def limiter_on(store: MemoryStore, clock: FakeClock, windows: str, *, margin: float = 0.0, share: float = 1.0,
               retries: int = 10) -> RateLimiter:
    """One instance's limiter: its own memory, the shared store, the test's clock (not synchronised)."""
    return RateLimiter(store, policy(windows), margin_seconds=margin, max_conflict_retries=retries, clock=clock,
                       sync_clock=False, new_state_share=share)


def remaining(decision: Decision) -> list[int]:
    return [w.remaining for w in decision.windows]


def test_exact_limit_and_boundary_with_margin(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "3/10", margin=2.0)
    start = clock.now
    first = limiter.acquire("tenant-a")
    assert (first.admitted, first.reason, first.retry_after, remaining(first)) == (True, Reason.ADMITTED, 0, [2])
    assert first.decided_at == start and first.storage_round_trips >= 1
    clock.advance(0.5)
    assert remaining(limiter.acquire("tenant-a")) == [1]
    assert remaining(limiter.acquire("tenant-a")) == [0]

    refused = limiter.acquire("tenant-a")  # the 4th: the window is full until start + 10 + 2 s
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, Reason.RATE_LIMITED, 12)
    assert refused.windows[0].reset_seconds == 12 and remaining(refused) == [0]

    clock.now = start + 11.999
    assert limiter.acquire("tenant-a").retry_after == 1
    another_instance = limiter_on(store, clock, "3/10", margin=2.0)  # no memory: decides from the store alone
    late = another_instance.acquire("tenant-a")
    assert (late.admitted, late.retry_after, late.storage_round_trips) == (False, 1, 1)

    clock.now = start + 12.0  # the oldest call leaves window + margin exactly now
    again = limiter.acquire("tenant-a")
    assert again.admitted and remaining(again) == [0]
    assert not another_instance.acquire("tenant-a").admitted
    # Other principals have budgets of their own.
    assert limiter_on(store, clock, "3/10", margin=2.0).acquire("tenant-b").admitted


def test_hour_window_binds_before_minute_window(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "2/1,3/10")  # scaled down: 2 per "minute" (1 s), 3 per "hour" (10 s)
    start = clock.now
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, False]
    clock.advance(1.0)
    assert limiter.acquire("p").admitted  # the minute window has room again; the hour now holds 3
    refused = limiter.acquire("p")
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, Reason.RATE_LIMITED, 9)
    assert [(w.name, w.limit, w.window_seconds, w.remaining) for w in refused.windows] == \
        [("1s", 2, 1, 1), ("10s", 3, 10, 0)]  # the minute window would allow it; the hour does not
    clock.now = start + 9.999
    assert not limiter.acquire("p").admitted
    clock.now = start + 10.0  # both calls made at start leave the hour window together
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, False]


def test_retry_after_rounds_up_to_when_the_first_slot_frees(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "2/5,4/30", margin=0.5)
    start = clock.now
    limiter.acquire("p")
    clock.advance(0.3)
    limiter.acquire("p")
    clock.advance(0.9)
    assert limiter.acquire("p").retry_after == 5  # start + 5.5 s - (start + 1.2 s) = 4.3 s, rounded up
    clock.now = start + 5.499
    assert not limiter.acquire("p").admitted
    clock.now = start + 5.5
    assert limiter.acquire("p").admitted
    clock.now = start + 5.8
    assert limiter.acquire("p").admitted  # the 4th call in 30.5 s
    refused = limiter.acquire("p")
    assert refused.retry_after == 25  # the 30 s window is full until start + 30.5 s: 24.7 s away
    assert [(w.name, w.remaining, w.reset_seconds) for w in refused.windows] == [("5s", 0, 6), ("30s", 0, 25)]


def test_a_block_is_shared_through_the_store_and_kept_in_memory(store: RecordingStore, clock: FakeClock) -> None:
    a = limiter_on(store, clock, "5/600")
    b = limiter_on(store, clock, "5/600")  # another instance: its own memory, the same store
    assert a.acquire("p").admitted
    a.block("p", 30)

    first = b.acquire("p")
    assert (first.admitted, first.reason, first.retry_after, first.storage_round_trips) == \
        (False, Reason.BLOCKED, 30, 1)
    clock.advance(10)
    reads = store.reads
    during = [b.acquire("p"), a.acquire("p")]
    assert all(not d.admitted and d.reason is Reason.BLOCKED and d.retry_after == 20 for d in during)
    assert [d.storage_round_trips for d in during] == [0, 0] and store.reads == reads

    # The later end wins, whoever writes last.
    b.block("p", 60)
    a.block("p", 5)
    third = limiter_on(store, clock, "5/600").acquire("p")
    assert (third.reason, third.retry_after) == (Reason.BLOCKED, 60)

    clock.advance(59.999)
    assert a.acquire("p").reason is Reason.BLOCKED
    clock.advance(0.001)
    assert a.acquire("p").admitted and b.acquire("p").admitted
    # The block kept the log: 3 of 5 used, so 2 more, then refused.
    assert [a.acquire("p").admitted for _ in range(3)] == [True, True, False]


def test_a_block_before_any_call_and_a_fractional_wait(store: RecordingStore, clock: FakeClock) -> None:
    limiter_on(store, clock, "5/60").block("fresh", 2.5)
    refused = limiter_on(store, clock, "5/60").acquire("fresh")
    assert (refused.admitted, refused.reason, refused.retry_after) == (False, Reason.BLOCKED, 3)  # rounded up
    clock.advance(2.5)
    assert limiter_on(store, clock, "5/60").acquire("fresh").admitted


def test_a_lost_block_is_restored_and_never_shortened(store: RecordingStore, clock: FakeClock) -> None:
    a = limiter_on(store, clock, "5/60")
    a.block("p", 60)
    store.forget()  # the stored block is lost; this instance still remembers it
    a.block("p", 5)  # a shorter 429 meanwhile must not replace the longer block in the store
    held = limiter_on(store, clock, "5/60").acquire("p")
    assert (held.reason, held.retry_after) == (Reason.BLOCKED, 60)


def test_refusals_come_from_memory_without_the_store(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "2/60")
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]
    store.available = False  # proof that nothing below asks the store: it would raise
    refusals = [limiter.acquire("p") for _ in range(5)]
    assert all(not d.admitted and d.storage_round_trips == 0 and d.retry_after == 60 for d in refusals)
    clock.advance(60)  # room again in what this instance knows: now it must ask the store
    with pytest.raises(RateLimitStorageError):
        limiter.acquire("p")
    store.available = True
    assert limiter.acquire("p").admitted


def test_storage_down_refuses_by_raising(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "5/60")
    store.available = False
    with pytest.raises(RateLimitStorageError, match="unavailable"):
        limiter.acquire("p")
    assert store.writes == []
    store.available = True
    decision = limiter.acquire("p")
    assert decision.admitted and remaining(decision) == [4]  # the failed call was not counted


def test_a_block_the_store_cannot_take_is_still_honoured_here(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "5/60")
    assert limiter.acquire("p").admitted
    store.available = False
    with pytest.raises(RateLimitStorageError):
        limiter.block("p", 20)
    held = limiter.acquire("p")
    assert (held.admitted, held.reason, held.retry_after, held.storage_round_trips) == (False, Reason.BLOCKED, 20, 0)
    with pytest.raises(RateLimitStorageError):  # an instance that knows nothing cannot decide
        limiter_on(store, clock, "5/60").acquire("p")


def test_lost_state_is_restored_from_memory(store: RecordingStore, clock: FakeClock,
                                            caplog: pytest.LogCaptureFixture) -> None:
    limiter = limiter_on(store, clock, "4/60")
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, True]
    store.forget()  # the table (or the entity, or Azurite's memory) is gone
    clock.advance(1)
    with caplog.at_level(logging.WARNING, "mde_alert_gateway.ratelimit"):
        decisions = [limiter.acquire("p") for _ in range(3)]
    assert [d.admitted for d in decisions] == [True, False, False]  # 3 remembered + 1 = the limit
    assert "was missing: restored 3 admission(s)" in caplog.text
    # The restored log is back in the store: an instance with no memory counts all four.
    assert not limiter_on(store, clock, "4/60").acquire("p").admitted


def test_a_state_restored_from_an_older_copy_is_merged(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "5/60")
    limiter.acquire("p")
    key = partition_key("p")
    backup = store.read(key, "file_alerts", Tally()).state
    for _ in range(3):
        clock.advance(0.1)
        limiter.acquire("p")
    current = store.read(key, "file_alerts", Tally())
    assert len(current.state.admissions_ms) == 4
    assert store.write(key, "file_alerts", backup, current.etag, Tally()) is not None  # restored from a backup
    clock.advance(0.1)
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, False]
    assert len(store.read(key, "file_alerts", Tally()).state.admissions_ms) == 5


def test_a_refused_call_still_writes_back_what_it_restored(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "4/60", share=0.5)
    start = clock.now
    assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, False]  # a new state: 2 of 4
    clock.now = start + 61
    assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]  # grown up: room for 4
    store.forget()
    clock.advance(1)
    # This instance's memory has room (2 of 4), but the stored state was lost: it starts anew, so only a
    # share counts as free, and the 2 remembered calls fill it. The merge is written back regardless ...
    refused = limiter.acquire("p")
    assert (refused.admitted, refused.reason) == (False, Reason.RATE_LIMITED)
    # ... so an instance that remembers nothing still counts them.
    assert not limiter_on(store, clock, "4/60", share=0.5).acquire("p").admitted


def test_a_new_state_admits_only_its_share_for_one_window(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "6/10", margin=1.0, share=0.5)
    start = clock.now
    assert [limiter.acquire("p").admitted for _ in range(4)] == [True, True, True, False]
    clock.now = start + 10.999
    assert not limiter.acquire("p").admitted
    clock.now = start + 11.0  # the window + margin has passed since the state began: the whole limit
    assert [limiter.acquire("p").admitted for _ in range(7)] == [True] * 6 + [False]
    # An instance that meets the same state later sees it as grown up too.
    assert not limiter_on(store, clock, "6/10", margin=1.0, share=0.5).acquire("p").admitted


@pytest.mark.parametrize(("windows", "share", "admitted"), [("3/60", 0.5, 1), ("1/60", 0.1, 1), ("10/60", 0.25, 2),
                                                            ("10/60", 1.0, 10)])
def test_the_share_rounds_down_but_admits_at_least_one(store: RecordingStore, clock: FakeClock, windows: str,
                                                      share: float, admitted: int) -> None:
    limiter = limiter_on(store, clock, windows, share=share)
    assert sum(limiter.acquire("p").admitted for _ in range(12)) == admitted


def test_a_lost_race_is_decided_again(store: RecordingStore, clock: FakeClock) -> None:
    a = limiter_on(store, clock, "4/60")
    b = limiter_on(store, clock, "4/60")
    other: list[Decision] = []
    store.after_read.append(lambda: other.append(b.acquire("p")))  # b writes between a's read and a's write
    first = a.acquire("p")
    assert first.admitted and first.conflicts >= 1 and other[0].admitted
    assert remaining(first) == [2]  # b's call and a's: nothing lost, nothing doubled
    assert [limiter_on(store, clock, "4/60").acquire("p").admitted for _ in range(3)] == [True, True, False]


def test_out_of_conflict_retries_refuses(store: RecordingStore, clock: FakeClock) -> None:
    a = limiter_on(store, clock, "3/60", retries=0)
    b = limiter_on(store, clock, "3/60")
    assert b.acquire("p").admitted
    store.after_read.append(lambda: b.acquire("p"))
    refused = a.acquire("p")
    assert (refused.admitted, refused.reason, refused.retry_after, refused.conflicts) == \
        (False, Reason.CONTENTION, 1, 1)
    # Only b's two calls are stored: one slot left.
    assert [limiter_on(store, clock, "3/60").acquire("p").admitted for _ in range(2)] == [True, False]


class SlowStore(MemoryStore):
    """The real MemoryStore with requests that take a moment (as a table's do), so that threads really race
    between deciding and writing."""

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        time.sleep(0.001)
        return super().read(key, api, tally)

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        time.sleep(0.001)
        return super().write(key, api, state, etag, tally)


def test_threads_on_separate_limiters_admit_exactly_the_limit(clock: FakeClock) -> None:
    store = SlowStore()
    decisions = acquire_until_refused([limiter_on(store, clock, "25/60", retries=50) for _ in range(8)])
    assert sum(d.admitted for d in decisions) == 25
    assert sum(d.conflicts for d in decisions) > 0  # the threads did race; the ETags kept the count exact
    assert all(d.reason in (Reason.ADMITTED, Reason.RATE_LIMITED) for d in decisions)


def test_threads_sharing_one_limiter_admit_exactly_the_limit(clock: FakeClock) -> None:
    limiter = limiter_on(SlowStore(), clock, "30/60")
    with ThreadPoolExecutor(8) as pool:
        decisions = list(pool.map(lambda _: limiter.acquire("shared"), range(60)))
    assert sum(d.admitted for d in decisions) == 30
    assert all(d.reason is Reason.RATE_LIMITED for d in decisions if not d.admitted)


def test_known_refusal_answers_from_memory_and_takes_no_slot(store: RecordingStore, clock: FakeClock) -> None:
    limiter = limiter_on(store, clock, "2/10", margin=0.5)
    assert limiter.known_refusal("app") is None  # nothing known yet: a call may be admitted
    assert limiter.acquire("app").admitted and limiter.acquire("app").admitted
    refused = limiter.acquire("app")
    before = (store.reads, len(store.writes))
    known = limiter.known_refusal("app")
    assert known is not None and not known.admitted and known.retry_after_ms == refused.retry_after_ms == 10_500
    assert known.storage_round_trips == 0 and (store.reads, len(store.writes)) == before  # no store request
    clock.advance(10.5)
    assert limiter.known_refusal("app") is None  # the slot has freed: memory no longer refuses
    assert limiter.acquire("app").admitted  # and asking took no slot before
