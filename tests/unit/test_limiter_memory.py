"""The real RateLimiter over the real MemoryStore with a hand-driven clock, in milliseconds: the limiter suite
every store passes (tests/support/limiter_contract.py), then what only a memory store can show (a store that
fails on demand, and one whose requests are counted)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.ratelimit import Decision, MemoryStore, RateLimiter, RateLimitStorageError, Reason, Tally
from shared.ratelimit.entity import partition_key
from tests.support.limiter_contract import LimiterContract
from tests.support.scripted import FakeClock, RecordingStore, policy


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
                       sync_clock=False, sleep=clock.sleep, new_state_share=share)


def remaining(decision: Decision) -> list[int]:
    return [w.remaining for w in decision.windows]


def test_a_block_kept_in_memory_reads_nothing_from_the_store(store: RecordingStore, clock: FakeClock) -> None:
    a = limiter_on(store, clock, "5/600")
    b = limiter_on(store, clock, "5/600")  # another instance: its own memory, the same store
    assert a.acquire("p").admitted
    a.block("p", 30)
    assert b.acquire("p").reason is Reason.BLOCKED
    clock.advance(10)
    reads = store.reads
    during = [b.acquire("p"), a.acquire("p")]
    assert all(not d.admitted and d.reason is Reason.BLOCKED and d.retry_after == 20 for d in during)
    assert [d.storage_round_trips for d in during] == [0, 0] and store.reads == reads


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


@pytest.mark.parametrize(("windows", "share", "admitted"), [("3/60", 0.5, 1), ("1/60", 0.1, 1), ("10/60", 0.25, 2),
                                                            ("10/60", 1.0, 10)])
def test_the_share_rounds_down_but_admits_at_least_one(store: RecordingStore, clock: FakeClock, windows: str,
                                                      share: float, admitted: int) -> None:
    limiter = limiter_on(store, clock, windows, share=share)
    assert sum(limiter.acquire("p").admitted for _ in range(12)) == admitted


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


def test_the_backoff_after_a_lost_race_waits_on_the_limiters_clock(store: RecordingStore, clock: FakeClock) -> None:
    a = limiter_on(store, clock, "4/60")
    b = limiter_on(store, clock, "4/60")
    start = clock.now
    store.after_read.append(lambda: b.acquire("p"))  # b writes between a's read and a's write: a lost the race
    first = a.acquire("p")
    assert first.admitted and first.conflicts == 1
    # One backoff (jitter in [0, 10 ms] before the 2nd attempt), taken on the given clock: no real wait.
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.01
    assert clock.now == start + clock.sleeps[0] and first.decided_at == clock.now


class MemoryBackend:
    """The suite's store: one MemoryStore that every instance of a test shares."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.store = RecordingStore()

    def limiter(self, windows: str, *, margin: float = 0.0, share: float = 1.0, retries: int = 10,
                racing: bool = False) -> RateLimiter:
        return limiter_on(self.store, self.clock, windows, margin=margin, share=share, retries=retries)

    def race_next_reads(self, count: int) -> None:
        self.store.rendezvous.arm(count)

    def after_read(self, action: Callable[[], object]) -> None:
        self.store.after_read.append(action)  # the next read is the racing instance's: the test reads nothing else

    def lose_state(self) -> None:
        self.store.forget()

    def backup(self) -> Callable[[], None]:
        key = partition_key("p")
        saved = self.store.read(key, "file_alerts", Tally()).state

        def restore() -> None:
            current = self.store.read(key, "file_alerts", Tally())
            assert self.store.write(key, "file_alerts", saved, current.etag, Tally()) is not None

        return restore


class TestMemoryStore(LimiterContract):
    @pytest.fixture
    def backend(self, clock: FakeClock) -> MemoryBackend:
        return MemoryBackend(clock)
