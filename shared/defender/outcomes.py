"""What one call to Defender came to, as typed values: the client returns them, the edge maps them.

Nothing here chooses an HTTP status for the gateway's caller or writes text for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any

from shared.defender.facts import Api
from shared.identifiers import SHA1_ANY_CASE


class Reach(Enum):
    """Whether a request that got no answer may have reached Defender (it decides if a POST may be repeated)."""

    #: It surely did not (no connection was made): repeating it cannot duplicate anything.
    NOT_SENT = "not-sent"
    #: It may have: the connection broke or timed out after the request was sent.
    MAYBE = "maybe"
    #: Defender answered.
    ANSWERED = "answered"


class AuthCause(Enum):
    """Why Defender refused the gateway's identity, as far as its answer says."""

    AUDIENCE = "audience"
    ROLE = "role"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DefenderError:
    """Defender's error body: `{"error": {"code", "message", "target"}}` (Graph's has `innerError` instead of
    `target`: its request ids, which the gateway does not pass on)."""

    code: str | None = None
    message: str | None = None
    target: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {name: value for name, value in (("code", self.code), ("message", self.message),
                                                ("target", self.target)) if value is not None}


@dataclass(frozen=True)
class Success:
    """Defender answered 200 with the documented shape; `body` is passed on unchanged."""

    body: bytes


class ThrottleKind(StrEnum):
    """Which limit a 429 names: calls in a window (every API), or the tenant's CPU for advanced hunting (Graph)."""

    CALLS = "calls"
    CPU = "cpu"


@dataclass(frozen=True)
class Throttled:
    """Defender (or Graph) answered 429. `retry_after` is its Retry-After in seconds (None when it sent none).

    `kind`: which limit (Graph's hunting 429 says in its message); `until`: for a CPU 429, the time (epoch seconds)
    the message says queries are blocked until (None when it names none)."""

    retry_after: float | None
    error: DefenderError | None = None
    kind: ThrottleKind = ThrottleKind.CALLS
    until: float | None = None


@dataclass(frozen=True)
class Rejected:
    """Defender refused the request itself (400, 404 and other 4xx except 401/403/429)."""

    status: int
    error: DefenderError | None = None


@dataclass(frozen=True)
class Unauthorized:
    """Defender refused the gateway's identity (401 or 403)."""

    status: int
    cause: AuthCause
    error: DefenderError | None = None


@dataclass(frozen=True)
class Unavailable:
    """No usable answer: a 5xx, a connection failure or a timeout. `status` is None when nothing was answered."""

    reach: Reach
    status: int | None = None
    timed_out: bool = False
    retry_after: float | None = None
    error: DefenderError | None = None
    #: The transport failure's type (e.g. ConnectTimeoutError), for logs.
    cause: str | None = None


@dataclass(frozen=True)
class Malformed:
    """Defender answered `status` with a body that is not what it documents (not JSON, or another shape)."""

    status: int
    is_json: bool


Outcome = Success | Throttled | Rejected | Unauthorized | Unavailable | Malformed


def outcome_name(outcome: Outcome) -> str:
    """The outcome's kind in lower case (success, throttled, ...): what telemetry and logs call it."""
    return type(outcome).__name__.lower()


def outcome_status(outcome: Outcome) -> int | None:
    """The HTTP status Defender answered with (None: no answer reached the gateway)."""
    if isinstance(outcome, Success):
        return 200
    if isinstance(outcome, Throttled):
        return 429
    return outcome.status


#: The longest wait a Retry-After may ask for: Defender's longest window. A longer one (or infinity) is read as this.
MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (delta form; 1 to MAX_RETRY_AFTER_SECONDS), or None when absent or unreadable."""
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    if seconds != seconds:  # NaN is not a wait
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(1.0, seconds))


def _error_of(document: Any) -> DefenderError | None:
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None
    values = {key: str(error[key]) for key in ("code", "message", "target") if error.get(key) is not None}
    return DefenderError(**values) if values else None


def file_entity_sha1(document: Any) -> str | None:
    """The SHA-1 (lower case) of Defender's file entity (Get file information), or None when it names none.

    The gateway puts it in the path of the file-alerts call, so only 40 hexadecimal characters count.
    """
    sha1 = document.get("sha1") if isinstance(document, dict) else None
    return sha1.lower() if isinstance(sha1, str) and SHA1_ANY_CASE.fullmatch(sha1) else None


#: An ISO 8601 UTC date-time as Graph writes one in a message (`2026-12-06T20:15:00Z`, fractions and `+00:00` too).
_UTC_DATE_TIME = re.compile(r"\b(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d{1,7})?(?:Z|\+00:?00)(?![\d:])", re.ASCII)


def first_utc_time(text: str) -> float | None:
    """The first ISO 8601 UTC date-time in `text` as epoch seconds (fractions dropped), or None when it holds none."""
    for match in _UTC_DATE_TIME.finditer(text):
        try:
            return datetime.fromisoformat(f"{match[1]}T{match[2]}").replace(tzinfo=UTC).timestamp()
        except ValueError:  # a date that does not exist (2026-02-30): not a time
            continue
    return None


def _throttled(api: Api, headers: Mapping[str, str], error: DefenderError | None) -> Throttled:
    """A 429: for hunting, Graph's message says whether the calls quota or the tenant's CPU quota is exhausted
    ("Tenant CPU quota for advanced hunting exceeded ... blocked until <time>"), and a CPU block's end."""
    message = error.message if error and error.message else ""
    if api is Api.HUNTING and "cpu" in message.lower():
        return Throttled(retry_after_seconds(headers), error, ThrottleKind.CPU, first_utc_time(message))
    return Throttled(retry_after_seconds(headers), error)


def hunting_timed_out(outcome: Outcome) -> bool:
    """Whether a hunting call ended as a query that ran too long: Graph's 504 (GatewayTimeout), or no answer within
    the read timeout after the request left. Never repeated: the query may still be costing the tenant's CPU."""
    return isinstance(outcome, Unavailable) and (
        outcome.status == 504 or (outcome.status is None and outcome.timed_out and outcome.reach is Reach.MAYBE))


def _documented_success(api: Api, document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    if api is Api.HUNTING:  # Graph's huntingQueryResults: `schema` and `results`, both lists
        return isinstance(document.get("schema"), list) and isinstance(document.get("results"), list)
    if api is Api.FILE_ALERTS:
        return isinstance(document.get("value"), list)
    if api is Api.FILE_INFO:
        return file_entity_sha1(document) is not None
    return isinstance(document.get("id"), str)


def classify(api: Api, status: int, headers: Mapping[str, str], content: bytes) -> Outcome:
    """The outcome of one Defender answer."""
    try:
        document: Any = json.loads(content) if content else None
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to read: not the documented shape
        document = None
    error = _error_of(document)
    if status == 200:
        return Success(content) if _documented_success(api, document) else Malformed(status, document is not None)
    if status == 429:
        return _throttled(api, headers, error)
    if status in (401, 403):
        message = (error.message or "").lower() if error else ""
        cause = AuthCause.AUDIENCE if "audience" in message else AuthCause.ROLE if "role" in message \
            else AuthCause.UNKNOWN
        return Unauthorized(status, cause, error)
    if 400 <= status < 500:
        return Rejected(status, error)
    if status >= 500:
        return Unavailable(Reach.ANSWERED, status, retry_after=retry_after_seconds(headers), error=error)
    return Malformed(status, document is not None)
