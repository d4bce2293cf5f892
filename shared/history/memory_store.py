"""The history in process memory: the same contract as the table, for the in-process tests and the bench.

Not deployed (.funcignore): the app keeps its history in Table Storage alone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from shared.history.store import HistoryStorageError, Row


class MemoryHistoryStore:
    """The same contract in process memory, for the in-process tests (not deployed). `available = False` fails it."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, str], dict[str, int]] = {}
        self._lock = threading.Lock()
        self.available = True
        #: Requests made, as a table would count transactions.
        self.requests = 0

    def _check(self) -> None:
        self.requests += 1
        if not self.available:
            raise HistoryStorageError("history store unavailable")

    def add(self, minute: int, key: str, counts: Mapping[str, int]) -> None:
        with self._lock:
            self._check()
            row = self._rows.setdefault((minute, key), {})
            for name, value in counts.items():
                row[name] = row.get(name, 0) + value

    def peak(self, minute: int, key: str, values: Mapping[str, int]) -> None:
        with self._lock:
            self._check()
            row = self._rows.setdefault((minute, key), {})
            for name, value in values.items():
                row[name] = max(row.get(name, value), value)

    def since(self, minute: int) -> Sequence[Row]:
        with self._lock:
            self._check()
            return [Row(m, k, dict(v)) for (m, k), v in sorted(self._rows.items()) if m >= minute]

    def purge_before(self, minute: int, limit: int) -> int:
        with self._lock:
            self._check()
            old = [key for key in sorted(self._rows) if key[0] < minute][:limit]
            for key in old:
                del self._rows[key]
            return len(old)
