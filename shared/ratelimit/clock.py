"""This instance's clock, checked against the storage service's and corrected by what it measures.

Every instance writes admission times by its own clock into one shared log. An instance whose
clock runs ahead of the others by more than the margin sees their calls leave the window too
early and over-admits. The table service is the one clock all instances talk to: each of its
answers carries a `Date` header (whole seconds). A request sent at local time `s` and answered
at `r` with `Date: D` bounds this clock's offset from the service's:

    D - r  <=  offset  <=  D + 1 - s

Intersecting the bounds of recent answers narrows the interval to about one round trip once the
answers straddle a second boundary. The correction applied is the point of that interval nearest
to zero: a clock that agrees with the service (within what the samples can tell) is left alone,
and a clock that is off is moved to within the interval's width of the service's time, which the
margin then absorbs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

logger = logging.getLogger("mde_alert_gateway.ratelimit")

#: Samples older than this (local seconds) no longer narrow the estimate (clocks drift and step).
SAMPLE_LIFETIME = 600.0
MAX_SAMPLES = 64
#: Corrections at least this large are logged as a warning (once, and again when they change much).
REPORT_THRESHOLD = 0.5


@dataclass(frozen=True)
class OffsetBounds:
    """What one answer tells: the offset (service - local, seconds) lies in [low, high]."""

    low: float
    high: float
    taken_at: float


class ClockSync:
    """A clock (epoch seconds) corrected towards the storage service's. Thread-safe.

    `now()` is the corrected time. Each storage answer's `Date`, with the local times its request
    was sent and answered, goes to `observe`. With `enabled=False` (a hand-driven test clock)
    nothing is corrected. `sleep` is how waiting passes on this clock (`time.sleep` for the real
    one): whoever waits (the limiter's backoff) asks the clock, so a hand-driven clock's time
    passes by its own hand and no test really waits.
    """

    def __init__(self, clock: Callable[[], float], *, enabled: bool = True,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self.enabled = enabled
        self._samples: deque[OffsetBounds] = deque(maxlen=MAX_SAMPLES)
        self._offset = 0.0
        self._reported = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock() + self._offset

    @property
    def offset(self) -> float:
        """The correction added to the local clock (seconds; 0 when none is needed or known)."""
        return self._offset

    def bounds(self) -> tuple[float, float] | None:
        """The current interval for the offset, or None before any sample."""
        with self._lock:
            if not self._samples:
                return None
            return max(s.low for s in self._samples), min(s.high for s in self._samples)

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""
        self._sleep(seconds)

    def local(self) -> float:
        """The uncorrected clock, for timing requests to the storage service."""
        return self._clock()

    def observe(self, date_header: str | None, *, sent: float, received: float) -> None:
        """Take one answer's `Date` (RFC 7231) into account; answers without a usable one are ignored."""
        if not self.enabled or not date_header:
            return
        try:
            service = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        sample = OffsetBounds(service - received, service + 1.0 - sent, received)
        with self._lock:
            while self._samples and self._samples[0].taken_at < received - SAMPLE_LIFETIME:
                self._samples.popleft()
            self._samples.append(sample)
            low = max(s.low for s in self._samples)
            high = min(s.high for s in self._samples)
            if low > high:  # the local clock stepped: only the newest answer still holds
                self._samples.clear()
                self._samples.append(sample)
                low, high = sample.low, sample.high
            self._offset = min(max(0.0, low), high)  # the point of [low, high] nearest to zero
            report = abs(self._offset - self._reported) >= REPORT_THRESHOLD
            if report:
                self._reported = self._offset
        if report:
            where = f"{abs(self._offset):.2f} s {'behind' if self._offset > 0 else 'ahead of'}" if self._offset \
                else "in step with"
            logger.warning(
                "Clock skew: this instance's clock is %s the storage service's (offset measured within "
                "[%.2f, %.2f] s); the rate limiter uses the corrected time so that no instance over-admits.",
                where, low, high)
