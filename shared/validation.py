"""Input checks for the two functions; nothing invalid ever reaches Defender."""

from __future__ import annotations

import difflib
import json
import re
from datetime import datetime
from typing import Any

from shared.problems import FieldError, ProblemError, validation_problem

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_LENGTH = 4096

SEVERITIES = ("Low", "Medium", "High")
CATEGORIES = (
    "General", "CommandAndControl", "Collection", "CredentialAccess", "DefenseEvasion", "Discovery",
    "Exfiltration", "Exploit", "Execution", "InitialAccess", "LateralMovement", "Malware", "Persistence",
    "PrivilegeEscalation", "Ransomware", "SuspiciousActivity",
)
CREATE_FIELDS = (
    "eventTime", "reportId", "machineId", "severity", "title", "description", "recommendedAction", "category",
)

_HEX = re.compile(r"[0-9a-fA-F]+")
_HASH_NAMES = {32: "an MD5", 40: "a SHA-1", 64: "a SHA-256", 128: "a SHA-512"}
# Advanced hunting gives UTC times with up to 7 fractional digits, e.g. 2018-08-03T16:45:21.7115183Z.
_EVENT_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,7}))?(?P<zone>Z|[+-]00:00)",
    re.IGNORECASE,
)


def validate_sha1(raw: str) -> str:
    """Return the SHA-1 in lower case, or raise a 400 saying what the value is instead."""
    value = raw.strip()
    if len(value) == 40 and _HEX.fullmatch(value):
        return value.lower()
    if _HEX.fullmatch(value) and len(value) in _HASH_NAMES:
        message = (f"'{value}' looks like {_HASH_NAMES[len(value)]} hash; Defender's file alerts API supports "
                   "only SHA-1 (40 hexadecimal characters).")
    else:
        message = "must be a SHA-1 hash: exactly 40 hexadecimal characters."
    raise validation_problem([FieldError("route.sha1", message)])


def parse_json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Check size, content type and JSON syntax; return the object."""
    if len(body) > MAX_BODY_BYTES:
        raise ProblemError(413, "Request body too large",
                      f"The body is {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted.", "payload-too-large")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (media_type.startswith("application/") and
                                                  media_type.endswith("+json")):
        raise ProblemError(415, "Unsupported media type",
                      f"Content-Type must be application/json, got {media_type or 'none'!r}.",
                      "unsupported-media-type", headers={"Accept-Post": "application/json"})
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise validation_problem([FieldError("body", f"is not valid UTF-8 JSON: {error}")],
                                 detail="The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise validation_problem([FieldError("body", "must be a JSON object")],
                                 detail="The request body must be a JSON object.")
    return document


def _event_time(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _EVENT_TIME.fullmatch(value.strip())
    if not match:
        return None
    try:
        datetime.strptime(f"{match['date']}T{match['h']}:{match['m']}:{match['s']}", "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    fraction = f".{match['frac']}" if match["frac"] else ""
    # Keep every digit Defender needs to find the event; only normalise the zone to Z.
    return f"{match['date']}T{match['h']}:{match['m']}:{match['s']}{fraction}Z"


def _canonical(value: Any, allowed: tuple[str, ...]) -> str | None:
    if not isinstance(value, str):
        return None
    by_lower = {option.lower(): option for option in allowed}
    return by_lower.get(value.strip().lower())


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= MAX_TEXT_LENGTH:
        return value
    return None


def validate_create_alert(document: dict[str, Any]) -> dict[str, str]:
    """Check the 8 documented fields; return the body to send to Defender, canonicalised."""
    errors: list[FieldError] = []
    clean: dict[str, str] = {}

    for name in sorted(set(document) - set(CREATE_FIELDS)):
        close = difflib.get_close_matches(name, CREATE_FIELDS, n=1, cutoff=0.8)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        errors.append(FieldError(f"body.{name}", f"is not a field of CreateAlertByReference.{hint}"))

    def check(name: str, value: str | None, message: str) -> None:
        if name not in document:
            errors.append(FieldError(f"body.{name}", "is required"))
        elif value is None:
            errors.append(FieldError(f"body.{name}", message))
        else:
            clean[name] = value

    check("eventTime", _event_time(document.get("eventTime")),
          "must be an ISO-8601 UTC time as advanced hunting gives it, e.g. 2018-08-03T16:45:21.7115183Z "
          "(up to 7 fractional digits, zone Z)")
    report_id = document.get("reportId")
    if isinstance(report_id, bool):
        report_id = None
    elif isinstance(report_id, int) and report_id >= 0:
        report_id = str(report_id)
    check("reportId", report_id.strip() if isinstance(report_id, str) and report_id.strip() else None,
          "must be the event's ReportId from advanced hunting: a non-empty string or a non-negative integer")
    machine_id = document.get("machineId")
    check("machineId",
          machine_id.lower() if isinstance(machine_id, str) and len(machine_id) == 40 and _HEX.fullmatch(machine_id)
          else None,
          "must be the device id: 40 hexadecimal characters")
    check("severity", _canonical(document.get("severity"), SEVERITIES), "must be one of " + ", ".join(SEVERITIES))
    check("category", _canonical(document.get("category"), CATEGORIES), "must be one of " + ", ".join(CATEGORIES))
    for name in ("title", "description", "recommendedAction"):
        check(name, _text(document.get(name)), f"must be a non-empty string of at most {MAX_TEXT_LENGTH} characters")

    if errors:
        raise validation_problem(errors)
    return {name: clean[name] for name in CREATE_FIELDS}
