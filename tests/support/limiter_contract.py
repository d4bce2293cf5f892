"""One rate-limiter suite for every state store: exact counts, margins, blocks, memory, lost and restored state, lost
races and threads. tests/unit/test_limiter_memory.py runs it over the MemoryStore, and
tests/integration/ratelimit/test_limiter.py over the TableStore on Azurite; each gives a `backend` fixture and
keeps only what is its store's own (round trips, failure injection).

Every instance a test makes has its own memory and shares the store (the table: its own client on the test's
table), like the gateway's instances; the clock is hand-driven and not synchronised with the store's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import pytest

from shared.ratelimit import Decision, RateLimiter, Reason
from tests.support.scripted import FakeClock, acquire_until_refused


class LimiterBackend(Protocol):
    """A store under test, and how a test makes instances on it and breaks it."""

    clock: FakeClock

    def limiter(self, windows: str, *, margin: float = 0.0, share: float = 1.0, retries: int = 10,
                racing: bool = False) -> RateLimiter:
        """A new instance on the shared store; `racing`: the one whose reads run the `after_read` actions."""
        ...

    def after_read(self, action: Callable[[], object]) -> None:
        """Run `action` right after the racing instance's next read returns: another instance's write slips in."""
        ...

    def race_next_reads(self, count: int) -> None:
        """The next `count` reads of the store return only once all of them have read (up to a deadline), so that
        many instances decide on one state and all but one lose the race (a table's latency does this by itself)."""
        ...

    def lose_state(self) -> None:
        """The stored state is gone (the entity, the table, or the emulator's memory)."""
        ...

    def backup(self) -> Callable[[], None]:
        """Restores principal "p"'s stored file-alerts state as it is now, over whatever is stored then."""
        ...


def remaining(decision: Decision) -> list[int]:
    return [w.remaining for w in decision.windows]


class LimiterContract:
    """The suite; a subclass named Test... provides the `backend` fixture."""

    def test_exact_limit_and_boundary_with_margin(self, backend: LimiterBackend) -> None:
        clock = backend.clock
        limiter = backend.limiter("3/10", margin=2.0)
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
        another_instance = backend.limiter("3/10", margin=2.0)  # no memory: decides from the store alone
        late = another_instance.acquire("tenant-a")
        assert (late.admitted, late.retry_after, late.storage_round_trips) == (False, 1, 1)

        clock.now = start + 12.0  # the oldest call leaves window + margin exactly now
        again = limiter.acquire("tenant-a")
        assert again.admitted and remaining(again) == [0]
        assert not another_instance.acquire("tenant-a").admitted
        # Other principals have budgets of their own.
        assert backend.limiter("3/10", margin=2.0).acquire("tenant-b").admitted

    def test_hour_window_binds_before_minute_window(self, backend: LimiterBackend) -> None:
        clock = backend.clock
        limiter = backend.limiter("2/1,3/10")  # scaled down: 2 per "minute" (1 s), 3 per "hour" (10 s)
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

    def test_retry_after_rounds_up_to_when_the_first_slot_frees(self, backend: LimiterBackend) -> None:
        clock = backend.clock
        limiter = backend.limiter("2/5,4/30", margin=0.5)
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

    def test_full_window_refusals_come_from_memory(self, backend: LimiterBackend) -> None:
        limiter = backend.limiter("2/60")
        assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]
        refusals = [limiter.acquire("p") for _ in range(5)]
        assert all(not d.admitted and d.storage_round_trips == 0 and d.retry_after == 60 for d in refusals)
        backend.clock.advance(60)
        assert limiter.acquire("p").storage_round_trips == 1  # an If-Match update on the remembered ETag

    def test_a_block_is_shared_through_the_store_and_kept_in_memory(self, backend: LimiterBackend) -> None:
        clock = backend.clock
        a = backend.limiter("5/600")
        b = backend.limiter("5/600")  # another instance: its own memory, the same store
        assert a.acquire("p").admitted
        a.block("p", 30)

        first = b.acquire("p")
        assert (first.admitted, first.reason, first.retry_after, first.storage_round_trips) == \
            (False, Reason.BLOCKED, 30, 1)
        clock.advance(10)
        during = [b.acquire("p"), a.acquire("p")]
        assert all(not d.admitted and d.reason is Reason.BLOCKED and d.retry_after == 20 for d in during)
        assert [d.storage_round_trips for d in during] == [0, 0]

        # The later end wins, whoever writes last.
        b.block("p", 60)
        a.block("p", 5)
        third = backend.limiter("5/600").acquire("p")
        assert (third.reason, third.retry_after) == (Reason.BLOCKED, 60)

        clock.advance(59.999)
        assert a.acquire("p").reason is Reason.BLOCKED
        clock.advance(0.001)
        assert a.acquire("p").admitted and b.acquire("p").admitted
        # The block kept the log: 3 of 5 used, so 2 more, then refused.
        assert [a.acquire("p").admitted for _ in range(3)] == [True, True, False]

    def test_a_block_until_a_time_carries_its_kind_to_every_instance(self, backend: LimiterBackend) -> None:
        """Graph's hunting CPU 429 names when the block ends and what it is for; every instance refuses with both."""
        clock = backend.clock
        a, b = backend.limiter("5/600"), backend.limiter("5/600")
        assert a.acquire("p").admitted
        a.block_until("p", clock.now + 300, kind="cpu")
        held = b.acquire("p")
        assert (held.reason, held.blocked_kind, held.retry_after, held.storage_round_trips) == \
            (Reason.BLOCKED, "cpu", 300, 1)
        assert b.acquire("p").blocked_kind == "cpu"  # from memory now
        b.block("p", 10)  # a shorter unnamed block changes neither the end nor the kind
        assert backend.limiter("5/600").acquire("p").blocked_kind == "cpu"
        a.block("p", 600)  # a later one wins, with its own (no) kind
        later = backend.limiter("5/600").acquire("p")
        assert (later.blocked_kind, later.retry_after) == ("", 600)
        clock.advance(600)
        admitted = b.acquire("p")
        assert admitted.admitted and admitted.blocked_kind == ""

    def test_a_block_before_any_call_and_a_fractional_wait(self, backend: LimiterBackend) -> None:
        backend.limiter("5/60").block("fresh", 2.5)
        refused = backend.limiter("5/60").acquire("fresh")
        assert (refused.admitted, refused.reason, refused.retry_after) == (False, Reason.BLOCKED, 3)  # rounded up
        backend.clock.advance(2.5)
        assert backend.limiter("5/60").acquire("fresh").admitted

    def test_a_lost_block_is_restored_and_never_shortened(self, backend: LimiterBackend) -> None:
        a = backend.limiter("5/60")
        a.block("p", 60)
        backend.lose_state()  # the stored block is lost; this instance still remembers it
        a.block("p", 5)  # a shorter 429 meanwhile must not replace the longer block in the store
        held = backend.limiter("5/60").acquire("p")
        assert (held.reason, held.retry_after) == (Reason.BLOCKED, 60)

    def test_lost_state_is_restored_from_memory(self, backend: LimiterBackend,
                                                caplog: pytest.LogCaptureFixture) -> None:
        limiter = backend.limiter("4/60")
        assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, True]
        backend.lose_state()
        backend.clock.advance(1)
        with caplog.at_level(logging.WARNING, "mde_alert_gateway.ratelimit"):
            decisions = [limiter.acquire("p") for _ in range(3)]
        assert [d.admitted for d in decisions] == [True, False, False]  # 3 remembered + 1 = the limit
        assert "was missing: restored 3 admission(s)" in caplog.text
        # The restored log is back in the store: an instance with no memory counts all four.
        assert not backend.limiter("4/60").acquire("p").admitted

    def test_a_state_restored_from_an_older_copy_is_merged(self, backend: LimiterBackend) -> None:
        limiter = backend.limiter("5/60")
        limiter.acquire("p")
        restore = backend.backup()  # a backup from after the first call
        for _ in range(3):
            backend.clock.advance(0.1)
            limiter.acquire("p")
        restore()
        backend.clock.advance(0.1)
        assert [limiter.acquire("p").admitted for _ in range(2)] == [True, False]
        # The merge (this instance's 4 and the 5th) is what is stored now.
        assert not backend.limiter("5/60").acquire("p").admitted

    def test_a_refused_call_still_writes_back_what_it_restored(self, backend: LimiterBackend) -> None:
        clock = backend.clock
        limiter = backend.limiter("4/60", share=0.5)
        start = clock.now
        assert [limiter.acquire("p").admitted for _ in range(3)] == [True, True, False]  # a new state: 2 of 4
        clock.now = start + 61
        assert [limiter.acquire("p").admitted for _ in range(2)] == [True, True]  # grown up: room for 4
        backend.lose_state()
        clock.advance(1)
        # This instance's memory has room (2 of 4), but the stored state was lost: it starts anew, so only a
        # share counts as free, and the 2 remembered calls fill it. The merge is written back regardless ...
        refused = limiter.acquire("p")
        assert (refused.admitted, refused.reason) == (False, Reason.RATE_LIMITED)
        # ... so an instance that remembers nothing still counts them.
        assert not backend.limiter("4/60", share=0.5).acquire("p").admitted

    def test_a_new_state_admits_only_its_share_for_one_window(self, backend: LimiterBackend) -> None:
        clock = backend.clock
        limiter = backend.limiter("6/10", margin=1.0, share=0.5)
        start = clock.now
        assert [limiter.acquire("p").admitted for _ in range(4)] == [True, True, True, False]
        clock.now = start + 10.999
        assert not limiter.acquire("p").admitted
        clock.now = start + 11.0  # the window + margin has passed since the state began: the whole limit
        assert [limiter.acquire("p").admitted for _ in range(7)] == [True] * 6 + [False]
        # An instance that meets the same state later sees it as grown up too.
        assert not backend.limiter("6/10", margin=1.0, share=0.5).acquire("p").admitted

    def test_a_lost_race_is_decided_again(self, backend: LimiterBackend) -> None:
        a = backend.limiter("4/60", racing=True)
        b = backend.limiter("4/60")
        other: list[Decision] = []
        backend.after_read(lambda: other.append(b.acquire("p")))  # b writes between a's read and a's write
        first = a.acquire("p")
        assert first.admitted and first.conflicts >= 1 and other[0].admitted
        assert remaining(first) == [2]  # b's call and a's: nothing lost, nothing doubled
        assert [backend.limiter("4/60").acquire("p").admitted for _ in range(3)] == [True, True, False]

    def test_out_of_conflict_retries_refuses(self, backend: LimiterBackend) -> None:
        a = backend.limiter("3/60", retries=0, racing=True)
        b = backend.limiter("3/60")
        assert b.acquire("p").admitted
        backend.after_read(lambda: b.acquire("p"))
        refused = a.acquire("p")
        assert (refused.admitted, refused.reason, refused.retry_after, refused.conflicts) == \
            (False, Reason.CONTENTION, 1, 1)
        # Only b's two calls are stored: one slot left.
        assert [backend.limiter("3/60").acquire("p").admitted for _ in range(2)] == [True, False]

    def test_threads_on_separate_instances_admit_exactly_the_limit(self, backend: LimiterBackend) -> None:
        backend.race_next_reads(2)
        decisions = acquire_until_refused([backend.limiter("25/60", retries=50) for _ in range(8)])
        assert sum(d.admitted for d in decisions) == 25
        assert sum(d.conflicts for d in decisions) > 0  # the threads did race; the ETags kept the count exact
        assert all(d.reason in (Reason.ADMITTED, Reason.RATE_LIMITED) for d in decisions)

    def test_threads_sharing_one_limiter_admit_exactly_the_limit(self, backend: LimiterBackend) -> None:
        limiter = backend.limiter("30/60")
        with ThreadPoolExecutor(8) as pool:
            decisions = list(pool.map(lambda _: limiter.acquire("shared"), range(60)))
        assert sum(d.admitted for d in decisions) == 30
        assert all(d.reason is Reason.RATE_LIMITED for d in decisions if not d.admitted)
