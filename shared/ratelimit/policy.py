"""Rate-limit policies: the windows each upstream API allows."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The admission log is stored as 8 bytes per call in one binary property (64 KiB at most).
MAX_LIMIT = 5000
MAX_WINDOW_SECONDS = 86_400
MAX_MARGIN_SECONDS = 60.0
MAX_CONFLICT_RETRIES = 100
#: A state created from nothing (first use, or the entity was lost) admits this share of each window
#: until the window has passed once: calls made before it that nobody remembers may still count upstream.
DEFAULT_NEW_STATE_SHARE = 0.5

_API_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
_WINDOW = re.compile(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", re.ASCII)


@dataclass(frozen=True)
class Window:
    """At most `limit` calls in any `seconds`-long interval."""

    limit: int
    seconds: int

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"a window's limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if not 1 <= self.seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"a window must last 1 to {MAX_WINDOW_SECONDS} seconds, got {self.seconds}")

    @property
    def name(self) -> str:
        """The policy name in the RateLimit headers, e.g. `60s`."""
        return f"{self.seconds}s"


@dataclass(frozen=True)
class RatePolicy:
    """The windows of one upstream API; a call must fit into all of them."""

    api: str
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        if not _API_NAME.fullmatch(self.api):
            raise ValueError(f"API name must match {_API_NAME.pattern}, got {self.api!r}")
        if not self.windows:
            raise ValueError("a policy needs at least one window")
        seconds = [w.seconds for w in self.windows]
        if len(set(seconds)) != len(seconds):
            raise ValueError("two windows of one policy have the same length")

    @property
    def longest_log(self) -> int:
        """How many admission times must be kept: the largest limit of any window."""
        return max(w.limit for w in self.windows)


def parse_windows(text: str) -> tuple[Window, ...]:
    """Parse `100/60,1500/3600` (calls/seconds, comma-separated) into windows, shortest first.

    Raises ValueError with a message that reads after the name of the setting it came from.
    """
    windows: list[Window] = []
    for part in text.split(","):
        match = _WINDOW.fullmatch(part)
        if match is None:
            raise ValueError(f"must list windows like `100/60,1500/3600` (calls/seconds, comma-separated); "
                             f"{part.strip()!r} is not one")
        try:
            windows.append(Window(limit=int(match[1]), seconds=int(match[2])))
        except ValueError as exc:
            raise ValueError(f"{part.strip()!r}: {exc}") from None
    if len({w.seconds for w in windows}) != len(windows):
        raise ValueError(f"lists the same window length twice in {text!r}")
    return tuple(sorted(windows, key=lambda w: w.seconds))
