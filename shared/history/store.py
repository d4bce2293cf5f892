"""The history's rows: one per (minute, key), with a few whole-number values, and where they are kept.

A minute is whole minutes since the epoch (UTC). A key is `count~<api>~<tenant id>` (the call path's counts, added
to) or `queue~<queue label>` (the sweep's readings: the highest of the minute, so a backlog that comes and drains
between two readings of one minute still shows). Rows older than RETENTION_MINUTES are purged by the
sweep, so the store holds at most RETENTION_MINUTES x (APIs x tenants + queues) rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

#: How far back the page draws, and how long rows are kept (the hour and a margin for late flushes).
WINDOW_MINUTES = 60
RETENTION_MINUTES = 90


class Count(StrEnum):
    """What the call path counts per API and tenant."""

    #: A call the gateway's shared budget refused (nothing sent): a full window, Defender's block, contention.
    REFUSED = "refused"
    #: Defender answered 429.
    THROTTLED = "throttled"


class Reading(StrEnum):
    """What the sweep reads per queue once a minute."""

    DEPTH = "depth"
    POISON_DEPTH = "poisonDepth"
    PENDING = "pending"
    #: Seconds; absent when nothing was pending.
    OLDEST_AGE = "oldestAgeSeconds"


class HistoryStorageError(RuntimeError):
    """The history's table failed; the page shows no history, the calls go on."""


def minute_of(seconds: float) -> int:
    return int(seconds // 60)


def count_key(api: str, tenant: str) -> str:
    return f"count~{api}~{tenant}"


def queue_key(label: str) -> str:
    return f"queue~{label}"


@dataclass(frozen=True)
class Row:
    minute: int
    key: str
    values: Mapping[str, int]


class HistoryStore(Protocol):
    """Rows by minute; every failure raises HistoryStorageError."""

    def add(self, minute: int, key: str, counts: Mapping[str, int]) -> None:
        """Add `counts` to the row's (created when absent), without losing another writer's additions."""
        ...

    def peak(self, minute: int, key: str, values: Mapping[str, int]) -> None:
        """Keep the larger of each value and the row's (created when absent): a reading's highest in its minute."""
        ...

    def since(self, minute: int) -> Sequence[Row]:
        """Every row of `minute` and later."""
        ...

    def purge_before(self, minute: int, limit: int) -> int:
        """Delete up to `limit` rows older than `minute`; how many were deleted."""
        ...
