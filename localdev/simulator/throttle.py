"""Defender's server-side limits, modelled as exact sliding windows per tenant + application + API."""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from shared.defender.facts import API_FACTS
from shared.ratelimit import parse_windows

# API -> [(calls, window seconds)], as documented.
DEFAULT_LIMITS: dict[str, list[tuple[int, float]]] = {
    api.value: [(window.limit, float(window.seconds)) for window in parse_windows(facts.limits)]
    for api, facts in API_FACTS.items()
}


#: How much later than a newer call a call may be looked at (threads): its window's calls are kept that long more.
_LATE_SECONDS = 60.0


class SlidingWindows:
    def __init__(self, limits: dict[str, list[tuple[int, float]]] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = {api: list(windows) for api, windows in (limits or DEFAULT_LIMITS).items()}
        self._calls: dict[tuple[str, str], deque[float]] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def set_limits(self, limits: dict[str, list[tuple[int, float]]]) -> None:
        with self._lock:
            self._limits.update({api: list(windows) for api, windows in limits.items()})
            self._calls.clear()

    def reset(self) -> None:
        with self._lock:
            self._limits = {api: list(windows) for api, windows in DEFAULT_LIMITS.items()}
            self._calls.clear()

    def limits(self, api: str) -> list[tuple[int, float]]:
        return list(self._limits[api])

    def admit(self, caller: str, api: str, *, at: float | None = None) -> tuple[bool, int, tuple[int, float] | None]:
        """(admitted, retry-after seconds, the window that refused) for a call that arrived `at` (this clock; now by
        default). Calls may be looked at out of their arrival order (threads): a call is refused when, with it,
        some `limit + 1` calls would stand within `seconds` of each other, whichever arrived last."""
        now = self._clock() if at is None else at
        with self._lock:
            windows = self._limits[api]
            longest = max(seconds for _, seconds in windows)
            calls = self._calls.setdefault((caller, api), deque())
            while calls and calls[0] <= now - longest - _LATE_SECONDS:
                calls.popleft()
            entries = list(calls)
            index = bisect.bisect_right(entries, now)
            entries.insert(index, now)
            for limit, seconds in windows:
                for first in range(max(0, index - limit), index + 1):
                    last = first + limit
                    if last < len(entries) and entries[last] - entries[first] < seconds:
                        return False, max(1, math.ceil(entries[first] + seconds - now)), (limit, seconds)
            calls.insert(index, now)  # in arrival order, whenever it is looked at
            return True, 0, None
