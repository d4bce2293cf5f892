"""Result bodies in process memory: the ResultsStore contract of BlobResultsStore, for in-process tests (not
deployed: .funcignore keeps it out)."""

from __future__ import annotations

import threading

from shared.asynchronous.results import ResultsStorageError, expiry_of, result_name


class MemoryResultsStore:
    """Result bodies in a dict (in-process tests); `available = False` makes every call fail as storage that is down."""

    name = "memory"

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.available = True
        self._lock = threading.Lock()

    def put(self, operation_id: str, body: bytes, expires_at: float) -> str:
        self._check()
        name = result_name(operation_id, expires_at)
        with self._lock:
            self.blobs[name] = bytes(body)
        return name

    def get(self, name: str) -> bytes:
        self._check()
        with self._lock:
            found = self.blobs.get(name)
        if found is None:
            raise ResultsStorageError(f"results memory: {name} is missing")
        return found

    def delete(self, name: str) -> bool:
        self._check()
        with self._lock:
            return self.blobs.pop(name, None) is not None

    def purge_expired(self, now: float, limit: int = 100) -> int:
        self._check()
        with self._lock:
            expired = [name for name in sorted(self.blobs) if (expiry_of(name) or now) < now][:limit]
            for name in expired:
                del self.blobs[name]
        return len(expired)

    def _check(self) -> None:
        if not self.available:
            raise ResultsStorageError("results memory: unavailable")
