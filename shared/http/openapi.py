"""The gateway's HTTP API as one OpenAPI 2.0 (Swagger) document, built from the code's own facts.

Every name, limit, enum and pattern comes from where the code defines it (shared.defender.facts,
shared.validation, shared.answers.correlation, shared.asynchronous.operations, shared.asynchronous.messages,
shared.answers.problems),
so the document cannot drift from the routes and the validation; tests/unit/test_openapi.py checks the
rest (routes, connector rules, the committed connector files).

    document(auth, host=None, schemes=("https",))   the document for one authentication mode
    served_document(auth, request_url)              what GET /api/openapi.json answers (the caller's host)

The parameters are in shared.http.openapi_parameters, the schemas in shared.http.openapi_schemas; the Power Platform
custom connector built from the document is scripts/connector.py's (only scripts/export_connector.py uses it).

Pure functions: nothing here reads settings, the environment or files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from shared.answers.correlation import CORRELATION_HEADER
from shared.answers.problems import PROBLEM_CONTENT_TYPE
from shared.defender.facts import OPERATION_NAMES, Api
from shared.http.openapi_blocks import (
    CORRELATION_ID_PATTERN,
    HOST_401_MEDIA_TYPE,
    JsonObject,
    ref,
    response_headers,
    unauthorized,
)
from shared.http.openapi_hunting import TENANT_TWINS, hunting_definitions, hunting_operations
from shared.http.openapi_parameters import (
    FUNCTION_KEY_HEADER,
    create_alert_parameters,
    file_alerts_parameters,
    key_parameters,
    operation_parameters,
)
from shared.http.openapi_schemas import (
    FILE_HASH_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    OPERATION_ID_PARAMETER_PATTERN,
    definitions,
)
from shared.http.openapi_tenants import (
    CREATE_TENANT_ALERT_BY_REFERENCE,
    GET_TENANT_FILE_RELATED_ALERTS,
    TENANT_PREFIX,
    tenant_operation,
)
from shared.http.settings import AuthMode
from shared.validation import MAX_BODY_BYTES

__all__ = ["CORRELATION_ID_PATTERN", "FILE_HASH_PATTERN", "FUNCTION_KEY_HEADER", "IDEMPOTENCY_KEY_PATTERN",
           "OPERATION_ID_PARAMETER_PATTERN", "document", "served_document"]

# --- names, defined once ------------------------------------------------------------------------------------------

#: The operationIds are the function names of the blueprints (tests compare them with the registered routes).
GET_FILE_RELATED_ALERTS: Final = OPERATION_NAMES[Api.FILE_ALERTS]
CREATE_ALERT_BY_REFERENCE: Final = OPERATION_NAMES[Api.CREATE_ALERT]
GET_OPERATION: Final = "GetOperation"
GET_HEALTH: Final = "GetHealth"
GET_OPENAPI_DOCUMENT: Final = "GetOpenApiDocument"
GET_OPERATOR_PAGE: Final = "GetOperatorPage"
GET_OPERATOR_STATE: Final = "GetOperatorState"
REDRIVE_POISONED: Final = "RedrivePoisoned"

#: Paths below BASE_PATH, as the routes of the blueprints are (parameter names are the document's own).
FILE_ALERTS_PATH: Final = "/files/{fileHash}/alerts"
CREATE_ALERT_PATH: Final = "/alerts/CreateAlertByReference"
OPERATION_PATH: Final = "/operations/{operationId}"
HEALTH_PATH: Final = "/health"
OPENAPI_PATH: Final = "/openapi.json"
OPERATOR_PATH: Final = "/operator"
OPERATOR_STATE_PATH: Final = "/operator/state"
REDRIVE_PATH: Final = "/operator/redrive"

TITLE: Final = "MDE Alert Gateway"
VERSION: Final = "1.0"
BASE_PATH: Final = "/api"
_ADMIN_KEY: Final = "admin (master) key"
_SECURITY_NAMES: Final[Mapping[AuthMode, str]] = {AuthMode.ENTRA: "oauth2_auth", AuthMode.FUNCTION_KEY: "api_key"}


# --- responses ----------------------------------------------------------------------------------------------------

_PROBLEM_HEADERS = (CORRELATION_HEADER, "Cache-Control", "RateLimit-Policy", "RateLimit")
_WAIT_HEADERS = (*_PROBLEM_HEADERS, "Retry-After")

#: What each error status means for the two Defender operations (and for a replayed operation's answer).
_ERRORS: Final[Mapping[int, tuple[str, tuple[str, ...]]]] = {
    400: ("Invalid input, named field by field in errors (nothing was sent to Defender), or Defender rejected the "
          "request (upstreamError).", _PROBLEM_HEADERS),
    403: ("With Entra ID: the caller's token holds no app role for this call (Alerts.Read, Alerts.Create, "
          "Hunting.Read, Operations.Read, Gateway.Operate), or it is not an allowed application or principal "
          "(caller-not-allowed); nothing was sent to Defender.", _PROBLEM_HEADERS),
    404: ("CreateAlertByReference: Defender found no event with this reportId, eventTime and machineId "
          "(event-not-found).", _PROBLEM_HEADERS),
    413: (f"The body is larger than {MAX_BODY_BYTES} bytes.", _PROBLEM_HEADERS),
    415: ("The body is not application/json.", (*_PROBLEM_HEADERS, "Accept-Post")),
    422: ("The Idempotency-Key was used for a different request (idempotency-key-reuse).", _PROBLEM_HEADERS),
    429: ("The shared budget is spent or Defender is throttling: retry after Retry-After seconds (nothing more was "
          "spent).", _WAIT_HEADERS),
    500: ("The gateway is misconfigured or failed unexpectedly; the correlation id finds the details in its logs.",
          _PROBLEM_HEADERS),
    502: ("Defender (or the gateway's managed identity) failed or answered what it should not; the detail says what "
          "to fix (an identity failure: retry after Retry-After seconds, when the gateway asks its identity again).",
          _WAIT_HEADERS),
    503: ("Defender or the gateway's storage (or, with Entra ID, the token issuer's keys: token-keys-unavailable) is "
          "unavailable: retry after Retry-After seconds.", _WAIT_HEADERS),
    504: ("Defender did not answer in time (or the outcome of a create is unknown).", _PROBLEM_HEADERS),
}


def _error(status: int, description: str | None = None, headers: Sequence[str] | None = None) -> JsonObject:
    meaning, names = _ERRORS[status]
    return {"description": description or meaning, "schema": ref("Problem"),
            "headers": response_headers(*(names if headers is None else headers))}


def _accepted(*, preference: bool) -> JsonObject:
    names = ("Location", "Retry-After", *(("Preference-Applied",) if preference else ()), CORRELATION_HEADER,
             "Cache-Control")
    return {"description": "Accepted: the operation runs in the background. Poll Location (GetOperation) with GET, "
                           "waiting Retry-After seconds, until the answer is not 202: that answer is exactly what the "
                           "synchronous call gives.", "schema": ref("Operation"), "headers": response_headers(*names)}


def _forbidden(auth: AuthMode) -> dict[Any, Any]:
    """With Entra ID, 403 for a caller without the call's app role (or not an allowed one)."""
    return {"403": _error(403, headers=(CORRELATION_HEADER, "Cache-Control"))} if auth is AuthMode.ENTRA else {}


def _call_responses(auth: AuthMode, success: JsonObject, statuses: Iterable[int],
                    described: Mapping[int, str] | None = None) -> JsonObject:
    """A call's answers; `described`: statuses whose meaning for this call differs from _ERRORS'."""
    responses: JsonObject = {"200": success, "202": _accepted(preference=True), **_forbidden(auth)}
    for status in sorted({*statuses, 401}):
        responses[str(status)] = unauthorized(auth) if status == 401 else _error(status, (described or {}).get(status))
    return responses


# --- operations ---------------------------------------------------------------------------------------------------

_JSON_OR_PROBLEM: Final = ["application/json", PROBLEM_CONTENT_TYPE]
#: What the keyed operations answer: JSON, problems, and the host's empty 401 (see HOST_401_MEDIA_TYPE).
_PRODUCES: Final = [*_JSON_OR_PROBLEM, HOST_401_MEDIA_TYPE]
_LONG_RUNNING: Final[JsonObject] = {"x-ms-long-running-operation": True,
                                    "x-ms-long-running-operation-options": {"final-state-via": "location"}}


def _operations(auth: AuthMode) -> JsonObject:
    file_alerts = {
        "operationId": GET_FILE_RELATED_ALERTS,
        "summary": "Get alerts related to a file",
        "description": "Returns Defender for Endpoint's alerts related to a file, by its SHA-1 or SHA-256, within the "
                       "gateway's shared rate limit (Defender allows 100 calls a minute and 1,500 an hour). A repeated "
                       "lookup within the cache time is answered from the shared answer without spending quota.",
        "x-ms-visibility": "important", "produces": _PRODUCES, "parameters": file_alerts_parameters(),
        "responses": _call_responses(auth, {
            "description": "Defender's answer, unchanged: the alerts related to the file (none for an unknown file).",
            "schema": ref("AlertList"),
            "headers": response_headers(CORRELATION_HEADER, "Cache-Control", "Age", "RateLimit-Policy", "RateLimit")},
            (400, 422, 429, 500, 502, 503, 504)),
        **_LONG_RUNNING,
    }
    create_alert = {
        "operationId": CREATE_ALERT_BY_REFERENCE,
        "summary": "Create an alert from an advanced-hunting event",
        "description": "Creates a Defender for Endpoint alert from an event that advanced hunting found (Defender "
                       "merges it into an open alert with the same title on the same device), within the gateway's "
                       "shared rate limit (Defender allows 15 calls a minute).",
        "x-ms-visibility": "important", "consumes": ["application/json"], "produces": _PRODUCES,
        "parameters": create_alert_parameters(),
        "responses": _call_responses(auth, {
            "description": "Defender's answer, unchanged: the alert.", "schema": ref("Alert"),
            "headers": response_headers(CORRELATION_HEADER, "Cache-Control", "RateLimit-Policy", "RateLimit")},
            (400, 404, 413, 415, 422, 429, 500, 502, 503, 504)),
        **_LONG_RUNNING,
    }
    replayed = "the finished operation's answer, exactly as the synchronous call gives it."
    operation = {
        "operationId": GET_OPERATION,
        "summary": "Get an asynchronous operation",
        "description": "The Location a 202 answer gives, which Logic Apps and custom connectors poll: 202 while the "
                       "operation is pending, then exactly the answer the synchronous call gives (the alerts, the "
                       "alert, the hunting results in the shape asked for, or its problem). 404 for an unknown or "
                       "expired operation.",
        "x-ms-visibility": "advanced", "produces": _PRODUCES, "parameters": operation_parameters(),
        "responses": {
            "200": {"description": "Done: " + replayed, "schema": ref("OperationResult"),
                    "headers": response_headers(CORRELATION_HEADER, "Cache-Control", "Age", "RateLimit-Policy",
                                                "RateLimit")},
            "202": _accepted(preference=False),
            "400": _error(400, "Not an operation id (nothing was looked up), or the finished operation's 400.",
                      (CORRELATION_HEADER, "Cache-Control")),
            "401": unauthorized(auth),
            "403": {"description": "With Entra ID: the token holds no Operations.Read (caller-not-allowed), the "
                                   "caller may not act for the operation's tenant (tenant-not-allowed; "
                                   "GATEWAY_TENANT_CALLERS), or the finished operation's 403.",
                    "schema": ref("Problem"), "headers": response_headers(CORRELATION_HEADER, "Cache-Control")},
            "404": _error(404, "No such operation, or it expired (operation-not-found); or the finished create's 404 "
                          "(event-not-found).", (CORRELATION_HEADER, "Cache-Control")),
            **{str(status): _error(status, "Done with a problem: " + replayed) for status in (422, 429, 502, 504)},
            "500": _error(500),
            "503": _error(503, "The operations table is unavailable (retry after Retry-After seconds), or the "
                          "finished operation's 503."),
        },
    }
    health = {
        "operationId": GET_HEALTH,
        "summary": "Get the gateway's health",
        "description": "Reads whether the gateway's storage, queues and identity answer, the request queue's depth, "
                       "and each Defender API's budget left and pending operations. Takes a function key even when "
                       "Entra ID fronts the gateway, and then a token with any of the gateway's app roles.",
        "x-ms-visibility": "advanced", "produces": ["application/json", HOST_401_MEDIA_TYPE],
        "parameters": key_parameters(auth),
        "responses": {
            "200": {"description": "Healthy.", "schema": ref("Health"), "headers": response_headers("Cache-Control")},
            "401": unauthorized(auth, function_key=True), **_forbidden(auth),
            "503": {"description": "Degraded: something the gateway needs does not answer (see the report).",
                    "schema": ref("Health"), "headers": response_headers("Cache-Control")},
        },
    }
    document = {
        "operationId": GET_OPENAPI_DOCUMENT,
        "summary": "Get this OpenAPI document",
        "description": "Returns the gateway's OpenAPI 2.0 document, with the host the request was sent to.",
        "x-ms-visibility": "internal", "produces": ["application/json"], "parameters": [],
        "responses": {"200": {"description": "The OpenAPI 2.0 document.",
                              "schema": {"type": "object", "description": "An OpenAPI 2.0 (Swagger) document."},
                              "headers": response_headers("Cache-Control")}},
    }
    if auth is AuthMode.FUNCTION_KEY:
        document["security"] = []  # anonymous; with Entra ID, App Service authentication still asks for a token
    hunting = hunting_operations(functools.partial(_call_responses, auth), {"produces": _PRODUCES, **_LONG_RUNNING})
    tenant_problem = response_headers(CORRELATION_HEADER, "Cache-Control")
    return {FILE_ALERTS_PATH: {"get": file_alerts}, CREATE_ALERT_PATH: {"post": create_alert}, **hunting,
            OPERATION_PATH: {"get": operation}, HEALTH_PATH: {"get": health}, OPENAPI_PATH: {"get": document},
            TENANT_PREFIX + FILE_ALERTS_PATH: {"get": tenant_operation(
                file_alerts, GET_TENANT_FILE_RELATED_ALERTS, tenant_problem)},
            TENANT_PREFIX + CREATE_ALERT_PATH: {"post": tenant_operation(
                create_alert, CREATE_TENANT_ALERT_BY_REFERENCE, tenant_problem)},
            **{TENANT_PREFIX + path: {"post": tenant_operation(item["post"], TENANT_TWINS[item["post"]["operationId"]],
                                                                 tenant_problem)} for path, item in hunting.items()},
            **_operator_operations(auth)}


#: Where a re-drive's input comes from: an entry of the state's `poisoned` (OpenAPI 3's link object, as `x-links`).
_REDRIVE_LINK: Final[JsonObject] = {"RedrivePoisonedEntry": {
    "operationId": REDRIVE_POISONED, "description": "Re-drive the first poisoned entry the state lists.",
    "requestBody": {"queue": "$response.body#/poisoned/0/queue",
                    "messageId": "$response.body#/poisoned/0/messageId"}}}


def _operator_operations(auth: AuthMode) -> JsonObject:
    """The operator page, its state and the re-drive: the admin (master) key always, and with Entra ID a token with
    Gateway.Operate (internal to connectors)."""
    common = {"x-ms-visibility": "internal", "parameters": key_parameters(auth)}
    page = {"operationId": GET_OPERATOR_PAGE, "summary": "Get the operator page",
            "produces": ["text/html", PROBLEM_CONTENT_TYPE, HOST_401_MEDIA_TYPE],
            "description": "An HTML page of the budgets, queues, poisoned requests and recent operations, refreshed "
                           "every 5 s; open it with ?code=<admin key>.", **common,
            "responses": {"200": {"description": "The page.", "schema": {"type": "string"},
                                  "headers": response_headers("Cache-Control")},
                          "401": unauthorized(auth, function_key=True, key=_ADMIN_KEY), **_forbidden(auth)}}
    state = {"operationId": GET_OPERATOR_STATE, "summary": "Get the operator page's state",
             "description": "The health report, each poison queue's first entries (re-drivable or why not) and the "
                            "operations of the last 15 minutes.",
             "produces": ["application/json", HOST_401_MEDIA_TYPE], **common,
             "responses": {"200": {"description": "Everything read.", "schema": ref("OperatorState"),
                                   "headers": response_headers("Cache-Control"), "x-links": _REDRIVE_LINK},
                           "401": unauthorized(auth, function_key=True, key=_ADMIN_KEY), **_forbidden(auth),
                           "503": {"description": "Degraded: a part could not be read (it is null).",
                                   "schema": ref("OperatorState"), "headers": response_headers("Cache-Control")}}}
    redrive = {"operationId": REDRIVE_POISONED, "summary": "Re-drive a poisoned request",
               "description": "Sends a poisoned request again under its own operation id; a create that was sent to "
                              "Defender at least once never is.", "consumes": ["application/json"],
               "produces": _PRODUCES, **common,
               "parameters": [*key_parameters(auth), {
                   "name": "body", "in": "body", "required": True, "schema": ref("RedriveRequest"),
                   "x-ms-summary": "Poisoned Entry", "description": "The poison queue and message id to re-drive."}],
               "responses": {"200": {"description": "Queued again.", "schema": ref("RedriveResult"),
                                     "headers": response_headers(CORRELATION_HEADER, "Cache-Control")},
                             "400": _error(400, "Not a poison queue's name, or not a message id.",
                                           (CORRELATION_HEADER, "Cache-Control")),
                             "401": unauthorized(auth, function_key=True, key=_ADMIN_KEY),
                             "403": {"description": "With Entra ID: the token holds no Gateway.Operate "
                                                    "(caller-not-allowed), or the caller may not act for the request's "
                                                    "tenant (tenant-not-allowed; GATEWAY_TENANT_CALLERS).",
                                     "schema": ref("Problem"), "headers": response_headers(CORRELATION_HEADER)},
                             **{str(status): _error(status, headers=(CORRELATION_HEADER, "Cache-Control"))
                                for status in (413, 415)},
                             "404": _error(404, "No such entry (re-driven already?).", (CORRELATION_HEADER,)),
                             "409": {"description": "Not re-drivable: see `refusal`.", "schema": ref("Problem"),
                                     "headers": response_headers(CORRELATION_HEADER)},
                             "500": _error(500),
                             "503": _error(503, "The queues or the operations table are unavailable.")}}
    return {OPERATOR_PATH: {"get": page}, OPERATOR_STATE_PATH: {"get": state}, REDRIVE_PATH: {"post": redrive}}


def _security_definitions(auth: AuthMode) -> JsonObject:
    if auth is AuthMode.ENTRA:
        return {_SECURITY_NAMES[auth]: {
            "type": "oauth2", "flow": "accessCode",
            "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
            "tokenUrl": "https://login.microsoftonline.com/common/oauth2/authorize", "scopes": {},
            "description": "Microsoft Entra ID: a token for the gateway's audience holding the app role of the call "
                           "(Alerts.Read, Alerts.Create, Hunting.Read, Operations.Read, Gateway.Operate)."}}
    return {_SECURITY_NAMES[auth]: {
        "type": "apiKey", "in": "header", "name": FUNCTION_KEY_HEADER,
        "description": "A function key of the function app."}}


def document(auth: AuthMode, host: str | None = None, schemes: Sequence[str] = ("https",)) -> JsonObject:
    """The OpenAPI 2.0 document of every public operation, for gateways running with `auth` (GATEWAY_AUTH).

    `host` None leaves it out (clients use the host they fetched the document from).
    """
    spec: JsonObject = {
        "swagger": "2.0",
        "info": {
            "title": TITLE, "version": VERSION,
            "description": "A safe, shared front door to Microsoft Defender for Endpoint's file-alerts and "
                           "create-alert APIs and to advanced hunting (through Microsoft Graph): validated input, one "
                           "rate-limit budget shared by every caller, asynchronous operations and RFC 9457 problem "
                           "details.",
        },
    }
    if host:
        spec["host"] = host
    spec.update({
        "basePath": BASE_PATH, "schemes": list(schemes), "consumes": ["application/json"],
        "produces": _JSON_OR_PROBLEM, "paths": _operations(auth),
        "definitions": {**definitions(), **hunting_definitions()},
        "securityDefinitions": _security_definitions(auth), "security": [{_SECURITY_NAMES[auth]: []}],
        "tags": [],
        "x-ms-connector-metadata": [{"propertyName": "Categories", "propertyValue": "Security;IT Operations"}],
    })
    return spec


_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?", re.ASCII)


def served_document(auth: AuthMode, request_url: str) -> JsonObject:
    """What GET /api/openapi.json answers: the document for `auth`, with the host and scheme of the request (the
    host left out when it is not a plain host name, so nothing odd a client sent is echoed)."""
    try:
        parts = urlsplit(request_url)
    except ValueError:
        return document(auth)
    scheme = parts.scheme.lower()
    host = parts.netloc if _HOST.fullmatch(parts.netloc) else None
    return document(auth, host, [scheme] if scheme in ("http", "https") else ["https"])
