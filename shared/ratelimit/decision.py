"""What the limiter tells its caller about one call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a call was admitted or refused."""

    ADMITTED = "admitted"
    #: A window already holds its limit of calls.
    RATE_LIMITED = "rate_limited"
    #: Defender answered 429 and the wait it asked for has not passed.
    BLOCKED = "blocked"
    #: Too many instances wrote at once (ETag conflicts); refused rather than admitted blindly.
    CONTENTION = "contention"


@dataclass(frozen=True)
class WindowState:
    """One window of the policy as it stands after the decision."""

    name: str
    limit: int
    window_seconds: int
    #: Calls this window still admits now.
    remaining: int
    #: Seconds (rounded up) until the oldest call counted in this window leaves it; 0 if it holds none.
    reset_seconds: int
    #: What the window admits now: `limit`, or only the new-state share of it while the log is younger than the
    #: window (calls made before the log began, which nobody remembers, may still count upstream).
    current_limit: int = 0

    @property
    def young(self) -> bool:
        """Whether the window admits only the new-state share of its limit now."""
        return 0 < self.current_limit < self.limit


@dataclass(frozen=True)
class Decision:
    """The answer for one call: admitted or not, when to retry, and the state of every window."""

    api: str
    admitted: bool
    reason: Reason
    #: Whole seconds until a retry can succeed (0 when admitted).
    retry_after: int
    windows: tuple[WindowState, ...]
    #: The clock reading (epoch seconds) the decision used; an admitted call is logged at this time.
    decided_at: float
    #: Diagnostics: table requests this decision made (0 = answered from the in-process memory).
    storage_round_trips: int = 0
    #: Diagnostics: ETag conflicts (409/412) met and retried.
    conflicts: int = 0
    #: The exact wait in milliseconds (0 when admitted): for a caller that waits in place (a queue worker).
    retry_after_ms: int = 0
    #: With reason BLOCKED: what the block is for, as RateLimiter.block_until named it (e.g. `cpu`); "" = unnamed.
    blocked_kind: str = ""
