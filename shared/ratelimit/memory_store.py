"""The state store in process memory: the same contract as the table, for the in-process tests.

Not deployed (.funcignore): the app keeps its rate limits in Table Storage alone.
"""

from __future__ import annotations

import itertools
import threading

from shared.ratelimit.sliding_log import LogState
from shared.ratelimit.store import RateLimitStorageError, Snapshot, Tally


class MemoryStore:
    """Thread-safe (key, API) -> state with ETags. `available = False` makes every request fail, like a down table."""

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._states: dict[tuple[str, str], tuple[LogState, str]] = {}
        self._etags = itertools.count(1)
        self._lock = threading.Lock()
        self.available = True

    @property
    def name(self) -> str:
        return self._name

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        tally.round_trips += 1
        with self._lock:
            self._check()
            stored = self._states.get((key, api))
        return Snapshot(LogState(), None) if stored is None else Snapshot(*stored)

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        tally.round_trips += 1
        with self._lock:
            self._check()
            stored = self._states.get((key, api))
            if (stored is None) != (etag is None) or (stored is not None and stored[1] != etag):
                return None
            new_etag = str(next(self._etags))
            self._states[(key, api)] = (state, new_etag)
            return new_etag

    def _check(self) -> None:
        if not self.available:
            raise RateLimitStorageError(f"rate-limit store {self._name} is unavailable")
