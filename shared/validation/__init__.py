"""Input checks for the functions; nothing invalid ever reaches Defender.

Failures are InputErrors naming each bad field; the HTTP edge turns them into 400/413/415 answers. The hunting
query's checks are in shared.validation.hunting.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, NamedTuple, NoReturn

from shared.defender.facts import CATEGORIES, CREATE_FIELDS, SEVERITIES
from shared.identifiers import SHA1_ANY_CASE, SHA256_ANY_CASE


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: where it is (`body.severity`, `route.sha1`) and what is wrong."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}

    def __str__(self) -> str:
        """As a log line names it: the field quoted as Python writes it (repr), since a caller chose the name of an
        unknown field, and a CR/LF in it written raw would end the line and forge the next one."""
        return f"{self.field!r} {self.message}"


MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_LENGTH = 4096


# Every pattern here means ASCII: re.ASCII keeps \d from matching other scripts' digits (e.g. Arabic-Indic
# or full-width ones) and IGNORECASE from folding non-ASCII letters (e.g. the Kelvin sign) onto ASCII.
_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)
_HASH_NAMES = {32: "an MD5", 40: "a SHA-1", 64: "a SHA-256", 128: "a SHA-512"}
# Advanced hunting gives UTC times with up to 7 fractional digits, e.g. 2018-08-03T16:45:21.7115183Z.
_EVENT_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,7}))?(?P<zone>Z|[+-]00:00)",
    re.IGNORECASE | re.ASCII,
)
_JSON_WHITESPACE = " \t\r\n"
# Advanced hunting's ReportId is a long; the API takes it as a string of its digits.
MAX_REPORT_ID = 2**63 - 1
_REPORT_ID = re.compile(r"[0-9]{1,19}", re.ASCII)
# C0 and C1 control characters except tab, LF and CR (DEL included), and surrogates: in a str from JSON a
# surrogate is always unpaired, because the decoder joins every valid pair into one character.
FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class HashKind(StrEnum):
    """The file hashes a file-alerts lookup takes: a SHA-1 as Defender's alerts API does, or a SHA-256 that the
    gateway resolves to the file's SHA-1 first (Defender's file information API)."""

    SHA1 = "sha1"
    SHA256 = "sha256"


class FileHash(NamedTuple):
    """A valid file hash: its kind and its value in lower case."""

    kind: HashKind
    value: str


_FILE_HASH_KINDS = ((SHA1_ANY_CASE, HashKind.SHA1), (SHA256_ANY_CASE, HashKind.SHA256))


def validate_file_hash(raw: Any, *, field: str = "route.fileHash") -> FileHash:
    """A SHA-1 or SHA-256 in lower case, or a 400 naming `field` and saying what the value is instead."""
    value = _ascii_stripped(raw) or ""
    for pattern, kind in _FILE_HASH_KINDS:
        if pattern.fullmatch(value):
            return FileHash(kind, value.lower())
    if _HEX.fullmatch(value) and len(value) in _HASH_NAMES:
        message = (f"'{value}' looks like {_HASH_NAMES[len(value)]} hash; the gateway looks files up by SHA-1 "
                   "(40 hexadecimal characters) or SHA-256 (64) only.")
    else:
        message = "must be a SHA-1 or SHA-256 hash: exactly 40 or 64 hexadecimal characters."
    raise InvalidInputError([FieldError(field, message)])


class _UnreadableBodyError(ValueError):
    """The JSON text is refused while it is parsed; `field` names where."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def _refuse_constant(name: str) -> NoReturn:
    raise _UnreadableBodyError(f"is not valid JSON: {name} is not a JSON number")


def _integer(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise _UnreadableBodyError(f"has an integer of {len(digits)} digits; no field takes one that long") from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _UnreadableBodyError("appears more than once in the JSON object", field=f"body.{key}")
        document[key] = value
    return document


class BodyFault(Enum):
    """What is wrong with a body as a whole, when it is not (only) its fields."""

    #: Not UTF-8 JSON at all.
    NOT_JSON = "not-json"
    #: JSON, but not as this API accepts it (duplicate keys, NaN, huge integers, nesting too deep).
    UNACCEPTABLE_JSON = "unacceptable-json"
    #: JSON, but not an object.
    NOT_AN_OBJECT = "not-an-object"


class InputError(Exception):
    """Input refused before anything is sent to Defender; the HTTP edge chooses the answer."""


class InvalidInputError(InputError):
    """Fields (or the body as a whole, `fault`) are invalid; `errors` names each."""

    def __init__(self, errors: list[FieldError], fault: BodyFault | None = None) -> None:
        super().__init__(", ".join(error.field for error in errors))
        self.errors = tuple(errors)
        self.fault = fault


class BodyTooLargeError(InputError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes, at most {limit}")
        self.size = size
        self.limit = limit


class UnsupportedMediaTypeError(InputError):
    def __init__(self, media_type: str) -> None:
        super().__init__(media_type or "none")
        self.media_type = media_type


def parse_json_object(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Check size, content type and JSON syntax; return the object. Any body is an InputError or an object."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLargeError(len(body), MAX_BODY_BYTES)
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (media_type.startswith("application/") and
                                                  media_type.endswith("+json")):
        raise UnsupportedMediaTypeError(media_type)
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, parse_int=_integer,
                              object_pairs_hook=_object_without_duplicates)
    except _UnreadableBodyError as error:
        raise InvalidInputError([FieldError(error.field, str(error))], BodyFault.UNACCEPTABLE_JSON) from None
    except RecursionError:
        raise InvalidInputError([FieldError("body", "is not accepted: its arrays or objects are nested too deeply")],
                           BodyFault.UNACCEPTABLE_JSON) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError([FieldError("body", f"is not valid UTF-8 JSON: {error}")], BodyFault.NOT_JSON) from None
    if not isinstance(document, dict):
        raise InvalidInputError([FieldError("body", "must be a JSON object")], BodyFault.NOT_AN_OBJECT)
    return document


def _ascii_stripped(value: Any) -> str | None:
    """An ASCII string without surrounding JSON whitespace (space, tab, CR, LF); None for anything else.

    str.strip() alone would also remove Unicode spaces (no-break, em, ideographic ...) and the control
    characters 0x1C-0x1F, and str.lower() maps e.g. the Kelvin sign onto 'k': only ASCII may be
    canonicalised into what Defender receives.
    """
    return value.strip(_JSON_WHITESPACE) if isinstance(value, str) and value.isascii() else None


def _event_time(value: Any) -> str | None:
    text = _ascii_stripped(value)
    match = _EVENT_TIME.fullmatch(text) if text is not None else None
    if not match:
        return None
    try:
        datetime.strptime(f"{match['date']}T{match['h']}:{match['m']}:{match['s']}", "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    fraction = f".{match['frac']}" if match["frac"] else ""
    # Keep every digit Defender needs to find the event; only normalise the zone to Z.
    return f"{match['date']}T{match['h']}:{match['m']}:{match['s']}{fraction}Z"


def _report_id(value: Any) -> str | None:
    """Advanced hunting's ReportId, a long: 0..2**63-1 as an integer or a string of ASCII digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 <= value <= MAX_REPORT_ID else None
    text = _ascii_stripped(value)
    if text is None or not _REPORT_ID.fullmatch(text) or int(text) > MAX_REPORT_ID:
        return None
    return text


def _canonical(value: Any, allowed: tuple[str, ...]) -> str | None:
    text = _ascii_stripped(value)
    if text is None:
        return None
    by_lower = {option.lower(): option for option in allowed}
    return by_lower.get(text.lower())


def checked_text(value: Any, limit: int = MAX_TEXT_LENGTH) -> str | None:
    """`value` when it is a string of 1-`limit` characters, not only white space, without the characters
    FORBIDDEN_IN_TEXT names; else None."""
    if (isinstance(value, str) and value.strip() and len(value) <= limit
            and not FORBIDDEN_IN_TEXT.search(value)):
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
    check("reportId", _report_id(document.get("reportId")),
          "must be the event's ReportId from advanced hunting: a non-empty string of ASCII digits or a "
          f"non-negative integer, at most {MAX_REPORT_ID}")
    machine_id = document.get("machineId")
    check("machineId",
          machine_id.lower() if isinstance(machine_id, str) and SHA1_ANY_CASE.fullmatch(machine_id) else None,
          "must be the device id: 40 hexadecimal characters")
    check("severity", _canonical(document.get("severity"), SEVERITIES), "must be one of " + ", ".join(SEVERITIES))
    check("category", _canonical(document.get("category"), CATEGORIES), "must be one of " + ", ".join(CATEGORIES))
    for name in ("title", "description", "recommendedAction"):
        check(name, checked_text(document.get(name)),
              f"must be a non-empty string of at most {MAX_TEXT_LENGTH} characters, without control characters "
              "(tab, CR and LF are fine) or unpaired surrogates")

    if errors:
        raise InvalidInputError(errors)
    return {name: clean[name] for name in CREATE_FIELDS}
