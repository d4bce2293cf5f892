"""The page's per-minute series of the last hour, from the limiter's logs and the history's rows. Pure.

Each series has WINDOW_MINUTES points, the oldest first; the last is the minute under way. A count with no row is
0 (nothing happened, or nothing was flushed yet); a reading with no row is None (the sweep did not run then).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.history.store import WINDOW_MINUTES, Count, Reading, Row, count_key, minute_of, queue_key


@dataclass(frozen=True)
class Budget:
    """One API's budget in one tenant, as the page charts it."""

    #: `home`, or the customer tenant's name.
    scope: str
    tenant: str
    api: str
    #: The limiter's log: admission times (ms), oldest first.
    admissions_ms: Sequence[int]
    #: The shortest window's limit, per minute.
    limit_per_minute: float
    #: Since when (ms) the log holds every admission it keeps (its longest window's span back, or its start).
    log_from_ms: int


def first_minute(now: float) -> int:
    return minute_of(now) - WINDOW_MINUTES + 1


def per_minute(times_ms: Iterable[int], first: int) -> list[int]:
    counts = [0] * WINDOW_MINUTES
    for ms in times_ms:
        index = ms // 60_000 - first
        if 0 <= index < WINDOW_MINUTES:
            counts[index] += 1
    return counts


def history(now: float, rows: Sequence[Row], budgets: Sequence[Budget],
            queues: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The `history` part of the operator state. `queues`: (label, queue name): `requests` or an API's name."""
    first = first_minute(now)
    by_key: dict[str, list[dict[str, int] | None]] = {}
    for row in rows:  # a key's minute may come twice (stored, and counted here but not flushed yet): added up
        if first <= row.minute < first + WINDOW_MINUTES:
            points = by_key.setdefault(row.key, [None] * WINDOW_MINUTES)
            point = dict(points[row.minute - first] or {})
            for name, value in row.values.items():
                point[name] = point.get(name, 0) + value
            points[row.minute - first] = point

    def values(key: str, name: str, default: int | None) -> list[int | None]:
        return [default if point is None else point.get(name, default)
                for point in by_key.get(key, [None] * WINDOW_MINUTES)]

    return {
        "startsAt": datetime.fromtimestamp(first * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "minutes": WINDOW_MINUTES,
        "budgets": [{
            "scope": budget.scope, "tenant": budget.tenant, "api": budget.api,
            "limitPerMinute": budget.limit_per_minute,
            "admittedFrom": datetime.fromtimestamp(max(budget.log_from_ms // 1000, first * 60), UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
            "admitted": per_minute(budget.admissions_ms, first),
            "refused": values(count_key(budget.api, budget.tenant), Count.REFUSED.value, 0),
            "throttled": values(count_key(budget.api, budget.tenant), Count.THROTTLED.value, 0),
        } for budget in budgets],
        "queues": [{
            "api": label if label != "requests" else None, "name": name,
            "depth": values(queue_key(label), Reading.DEPTH.value, None),
            "pending": values(queue_key(label), Reading.PENDING.value, None),
            "oldestPendingAgeSeconds": values(queue_key(label), Reading.OLDEST_AGE.value, None),
        } for label, name in queues],
    }
