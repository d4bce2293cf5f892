"""The building blocks of the OpenAPI document's schemas, as the Power Platform connector rules want them: every
property with a Title Case `x-ms-summary` and a description, `x-nullable` where null may come."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.answers.correlation import CORRELATION_HEADER, CORRELATION_ID_FORMAT
from shared.http.settings import AuthMode

JsonObject = dict[str, Any]

#: Every correlation id the gateway answers with: the caller's when well formed, else a new one (a UUID matches).
CORRELATION_ID_PATTERN: Final = f"^{CORRELATION_ID_FORMAT.pattern}$"
#: The media type of the host's (or the platform's) empty 401 as the local host gives it; Azure's host gives none.
#: Swagger 2.0 names media types per operation, not per answer, so each keyed operation lists it in `produces`.
HOST_401_MEDIA_TYPE: Final = "text/plain"


def prop(summary: str, description: str, kind: str = "string", *, nullable: bool = False,
           **extra: Any) -> JsonObject:
    """A property: its type (`date-time`, `int64` and `int32` are strings with a format / integers), Title Case
    summary and description, `x-nullable` when Defender may send null."""
    formats = {"date-time": ("string", "date-time"), "int64": ("integer", "int64"), "int32": ("integer", "int32")}
    type_, format_ = formats.get(kind, (kind, None))
    schema: JsonObject = {"type": type_}
    if format_:
        schema["format"] = format_
    schema.update({"x-ms-summary": summary, "description": description})
    if nullable:
        schema["x-nullable"] = True
    schema.update(extra)
    return schema


def obj(summary: str, description: str, properties: Mapping[str, JsonObject], *,
            required: Sequence[str] = (), nullable: bool = False, **extra: Any) -> JsonObject:
    schema = prop(summary, description, "object", nullable=nullable, **extra)
    schema["properties"] = dict(properties)
    if required:
        schema["required"] = list(required)
    return schema


def array(summary: str, description: str, items: JsonObject, *, nullable: bool = False) -> JsonObject:
    return prop(summary, description, "array", nullable=nullable, items=items)


def ref(definition: str) -> JsonObject:
    return {"$ref": f"#/definitions/{definition}"}


def bare(schema: JsonObject) -> JsonObject:
    """A schema as a definition or array item: no entity title of its own (the property holding it has one)."""
    return {key: value for key, value in schema.items() if key != "x-ms-summary"}


# --- response headers -----------------------------------------------------------------------------------------------

def _h(summary: str, description: str, kind: str = "string", **extra: Any) -> JsonObject:
    return {"type": kind, "x-ms-summary": summary, "description": description, **extra}


#: Every response header the document names, defined once.
RESPONSE_HEADERS: Final[Mapping[str, JsonObject]] = {
    CORRELATION_HEADER: _h("Correlation ID", "The request's correlation id: yours if well formed (8-128 of A-Z a-z "
                           "0-9 . _ : -), else a new one.", pattern=CORRELATION_ID_PATTERN),
    "Cache-Control": _h("Cache Control", "no-store, or private, max-age=<seconds> on a file-alerts answer the "
                        "gateway's shared answer cache may reuse."),
    "Age": _h("Age", "Seconds since the answer came from Defender (0: just now).", "integer", minimum=0),
    "RateLimit-Policy": _h("Rate Limit Policy", "Each window of the API's shared budget, e.g. "
                           '"60s";q=100;w=60, "3600s";q=1500;w=3600.'),
    "RateLimit": _h("Rate Limit", 'The most constrained window after this call, e.g. "60s";r=42;t=17.'),
    "Retry-After": _h("Retry After", "Seconds to wait before trying again (or polling).", "integer", minimum=0),
    "Location": _h("Location", "Absolute URL of the operation (GetOperation): poll it with GET, waiting Retry-After "
                   "seconds, until the answer is not 202.", format="uri"),
    "Preference-Applied": _h("Preference Applied", "respond-async when the 202 answers Prefer: respond-async."),
    "Accept-Post": _h("Accept Post", "The media type the body must have: application/json."),
    "WWW-Authenticate": _h("WWW Authenticate", "Bearer: sign in through Entra ID."),
}


def response_headers(*names: str) -> JsonObject:
    """The documented response headers `names`, each a fresh copy."""
    return {name: dict(RESPONSE_HEADERS[name]) for name in names}


def unauthorized(auth: AuthMode, *, function_key: bool = False, key: str = "function key") -> JsonObject:
    """401: the host's (no or a wrong key: an empty body), or with Entra ID the platform's or the gateway's."""
    empty = (f"with an empty body and no {CORRELATION_HEADER} (Azure's host sends no Content-Type; the local host "
             f"{HOST_401_MEDIA_TYPE})")
    if auth is AuthMode.FUNCTION_KEY or function_key:
        return {"description": f"No or a wrong {key}: the Functions host answers, {empty}"
                               + ("; or no valid Entra ID token." if auth is AuthMode.ENTRA else ".")}
    return {"description": f"No valid Entra ID token: App Service authentication answers, {empty}, or the "
                           "gateway, which validates the token itself (a problem, unauthenticated).",
            "schema": ref("Problem"),
            "headers": response_headers(CORRELATION_HEADER, "Cache-Control", "WWW-Authenticate")}
