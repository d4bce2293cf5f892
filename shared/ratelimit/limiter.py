"""The rate limiter shared by every instance: one sliding log per (principal, API) in a table.

Each call reads the entity, decides with the sliding log and, if admitted, writes the new log
back only if nobody changed it since (ETag If-Match, or create-if-absent for the first call).
A lost race re-reads and decides again, a bounded number of times, then refuses.

Refusals are also remembered in the process: a full window only fills further and a 429 block
only grows longer (whoever writes), so a state that refuses now still refuses until the time
it names. Until then the same principal is refused from memory without a table request.

Within a process, one thread per principal goes to the table at a time (the others wait, up to
a bound, and usually find the answer in memory), so races are mostly between instances.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from azure.data.tables import TableClient

from shared.ratelimit.decision import Decision, Reason
from shared.ratelimit.entity import partition_key
from shared.ratelimit.policy import RatePolicy
from shared.ratelimit.sliding_log import LogState, Verdict, evaluate, window_states
from shared.ratelimit.storage import RateLimitStorageError, StateTable, Tally

#: Backoff after an ETag conflict: uniform in [0, min(cap, base * 2**attempt)] seconds.
_BACKOFF_BASE = 0.005
_BACKOFF_CAP = 0.05
#: Retry-After for a call refused because the table was too contended to record it.
_CONTENTION_RETRY_AFTER = 1
#: Longest wait (s) for another thread of this process that is asking the table for the same principal.
_QUEUE_TIMEOUT = 1.0
_STRIPES = 64


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


class RateLimiter:
    """Admits calls to one upstream API within its policy, shared through `table_client`.

    Thread-safe; create one per API per process and keep it (it holds the in-process memory).
    """

    def __init__(self, table_client: TableClient, policy: RatePolicy, *, margin_seconds: float,
                 max_conflict_retries: int, clock: Callable[[], float] = time.time,
                 memory_size: int = 1024) -> None:
        if margin_seconds < 0 or max_conflict_retries < 0 or memory_size < 1:
            raise ValueError("margin_seconds and max_conflict_retries must be >= 0, memory_size >= 1")
        self.policy = policy
        self._table = StateTable(table_client)
        self._margin_ms = to_ms(margin_seconds)
        self._max_conflict_retries = max_conflict_retries
        self._clock = clock
        self._memory: OrderedDict[str, LogState] = OrderedDict()
        self._memory_size = memory_size
        self._lock = threading.Lock()
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        self._random = random.Random()  # noqa: S311 - jitter only, nothing secret

    @property
    def api(self) -> str:
        return self.policy.api

    def acquire(self, principal: str) -> Decision:
        """Admit or refuse one call for `principal` (the app + tenant whose Defender quota it uses).

        Raises RateLimitStorageError when the table fails; the call must then be refused (503).
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

    def block(self, principal: str, until: float) -> None:
        """Refuse every call for `principal` until `until` (epoch seconds), on every instance.

        For Defender's 429 + Retry-After. Recorded in this process first, then in the table
        (keeping the later end if one is already there). Raises RateLimitStorageError if the
        table cannot be updated; this process still honours the block.
        """
        key = partition_key(principal)
        until_ms = to_ms(until)
        self._remember(key, (self._recall(key) or LogState()).with_block(until_ms))
        tally = Tally()
        for attempt in range(self._max_conflict_retries + 1):
            if attempt:
                self._backoff(attempt)
            snapshot = self._table.read(key, self.api, tally)
            if snapshot.state.blocked_until_ms >= until_ms:
                self._remember(key, snapshot.state)
                return
            blocked = snapshot.state.with_block(until_ms)
            if self._table.write(key, self.api, blocked, snapshot.etag, tally):
                self._remember(key, blocked)
                return
            tally.conflicts += 1
        raise RateLimitStorageError(
            f"rate-limit table {self._table.table_name}: block not recorded after {tally.conflicts} conflicts")

    def _refused_from_memory(self, key: str, tally: Tally) -> Decision | None:
        remembered = self._recall(key)
        if remembered is None:
            return None
        now = self._clock()
        verdict = evaluate(self.policy, self._margin_ms, remembered, to_ms(now))
        return None if verdict.admitted else self._decision(verdict, now, tally)

    def _acquire_from_table(self, key: str, tally: Tally) -> Decision:
        for attempt in range(self._max_conflict_retries + 1):
            if attempt:
                self._backoff(attempt)
            snapshot = self._table.read(key, self.api, tally)
            now = self._clock()
            verdict = evaluate(self.policy, self._margin_ms, snapshot.state, to_ms(now))
            if not verdict.admitted:
                self._remember(key, snapshot.state)
                return self._decision(verdict, now, tally)
            if self._table.write(key, self.api, verdict.state, snapshot.etag, tally):
                self._remember(key, verdict.state)
                return self._decision(verdict, now, tally)
            tally.conflicts += 1

        refused = Verdict(admitted=False, reason=Reason.CONTENTION, retry_after=_CONTENTION_RETRY_AFTER,
                          windows=window_states(self.policy, self._margin_ms, snapshot.state.admissions_ms,
                                                to_ms(now)),
                          state=snapshot.state)
        return self._decision(refused, now, tally)

    def _decision(self, verdict: Verdict, now: float, tally: Tally) -> Decision:
        return Decision(api=self.api, admitted=verdict.admitted, reason=verdict.reason,
                        retry_after=verdict.retry_after, windows=verdict.windows, decided_at=now,
                        storage_round_trips=tally.round_trips, conflicts=tally.conflicts)

    def _recall(self, key: str) -> LogState | None:
        with self._lock:
            return self._memory.get(key)

    def _remember(self, key: str, state: LogState) -> None:
        """Keep the newest known state; a block learnt here is kept even if the table lacks it."""
        with self._lock:
            known = self._memory.pop(key, None)
            if known is not None and known.blocked_until_ms > state.blocked_until_ms:
                state = state.with_block(known.blocked_until_ms)
            self._memory[key] = state
            while len(self._memory) > self._memory_size:
                self._memory.popitem(last=False)

    def _backoff(self, attempt: int) -> None:
        time.sleep(self._random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt)))
