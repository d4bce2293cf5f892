"""The request parameters of the OpenAPI document: the Defender operations' (path, body, and the headers that ask
for an operation, a fresh answer or a correlation id), GetOperation's, and the key the operator's routes take."""

from __future__ import annotations

from typing import Any, Final

from shared.answers.correlation import CORRELATION_HEADER
from shared.http.openapi_blocks import JsonObject, ref
from shared.http.openapi_schemas import FILE_HASH_PATTERN, IDEMPOTENCY_KEY_PATTERN, OPERATION_ID_PARAMETER_PATTERN
from shared.http.settings import AuthMode
from shared.validation import MAX_BODY_BYTES

FUNCTION_KEY_HEADER: Final = "x-functions-key"


def _header(name: str, summary: str, description: str, *, visibility: str = "advanced", required: bool = False,
            example: str | None = None, **extra: Any) -> JsonObject:
    """A string header parameter; `example` is its `x-example` (what a tester driven by the document sends)."""
    return {"name": name, "in": "header", "required": required, "type": "string", "x-ms-summary": summary,
            "description": description, "x-ms-visibility": visibility, **extra,
            **({"x-example": example} if example is not None else {})}


def _correlation_parameter() -> JsonObject:
    # Any value is taken: a well-formed one is kept, another replaced (never refused: the id serves tracing, and a
    # caller's odd id must not fail its call). So the parameter has no pattern; the answer's header has.
    return _header(CORRELATION_HEADER, "Correlation ID",
                   "Your id for this request (8-128 of A-Z a-z 0-9 . _ : -): kept in the answer, sent to Defender as "
                   "client-request-id and written in every log line. Any other value (empty, too long, another "
                   "character) is replaced by a new id, which the answer's X-Correlation-ID gives.",
                   example="playbook-run-0001")


def _async_parameters() -> list[JsonObject]:
    return [
        # RFC 7240: preferences the server does not know are ignored, never refused; so no enum.
        _header("Prefer", "Prefer", "respond-async: answer 202 Accepted at once with a Location to poll "
                "(GetOperation), and run the call in the background within the shared rate limit. Other "
                "preferences (RFC 7240) are ignored, as is an empty value.", example="respond-async"),
        _header("Idempotency-Key", "Idempotency Key",
                "Your key for this request (1-255 printable ASCII characters): a repeat with the same key and the "
                "same request gets the same operation and its answer, and spends no Defender quota; the same key "
                "with another request is refused (422 idempotency-key-reuse).", pattern=IDEMPOTENCY_KEY_PATTERN,
                minLength=1, maxLength=255),
        _correlation_parameter(),
    ]


def file_alerts_parameters() -> list[JsonObject]:
    return [
        {"name": "fileHash", "in": "path", "required": True, "type": "string", "x-ms-summary": "File Hash",
         "description": "SHA-1 (40 hexadecimal characters) or SHA-256 (64) of the file, any letter case; a SHA-256 "
                        "is resolved to the file's SHA-1 through Defender's file information API. MD5 is refused.",
         "pattern": FILE_HASH_PATTERN, "x-ms-visibility": "important",
         "x-example": "6532ec91d513acc05f43ee0aa3002599729fd3e1"},
        # RFC 9111: directives a cache does not know are ignored, never refused; so no enum.
        _header("Cache-Control", "Cache Control", "no-cache (or no-store, max-age=0): ask Defender even if the "
                "gateway holds a recent shared answer for this file (and refresh that answer). Other directives are "
                "ignored, as is an empty value.", example="no-cache"),
        *_async_parameters(),
    ]


def create_alert_parameters() -> list[JsonObject]:
    return [
        {"name": "body", "in": "body", "required": True, "x-ms-summary": "Alert Reference",
         "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes (Content-Type: application/json).",
         "schema": ref("CreateAlertRequest")},
        *_async_parameters(),
    ]


def hunting_parameters(definition: str) -> list[JsonObject]:
    """A hunting operation's: its body (the definition `definition`), and the headers that ask for an operation."""
    return [
        {"name": "body", "in": "body", "required": True, "x-ms-summary": "Hunting Query",
         "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes (Content-Type: application/json).",
         "schema": ref(definition)},
        *_async_parameters(),
    ]


def operation_parameters() -> list[JsonObject]:
    return [
        {"name": "operationId", "in": "path", "required": True, "type": "string", "x-ms-summary": "Operation ID",
         "description": "The operation's id: the last segment of the Location a 202 answer gave.",
         "pattern": OPERATION_ID_PARAMETER_PATTERN, "minLength": 1, "maxLength": 128, "x-ms-visibility": "important"},
        _correlation_parameter(),
    ]


def key_parameters(auth: AuthMode) -> list[JsonObject]:
    if auth is AuthMode.FUNCTION_KEY:
        return []  # the connection's key is the function key
    return [_header(FUNCTION_KEY_HEADER, "Function Key", "A key of the gateway (health: a function key; the operator's "
                    "routes: the admin key), even when Entra ID fronts it.", visibility="important", required=True)]
