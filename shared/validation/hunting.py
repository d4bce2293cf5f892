"""The hunting query's checks: the body of Defender's hunting paths (`{"Query"}`) and of Graph's (`{"Query",
"Timespan"?}`), refused field by field before any quota or token is spent.

    validate_hunting(document, shape) -> HuntingQuery(query, timespan)

`HuntingShape` names the two answers a caller may have asked for (Defender's `Stats`/`Schema`/`Results`, or Graph's
`schema`/`results`); the edge, the queue message and the operation keep it, so an answer is given in the caller's
shape whichever path it took.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from shared.defender.facts import HUNTING_MAX_QUERY_BYTES, HUNTING_MAX_QUERY_CHARACTERS
from shared.validation import FORBIDDEN_IN_TEXT, FieldError, InvalidInputError, checked_text


class HuntingShape(StrEnum):
    """The shape a caller asked for, by the path it called: Defender's (MDE's and Defender XDR's hunting paths) or
    Microsoft Graph's (runHuntingQuery). The value is kept in queue messages and operations."""

    DEFENDER = "defender"
    GRAPH = "graph"


#: The fields each shape's body may have: exactly these (MDE documents `Query` alone; Graph adds `Timespan`).
HUNTING_FIELDS: dict[HuntingShape, tuple[str, ...]] = {
    HuntingShape.DEFENDER: ("Query",),
    HuntingShape.GRAPH: ("Query", "Timespan"),
}


class HuntingQuery(NamedTuple):
    """A valid hunting request: the KQL query as the caller wrote it, and Graph's optional `Timespan`."""

    query: str
    timespan: str | None = None


# ISO 8601, as Graph's Timespan takes it: a duration (P7D, PT12H, P1DT6H, P2W), or an interval of two UTC date-times,
# or of one and a duration. Written without lookarounds or named groups, so that the OpenAPI document states the same
# grammar (an ECMA 262 pattern that test generators read); each number has at most 9 digits.
_N = "[0-9]{1,9}"
_DATE_PART = f"(?:{_N}Y(?:{_N}M)?(?:{_N}D)?|{_N}M(?:{_N}D)?|{_N}D)"
_SECONDS = rf"{_N}(?:\.[0-9]{{1,7}})?S"
_TIME_PART = f"T(?:{_N}H(?:{_N}M)?(?:{_SECONDS})?|{_N}M(?:{_SECONDS})?|{_SECONDS})"
#: An ISO 8601 duration: weeks alone, or years/months/days and/or hours/minutes/seconds, at least one of them.
ISO_DURATION = f"P(?:{_N}W|{_DATE_PART}(?:{_TIME_PART})?|{_TIME_PART})"
#: An ISO 8601 UTC date-time as the validator reads it (its calendar checked apart): seconds, up to 7 fraction digits.
UTC_DATE_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,7})?Z"
_DURATION = re.compile(ISO_DURATION, re.ASCII)
_DATE_TIME = re.compile(UTC_DATE_TIME, re.ASCII)
TIMESPAN_EXAMPLES = ("P7D", "PT12H", "P1DT6H", "P2W", "2026-12-01T00:00:00Z/2026-12-06T00:00:00Z",
                     "2026-12-01T00:00:00Z/P5D", "P5D/2026-12-06T00:00:00Z")


def _is_utc_date_time(text: str) -> bool:
    if not _DATE_TIME.fullmatch(text):
        return False
    try:
        datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return False
    return True


def is_timespan(value: str) -> bool:
    """An ISO 8601 duration, or an interval `<start>/<end>`, `<start>/<duration>` or `<duration>/<end>` (start and
    end as UTC date-times)."""
    if _DURATION.fullmatch(value):
        return True
    start, slash, end = value.partition("/")
    if not slash:
        return False
    if _is_utc_date_time(start):
        return _is_utc_date_time(end) or bool(_DURATION.fullmatch(end))
    return bool(_DURATION.fullmatch(start)) and _is_utc_date_time(end)


def query_json_bytes(query: str) -> int:
    """The bytes `query` takes in a queue message: JSON text in UTF-8 (shared.asynchronous.messages.encode)."""
    return len(json.dumps(query, ensure_ascii=False).encode("utf-8"))


def _query_problem(value: Any) -> str | None:
    """What is wrong with `Query`, or None."""
    if checked_text(value, HUNTING_MAX_QUERY_CHARACTERS) is not None:
        size = query_json_bytes(value)
        if size <= HUNTING_MAX_QUERY_BYTES:
            return None
        return (f"is {size} bytes as UTF-8 JSON; the gateway takes queries of at most {HUNTING_MAX_QUERY_BYTES} "
                f"(so that a queued query fits a queue message): about {HUNTING_MAX_QUERY_BYTES // 4} characters "
                f"of 4-byte text such as emoji, {HUNTING_MAX_QUERY_BYTES // 3} of 3-byte text such as CJK")
    if not isinstance(value, str):
        return "must be a string: the KQL query to run"
    if not value.strip():
        return "must not be empty or only white space: the KQL query to run"
    if len(value) > HUNTING_MAX_QUERY_CHARACTERS:
        return (f"is {len(value)} characters long; the gateway takes queries of at most "
                f"{HUNTING_MAX_QUERY_CHARACTERS} characters")
    assert FORBIDDEN_IN_TEXT.search(value)
    return "must not contain control characters (tab, CR and LF are fine) or unpaired surrogates"


def _spellings(document: dict[str, Any], allowed: tuple[str, ...]) -> tuple[dict[str, list[str]], list[str]]:
    """The body's names by the field each spells in any case (Graph's OData and Defender's ASP.NET binding read
    them so), and the names that spell none."""
    by_lower = {field.lower(): field for field in allowed}
    spelled: dict[str, list[str]] = {}
    unknown: list[str] = []
    for name in document:
        field = by_lower.get(name.lower())
        if field is None:
            unknown.append(name)
        else:
            spelled.setdefault(field, []).append(name)
    return spelled, sorted(unknown)


def validate_hunting(document: dict[str, Any], shape: HuntingShape) -> HuntingQuery:
    """Check a hunting body for `shape`; every bad field is named (InvalidInputError). Names are matched in any case
    (`query`, `TIMESPAN`) and the answer is canonical (`Query`, `Timespan`); two spellings of one name are refused."""
    allowed = HUNTING_FIELDS[shape]
    errors: list[FieldError] = []
    spelled, unknown = _spellings(document, allowed)
    for name in unknown:
        close = next(iter(difflib.get_close_matches(name.lower(), [field.lower() for field in allowed], n=1,
                                                    cutoff=0.8)), None)
        hint = f" Did you mean '{next(f for f in allowed if f.lower() == close)}'?" if close else ""
        where = "Defender's hunting API takes only Query" if shape is HuntingShape.DEFENDER else \
            "runHuntingQuery takes only Query and Timespan"
        errors.append(FieldError(f"body.{name}", f"is not a field of this request ({where}; names are "
                                                 f"matched in any case).{hint}"))
    for field, names in spelled.items():
        if len(names) > 1:
            errors.append(FieldError(f"body.{field}", f"is given {len(names)} times, as " + ", ".join(
                repr(name) for name in names) + ": names are matched in any case, so give it once"))
    values = {field: document[names[0]] for field, names in spelled.items() if len(names) == 1}
    query = values.get("Query")
    if "Query" not in spelled:
        errors.append(FieldError("body.Query", "is required: the KQL query to run"))
    elif "Query" in values and (problem := _query_problem(query)) is not None:
        errors.append(FieldError("body.Query", problem))
    timespan = values.get("Timespan")
    if shape is HuntingShape.GRAPH and "Timespan" in values and not (
            isinstance(timespan, str) and is_timespan(timespan)):
        errors.append(FieldError("body.Timespan", "must be an ISO 8601 duration (P7D, PT12H, P1DT6H, P2W) or interval "
                                                  "(<start>/<end>, <start>/<duration>, <duration>/<end>, start and "
                                                  "end as UTC date-times such as 2026-12-01T00:00:00Z)"))
    if errors:
        raise InvalidInputError(errors)
    assert isinstance(query, str) and (timespan is None or isinstance(timespan, str))
    return HuntingQuery(query, timespan if shape is HuntingShape.GRAPH else None)
