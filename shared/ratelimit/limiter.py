"""The rate limiter shared by every instance: one sliding log per (principal, API) in a table.

Each call decides with the sliding log on the state this process last read or wrote and, if
admitted, writes the new log back only if nobody changed it since (ETag If-Match, or
create-if-absent for the first call): one store round trip when nothing else wrote meanwhile.
A lost race (or no state known yet) reads, decides again, a bounded number of times, then refuses.

Refusals are also remembered in the process: a full window only fills further and a 429 block
only grows longer (whoever writes), so a state that refuses now still refuses until the time
it names. Until then the same principal is refused from memory without a table request.

What the process remembers also guards against lost state: a stored log lacking admissions this
instance saw (the entity or table was deleted, or restored from an older copy) gets them back
before anything is decided, and the merged log is written back. A log re-created from nothing
admits only a share of each window until that window has passed once (see sliding_log).

Times come from a clock checked against the storage service's `Date` (see clock), so an
instance whose clock runs ahead of the others does not over-admit.

Within a process, one thread per principal goes to the table at a time (the others wait, up to
a bound, and usually find the answer in memory), so races are mostly between instances.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from shared.ratelimit.clock import ClockSync
from shared.ratelimit.decision import Decision, Reason
from shared.ratelimit.entity import partition_key
from shared.ratelimit.policy import DEFAULT_NEW_STATE_SHARE, RatePolicy
from shared.ratelimit.sliding_log import LogState, Verdict, evaluate, merge, missing_from, trim, window_states
from shared.ratelimit.store import RateLimitStorageError, Snapshot, StateStore, Tally

logger = logging.getLogger("mde_alert_gateway.ratelimit")
_T = TypeVar("_T")

#: Backoff after an ETag conflict: uniform in [0, min(cap, base * 2**attempt)] seconds.
_BACKOFF_BASE = 0.005
_BACKOFF_CAP = 0.05
#: Retry-After for a call refused because the table was too contended to record it.
_CONTENTION_RETRY_AFTER = 1
#: Longest wait (s) for another thread of this process that is asking the table for the same principal.
_QUEUE_TIMEOUT = 1.0
_STRIPES = 64
#: The share of the margin a slot may age between its admission and its request leaving (see RateLimiter.stale).
STALE_SHARE = 0.5


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


class RateLimiter:
    """Admits calls to one upstream API within its policy, shared through `store`.

    Thread-safe; create one per API per process and keep it (it holds the in-process memory).
    `clock` gives epoch seconds; with `sync_clock` (the default) it is corrected towards the
    store's clock (the `Date` of its answers), which only a hand-driven test clock should turn off.
    `sleep` waits on that clock (the backoff after a lost race): a hand-driven clock brings its own.
    `new_state_share` is the share of each window a log re-created from nothing admits until that
    window has passed.
    """

    def __init__(self, store: StateStore, policy: RatePolicy, *, margin_seconds: float,
                 max_conflict_retries: int, clock: Callable[[], float] = time.time, sync_clock: bool = True,
                 sleep: Callable[[float], None] = time.sleep, new_state_share: float = DEFAULT_NEW_STATE_SHARE,
                 memory_size: int = 1024) -> None:
        if margin_seconds < 0 or max_conflict_retries < 0 or memory_size < 1:
            raise ValueError("margin_seconds and max_conflict_retries must be >= 0, memory_size >= 1")
        if not 0 < new_state_share <= 1:
            raise ValueError("new_state_share must be in (0, 1]")
        self.policy = policy
        self.clock = ClockSync(clock, enabled=sync_clock, sleep=sleep)
        self._store = store
        self._margin_ms = to_ms(margin_seconds)
        self._max_conflict_retries = max_conflict_retries
        self._new_state_share = new_state_share
        #: Per key, the state last read or written, with its ETag (None: not known to be what the store holds).
        self._memory: OrderedDict[str, Snapshot] = OrderedDict()
        self._memory_size = memory_size
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        self._random = random.Random()  # noqa: S311 - jitter only, nothing secret

    @property
    def api(self) -> str:
        return self.policy.api

    def acquire(self, principal: str) -> Decision:
        """Admit or refuse one call for `principal` (the app + tenant whose Defender quota it uses).

        Raises RateLimitStorageError when the store fails; the call must then be refused, never admitted blindly.
        """
        key = partition_key(principal)
        tally = Tally()
        refused = self._refused_from_memory(key, tally)
        if refused is not None:
            return refused
        # One thread per principal (per lock stripe) at a time goes to the table; the others
        # wait for it, up to a bound so a slow table cannot queue them up, then look again.
        stripe = self._stripes[hash(key) % len(self._stripes)]
        queued = stripe.acquire(timeout=_QUEUE_TIMEOUT)
        try:
            if queued:
                refused = self._refused_from_memory(key, tally)
                if refused is not None:
                    return refused
            return self._acquire_from_table(key, tally)
        finally:
            if queued:
                stripe.release()

    def stale(self, decision: Decision) -> bool:
        """Whether the slot `decision` admitted is too old to send on now.

        The log holds the admission at `decided_at`; the margin added to every window covers the time from
        there until Defender counts the call, and the clocks' disagreement. A thread that stalls after the
        admission (a GC pause, CPU starvation, a slow write) can eat that margin, so a slot whose request
        has not left within STALE_SHARE of the margin is not used: never send on it. With no margin there
        is nothing to protect and no slot is stale.
        """
        if not decision.admitted or not self._margin_ms:
            return False
        return to_ms(self.clock.now()) - to_ms(decision.decided_at) > self._margin_ms * STALE_SHARE

    def known_refusal(self, principal: str) -> Decision | None:
        """The refusal a call for `principal` would get now by what this process remembers (no store request);
        None when it may be admitted. For a caller choosing between waiting here and coming back later."""
        return self._refused_from_memory(partition_key(principal), Tally())

    def peek(self, principal: str) -> Decision:
        """The decision a call for `principal` would get now, without taking a slot (one store read).

        For reports (how much budget is left): its windows describe the state as the next call finds it,
        before that call (an admitted call's own decision describes the state after it). The state read is
        remembered like any other read. Raises RateLimitStorageError when the store fails.
        """
        return self.inspect(principal)[0]

    def inspect(self, principal: str) -> tuple[Decision, LogState]:
        """`peek`'s decision and the log it read (the admissions of the longest window: the page's history of
        admitted calls, read rather than copied). One store read."""
        key = partition_key(principal)
        tally = Tally()
        snapshot = self._read(key, tally)
        now = self.clock.now()
        now_ms = to_ms(now)
        state, _ = self._known(key, snapshot, now_ms)
        self._remember(key, state, snapshot.etag if snapshot.state == state else None)
        verdict = self._evaluate(state, now_ms)
        before = window_states(self.policy, self._margin_ms, state, now_ms, new_state_share=self._new_state_share)
        return self._decision(replace(verdict, windows=before), now, tally), state

    def block(self, principal: str, seconds: float, *, kind: str = "") -> None:
        """Refuse every call for `principal` for the next `seconds`, on every instance.

        For Defender's 429 + Retry-After. Recorded in this process first, then in the table
        (keeping the later end if one is already there). Raises RateLimitStorageError if the
        table cannot be updated; this process still honours the block.
        """
        self.block_until(principal, self.clock.now() + seconds, kind=kind)

    def block_until(self, principal: str, until: float, *, kind: str = "") -> None:
        """Refuse every call for `principal` until `until` (epoch seconds on this limiter's clock), on every
        instance; `kind` names what the block is for (refusals meanwhile carry it: Decision.blocked_kind).

        For an upstream that names the end of its block (Graph's hunting CPU quota). As `block` otherwise.
        """
        key = partition_key(principal)
        now_ms = to_ms(self.clock.now())
        until_ms = to_ms(until)
        try:
            self._store_block(key, until_ms, kind)
        finally:  # honoured here even if the store could not record it
            known = self._recall(key)
            if known is None or known.blocked_until_ms < until_ms:
                self._remember(key, (known or LogState(since_ms=now_ms)).with_block(until_ms, kind), None)

    def _store_block(self, key: str, until_ms: int, kind: str) -> None:
        tally = Tally()
        for attempt in range(self._max_conflict_retries + 1):
            if attempt:
                self._backoff(attempt)
            snapshot = self._read(key, tally)
            state, restored = self._known(key, snapshot, to_ms(self.clock.now()))
            if state.blocked_until_ms >= until_ms and not restored:
                self._remember(key, state, snapshot.etag)
                return
            blocked = state.with_block(until_ms, kind)
            etag = self._write(key, blocked, snapshot.etag, tally)
            if etag is not None:
                self._remember(key, blocked, etag)
                return
            tally.conflicts += 1
        raise RateLimitStorageError(
            f"rate-limit store {self._store.name}: block not recorded after {tally.conflicts} conflicts")

    def _read(self, key: str, tally: Tally) -> Snapshot:
        return self._timed(tally, lambda: self._store.read(key, self.api, tally))

    def _write(self, key: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        return self._timed(tally, lambda: self._store.write(key, self.api, state, etag, tally))

    def _timed(self, tally: Tally, request: Callable[[], _T]) -> _T:
        """Run one store request and check the clock against the `Date` of its answers."""
        first, sent = len(tally.service_dates), self.clock.local()
        try:
            return request()
        finally:
            received = self.clock.local()
            for date in tally.service_dates[first:]:
                self.clock.observe(date, sent=sent, received=received)

    def _evaluate(self, state: LogState, now_ms: int) -> Verdict:
        return evaluate(self.policy, self._margin_ms, state, now_ms, new_state_share=self._new_state_share)

    def _refused_from_memory(self, key: str, tally: Tally) -> Decision | None:
        remembered = self._recall(key)
        if remembered is None:
            return None
        now = self.clock.now()
        verdict = self._evaluate(remembered, to_ms(now))
        return None if verdict.admitted else self._decision(verdict, now, tally)

    def _known(self, key: str, snapshot: Snapshot, now_ms: int) -> tuple[LogState, int]:
        """The stored state with what this process remembers merged in, and how much that restored.

        A missing entity starts a young log (`since_ms` = now): nobody may know the calls before it.
        """
        stored = snapshot.state if snapshot.etag is not None else LogState(since_ms=now_ms)
        remembered = self._recall(key)
        if remembered is None:
            return stored, 0
        stored = trim(self.policy, self._margin_ms, stored, now_ms)
        merged = trim(self.policy, self._margin_ms, merge(stored, remembered), now_ms)
        restored = missing_from(stored, merged) + (merged.blocked_until_ms > max(stored.blocked_until_ms, now_ms))
        if restored:
            logger.warning(
                "Rate-limit state of %s for %s was %s: restored %d admission(s) and block(s) this instance "
                "remembers, so the lost calls still count.", self.api, key,
                "missing" if snapshot.etag is None else "older than this instance remembers", restored)
        return merged, restored

    def _acquire_from_table(self, key: str, tally: Tally) -> Decision:
        # What this process last read or wrote, with its ETag: decide on it and write without reading first.
        known = self._recall_snapshot(key)
        snapshot = known if known is not None and known.etag is not None else None
        lost_a_race = False
        for attempt in range(self._max_conflict_retries + 1):
            if lost_a_race:
                self._backoff(attempt)
            if snapshot is None:
                snapshot = self._read(key, tally)
                now = self.clock.now()
                state, restored = self._known(key, snapshot, to_ms(now))
                read_now = True
            else:
                now = self.clock.now()
                state, restored, read_now = snapshot.state, 0, False
            verdict = self._evaluate(state, to_ms(now))
            if not verdict.admitted:
                etag = snapshot.etag
                if restored:  # put back what was lost even though this call is refused; a lost race is fine
                    etag = self._write(key, state, snapshot.etag, tally)
                self._remember(key, state, etag)
                return self._decision(verdict, now, tally)
            etag = self._write(key, verdict.state, snapshot.etag, tally)
            if etag is not None:
                self._remember(key, verdict.state, etag)
                return self._decision(verdict, now, tally)
            tally.conflicts += 1
            # Another writer got there first (or the state went away): read and decide again. Back off only
            # after losing on fresh data; a remembered ETag that went stale is no contention.
            lost_a_race, snapshot = read_now, None

        refused = Verdict(admitted=False, reason=Reason.CONTENTION, retry_after=_CONTENTION_RETRY_AFTER,
                          windows=window_states(self.policy, self._margin_ms, state, to_ms(now),
                                                new_state_share=self._new_state_share),
                          state=state, retry_after_ms=_CONTENTION_RETRY_AFTER * 1000)
        return self._decision(refused, now, tally)

    def _decision(self, verdict: Verdict, now: float, tally: Tally) -> Decision:
        return Decision(api=self.api, admitted=verdict.admitted, reason=verdict.reason,
                        retry_after=verdict.retry_after, windows=verdict.windows, decided_at=now,
                        storage_round_trips=tally.round_trips, conflicts=tally.conflicts,
                        retry_after_ms=verdict.retry_after_ms,
                        blocked_kind=verdict.state.blocked_kind if verdict.reason is Reason.BLOCKED else "")

    def _recall_snapshot(self, key: str) -> Snapshot | None:
        with self._lock:
            return self._memory.get(key)

    def _recall(self, key: str) -> LogState | None:
        known = self._recall_snapshot(key)
        return None if known is None else known.state

    def _remember(self, key: str, state: LogState, etag: str | None) -> None:
        """Keep the newest known state (and the ETag the store gave it); a block learnt here is kept even if
        the store lacks it (the next write carries it there)."""
        with self._lock:
            known = self._memory.pop(key, None)
            if known is not None and known.state.blocked_until_ms > state.blocked_until_ms:
                state = state.with_block(known.state.blocked_until_ms, known.state.blocked_kind)
            self._memory[key] = Snapshot(state, etag)
            while len(self._memory) > self._memory_size:
                self._memory.popitem(last=False)

    def _backoff(self, attempt: int) -> None:
        self.clock.sleep(self._random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)))
