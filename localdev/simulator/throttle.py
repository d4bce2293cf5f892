"""Defender's server-side limits, modelled as exact sliding windows per tenant + application + API."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from shared.defender import API_FACTS
from shared.ratelimit import parse_windows

# API -> [(calls, window seconds)], as documented.
DEFAULT_LIMITS: dict[str, list[tuple[int, float]]] = {
    api.value: [(window.limit, float(window.seconds)) for window in parse_windows(facts.limits)]
    for api, facts in API_FACTS.items()
}


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

    def admit(self, caller: str, api: str) -> tuple[bool, int, tuple[int, float] | None]:
        """(admitted, retry-after seconds, the window that refused)."""
        now = self._clock()
        with self._lock:
            windows = self._limits[api]
            longest = max(seconds for _, seconds in windows)
            calls = self._calls.setdefault((caller, api), deque())
            while calls and calls[0] <= now - longest:
                calls.popleft()
            for limit, seconds in windows:
                in_window = [t for t in calls if t > now - seconds]
                if len(in_window) >= limit:
                    oldest = in_window[len(in_window) - limit]
                    return False, max(1, math.ceil(oldest + seconds - now)), (limit, seconds)
            calls.append(now)
            return True, 0, None
