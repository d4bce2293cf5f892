"""Rate-limit policies (the windows each upstream API allows) and their settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import ConfigurationError, setting

FILE_ALERTS = "file_alerts"
CREATE_ALERT = "create_alert"

#: Which setting holds the windows of which upstream API.
POLICY_SETTINGS: Mapping[str, str] = {
    FILE_ALERTS: "RATE_LIMIT_FILE_ALERTS",
    CREATE_ALERT: "RATE_LIMIT_CREATE_ALERT",
}

#: The admission log is stored as 8 bytes per call in one binary property (64 KiB at most).
MAX_LIMIT = 5000
MAX_WINDOW_SECONDS = 86_400
MAX_MARGIN_SECONDS = 60.0
#: A state created from nothing (first use, or the entity was lost) admits this share of each window
#: until the window has passed once: calls made before it that nobody remembers may still count upstream.
DEFAULT_NEW_STATE_SHARE = 0.5
MAX_CONFLICT_RETRIES = 100

_API_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_WINDOW = re.compile(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", re.ASCII)
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


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


def parse_windows(text: str, *, setting_name: str) -> tuple[Window, ...]:
    """Parse `100/60,1500/3600` (calls/seconds, comma-separated) into windows, shortest first."""
    example = "like `100/60,1500/3600` (calls/seconds, comma-separated)"
    windows: list[Window] = []
    for part in text.split(","):
        match = _WINDOW.fullmatch(part)
        if match is None:
            raise ConfigurationError(f"{setting_name} must list windows {example}; {part.strip()!r} is not one.")
        try:
            windows.append(Window(limit=int(match[1]), seconds=int(match[2])))
        except ValueError as exc:
            raise ConfigurationError(f"{setting_name}: {part.strip()!r}: {exc}.") from None
    if len({w.seconds for w in windows}) != len(windows):
        raise ConfigurationError(f"{setting_name} lists the same window length twice in {text!r}.")
    return tuple(sorted(windows, key=lambda w: w.seconds))


@dataclass(frozen=True)
class RateLimitSettings:
    """Everything the limiters read from the app settings."""

    policies: Mapping[str, RatePolicy]
    margin_seconds: float
    table_name: str
    max_conflict_retries: int
    new_state_share: float = DEFAULT_NEW_STATE_SHARE


def load_rate_limit_settings(env: Mapping[str, str]) -> RateLimitSettings:
    """Read and check the RATE_LIMIT_* settings; raises ConfigurationError naming the bad one."""
    policies = {
        api: RatePolicy(api, parse_windows(setting(env, name) or "", setting_name=name))
        for api, name in POLICY_SETTINGS.items()
    }

    raw_margin = setting(env, "RATE_LIMIT_MARGIN_SECONDS") or ""
    try:
        margin = float(raw_margin)
    except ValueError:
        raise ConfigurationError(
            f"RATE_LIMIT_MARGIN_SECONDS must be a number of seconds, got {raw_margin!r}.") from None
    if not 0 <= margin <= MAX_MARGIN_SECONDS:  # also refuses NaN
        raise ConfigurationError(
            f"RATE_LIMIT_MARGIN_SECONDS must be between 0 and {MAX_MARGIN_SECONDS:g}, got {raw_margin!r}.")

    table = setting(env, "RATE_LIMIT_TABLE") or ""
    if not _TABLE_NAME.fullmatch(table) or table.lower() == "tables":
        raise ConfigurationError(
            f"RATE_LIMIT_TABLE must be a table name (a letter, then 2-62 letters or digits), got {table!r}.")

    raw_retries = setting(env, "RATE_LIMIT_MAX_CONFLICT_RETRIES") or ""
    if not re.fullmatch(r"\d{1,3}", raw_retries, re.ASCII) or int(raw_retries) > MAX_CONFLICT_RETRIES:
        raise ConfigurationError(
            f"RATE_LIMIT_MAX_CONFLICT_RETRIES must be a whole number from 0 to {MAX_CONFLICT_RETRIES}, "
            f"got {raw_retries!r}.")

    raw_share = setting(env, "RATE_LIMIT_NEW_STATE_SHARE") or ""
    try:
        share = float(raw_share)
    except ValueError:
        share = float("nan")
    if not 0 < share <= 1:  # also refuses NaN
        raise ConfigurationError(
            f"RATE_LIMIT_NEW_STATE_SHARE must be a number greater than 0 and at most 1, got {raw_share!r}.")

    return RateLimitSettings(policies=policies, margin_seconds=margin, table_name=table,
                             max_conflict_retries=int(raw_retries), new_state_share=share)
