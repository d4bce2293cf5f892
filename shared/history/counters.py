"""Counts of the call path (refusals, Defender's 429s) per minute, API and tenant, kept in memory and flushed to
the history store at most once a minute per instance (in a thread of its own, so no call waits for it; and when
the sweep runs), as additions, so instances never overwrite each other's counts. The page's read adds the counts
this instance has not flushed yet to what it reads (`unflushed`), writing nothing.

A flush costs two storage requests per (minute, API, tenant) that counted anything; an idle tenant costs nothing.
A flush that fails keeps the counts for the next one; counts older than the retention are dropped then (they
would be purged anyway), so memory stays bounded. An instance that stops between two flushes loses at most its
last minute's counts: the history is for reading, never for deciding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from shared.history.store import (
    RETENTION_MINUTES,
    Count,
    HistoryStorageError,
    HistoryStore,
    Row,
    count_key,
    minute_of,
)

logger = logging.getLogger("mde_alert_gateway.history")

#: Seconds between two flushes on the call path.
FLUSH_SECONDS = 60.0


def in_background(flush: Callable[[], object]) -> None:
    """Run a due flush beside the call that found it due: that call waits for no storage request."""
    threading.Thread(target=flush, name="history-flush", daemon=True).start()


class MinuteCounters:
    """Thread-safe; one per process."""

    def __init__(self, store: HistoryStore, *, clock: Callable[[], float] = time.time,
                 flush_seconds: float = FLUSH_SECONDS,
                 run_flush: Callable[[Callable[[], object]], None] = in_background) -> None:
        self.store = store
        self._clock = clock
        self._run_flush = run_flush
        self._flush_seconds = flush_seconds
        self._counts: dict[tuple[int, str], Counter[str]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._last_flush = clock()

    def count(self, api: str, tenant: str, what: Count) -> None:
        """Count one event now; when the last flush is a minute old, flush (beside the caller, by default)."""
        now = self._clock()
        with self._lock:
            self._counts.setdefault((minute_of(now), count_key(api, tenant)), Counter())[what.value] += 1
            due = now - self._last_flush >= self._flush_seconds
            if due:
                self._last_flush = now  # one flush per interval, however many calls find it due
        if due:
            self._run_flush(self.flush)

    def unflushed(self) -> list[Row]:
        """The counts kept here, not in the store yet (a flush under way has taken its own: they show once written)."""
        with self._lock:
            return [Row(minute, key, dict(counts)) for (minute, key), counts in self._counts.items()]

    def flush(self) -> bool:
        """Add every count kept to the store; False when the store failed (the counts are kept for the next flush).
        One flush at a time per process: a second caller meanwhile returns at once."""
        if not self._flush_lock.acquire(blocking=False):
            return True
        try:
            with self._lock:
                taken, self._counts = self._counts, {}
                self._last_flush = self._clock()
            failed: dict[tuple[int, str], Counter[str]] = {}
            for (minute, key), counts in sorted(taken.items()):
                if failed:
                    failed[(minute, key)] = counts
                    continue
                try:
                    self.store.add(minute, key, dict(counts))
                except HistoryStorageError as error:
                    logger.warning("history: counts not flushed (%s); kept for the next flush", error)
                    failed[(minute, key)] = counts
            if failed:
                self._keep(failed)
            return not failed
        finally:
            self._flush_lock.release()

    def _keep(self, failed: dict[tuple[int, str], Counter[str]]) -> None:
        oldest = minute_of(self._clock()) - RETENTION_MINUTES
        with self._lock:
            for (minute, key), counts in failed.items():
                if minute >= oldest:
                    self._counts.setdefault((minute, key), Counter()).update(counts)
