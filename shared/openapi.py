"""The gateway's HTTP API as one OpenAPI 2.0 (Swagger) document, built from the code's own facts.

Every name, limit, enum and pattern comes from where the code defines it (shared.defender,
shared.validation, shared.correlation, shared.operations, shared.queue_messages, shared.problems),
so the document cannot drift from the routes and the validation; tests/test_openapi.py checks the
rest (routes, connector rules, the committed connector files).

    document(auth, host=None, schemes=("https",))   the document for one authentication mode
    served_document(auth, request_url)              what GET /api/openapi.json answers (the caller's host)
    api_properties(auth, client_id="", resource_uri=None)
                                                     a Power Platform custom connector's apiProperties.json
    connector_files(client_id="", resource_uri=None) every file of connector/, as text (path -> JSON)
    render(document)                                 the JSON text of a document (stable: the drift check)

Pure functions: nothing here reads settings, the environment or files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from shared.correlation import _SAFE as _CORRELATION_ID
from shared.correlation import CORRELATION_HEADER
from shared.defender import CATEGORIES, CREATE_FIELDS, SEVERITIES, Api
from shared.operations import OPERATION_ID_PATTERN, State
from shared.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from shared.queue_messages import OPERATION_NAMES
from shared.settings import AuthMode
from shared.validation import _FORBIDDEN_IN_TEXT, _HEX, MAX_BODY_BYTES, MAX_REPORT_ID, MAX_TEXT_LENGTH

JsonObject = dict[str, Any]

# --- names, defined once ------------------------------------------------------------------------------------------

#: The operationIds are the function names of the blueprints (tests compare them with the registered routes).
GET_FILE_RELATED_ALERTS: Final = OPERATION_NAMES[Api.FILE_ALERTS]
CREATE_ALERT_BY_REFERENCE: Final = OPERATION_NAMES[Api.CREATE_ALERT]
GET_OPERATION: Final = "GetOperation"
GET_HEALTH: Final = "GetHealth"
GET_OPENAPI_DOCUMENT: Final = "GetOpenApiDocument"

#: Paths below BASE_PATH, as the routes of the blueprints are (parameter names are the document's own).
FILE_ALERTS_PATH: Final = "/files/{fileHash}/alerts"
CREATE_ALERT_PATH: Final = "/alerts/CreateAlertByReference"
OPERATION_PATH: Final = "/operations/{operationId}"
HEALTH_PATH: Final = "/health"
OPENAPI_PATH: Final = "/openapi.json"

TITLE: Final = "MDE Alert Gateway"
VERSION: Final = "1.0"
BASE_PATH: Final = "/api"
#: The connector's host: a placeholder that can never resolve (RFC 6761 `.invalid`), which whoever imports the
#: connector replaces with the function app's host name (General tab, or `--host` of the export script).
CONNECTOR_HOST: Final = "function-app-hostname.invalid"
#: Power Platform's name for the OAuth connection parameter; its user-filled resource goes in `token:ResourceUri`.
OAUTH_PARAMETER: Final = "token"
RESOURCE_URI_PARAMETER: Final = "token:ResourceUri"
API_KEY_PARAMETER: Final = "api_key"
FUNCTION_KEY_HEADER: Final = "x-functions-key"
#: The Power Platform consent redirect every connector with the global redirect uses.
CONSENT_REDIRECT_URL: Final = "https://global.consent.azure-apim.net/redirect"
#: The connector variants: directory below connector/ (empty: the top) -> authentication mode.
CONNECTOR_VARIANTS: Final[Mapping[str, AuthMode]] = {"": AuthMode.ENTRA, "api-key": AuthMode.FUNCTION_KEY}
DEFINITION_FILE: Final = "apiDefinition.swagger.json"
PROPERTIES_FILE: Final = "apiProperties.json"

_SECURITY_NAMES: Final[Mapping[AuthMode, str]] = {AuthMode.ENTRA: "oauth2_auth", AuthMode.FUNCTION_KEY: "api_key"}

# --- patterns: the validation's own rules, as anchored JSON-schema patterns (ECMA 262 and Python read them alike) --

_HEX_DIGIT = _HEX.pattern.removesuffix("+")  # "[0-9a-fA-F]", the validator's character class
SHA1_PATTERN: Final = f"^{_HEX_DIGIT}{{40}}$"
FILE_HASH_PATTERN: Final = f"^(?:{_HEX_DIGIT}{{40}}|{_HEX_DIGIT}{{64}})$"
MACHINE_ID_PATTERN: Final = SHA1_PATTERN
#: The UTC form advanced hunting gives (the validator also reads a +00:00 zone and lower case; documented: Z).
#: Years 0001-9999 (datetime's); months, days, hours, minutes and seconds in range (a 31st in a short month still
#: passes the pattern and is refused by the validator).
EVENT_TIME_PATTERN: Final = (r"^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])"
                             r"-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,7})?Z$")
#: The validator's class of characters refused in text, unbracketed, without its range of (unpaired) surrogates:
#: JSON-schema tools cannot generate or match lone surrogates, so the document says it in words instead.
_FORBIDDEN = _FORBIDDEN_IN_TEXT.pattern[1:-1].replace(r"\ud800-\udfff", "")
#: Non-empty, not only white space, without the characters the validator refuses.
TEXT_PATTERN: Final = f"^[^{_FORBIDDEN}]*[^\\s{_FORBIDDEN}][^{_FORBIDDEN}]*$"
CORRELATION_ID_PATTERN: Final = f"^{_CORRELATION_ID.pattern}$"
#: 1-255 printable ASCII characters, without surrounding spaces (a header value loses those anyway).
IDEMPOTENCY_KEY_PATTERN: Final = r"^[\x21-\x7E](?:[\x20-\x7E]{0,253}[\x21-\x7E])?$"
OPERATION_ID_PARAMETER_PATTERN: Final = f"^{OPERATION_ID_PATTERN}$"


def at_most_pattern(maximum: int) -> str:
    """A pattern for the strings of ASCII digits (leading zeros allowed, at most as many digits as `maximum` has)
    whose value is at most `maximum`: a string parameter documented as exactly as the validator reads it."""
    digits = str(maximum)
    width = len(digits)
    alternatives = [f"[0-9]{{1,{width - 1}}}"] if width > 1 else []
    for position, digit in enumerate(digits):
        if digit == "0":
            continue
        lower = "0" if digit == "1" else f"[0-{int(digit) - 1}]"
        rest = width - position - 1
        alternatives.append(digits[:position] + lower + ("" if rest == 0 else "[0-9]" if rest == 1
                                                          else f"[0-9]{{{rest}}}"))
    alternatives.append(digits)
    return "^(?:" + "|".join(alternatives) + ")$"


REPORT_ID_PATTERN: Final = at_most_pattern(MAX_REPORT_ID)

if not re.fullmatch(r"[a-z:-]+", PROBLEM_TYPE_BASE):  # it is used literally in a pattern below
    raise ValueError(f"PROBLEM_TYPE_BASE {PROBLEM_TYPE_BASE!r} needs escaping in PROBLEM_TYPE_PATTERN")
PROBLEM_TYPE_PATTERN: Final = f"^{PROBLEM_TYPE_BASE}[a-z0-9-]+$"

# --- schema building blocks ---------------------------------------------------------------------------------------


def _field(summary: str, description: str, kind: str = "string", *, nullable: bool = False,
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


def _object(summary: str, description: str, properties: Mapping[str, JsonObject], *,
            required: Sequence[str] = (), nullable: bool = False, **extra: Any) -> JsonObject:
    schema = _field(summary, description, "object", nullable=nullable, **extra)
    schema["properties"] = dict(properties)
    if required:
        schema["required"] = list(required)
    return schema


def _array(summary: str, description: str, items: JsonObject, *, nullable: bool = False) -> JsonObject:
    return _field(summary, description, "array", nullable=nullable, items=items)


def _ref(definition: str) -> JsonObject:
    return {"$ref": f"#/definitions/{definition}"}


def _bare(schema: JsonObject) -> JsonObject:
    """A schema as a definition or array item: no entity title of its own (the property holding it has one)."""
    return {key: value for key, value in schema.items() if key != "x-ms-summary"}


# --- Defender's alert entity (shared/reference/defender-api.md, localdev/simulator/sample_alert.json) -------------

_EVIDENCE = _object("Evidence", "One entity the alert is about (a file, process, IP address, user ...).", {
    "entityType": _field("Entity Type", "Kind of entity: File, Process, User, Ip, Url, Registry, ..."),
    "evidenceCreationTime": _field("Evidence Creation Time", "When the evidence was added (UTC).", "date-time",
                                   nullable=True),
    "sha1": _field("SHA-1", "SHA-1 of the file.", nullable=True),
    "sha256": _field("SHA-256", "SHA-256 of the file.", nullable=True),
    "fileName": _field("File Name", "Name of the file.", nullable=True),
    "filePath": _field("File Path", "Folder of the file.", nullable=True),
    "processId": _field("Process ID", "Id of the process.", "int64", nullable=True),
    "processCommandLine": _field("Process Command Line", "Command line of the process.", nullable=True),
    "processCreationTime": _field("Process Creation Time", "When the process started (UTC).", "date-time",
                                  nullable=True),
    "parentProcessId": _field("Parent Process ID", "Id of the parent process.", "int64", nullable=True),
    "parentProcessCreationTime": _field("Parent Process Creation Time", "When the parent process started (UTC).",
                                        "date-time", nullable=True),
    "parentProcessFileName": _field("Parent Process File Name", "File name of the parent process.", nullable=True),
    "parentProcessFilePath": _field("Parent Process File Path", "Folder of the parent process's file.",
                                    nullable=True),
    "ipAddress": _field("IP Address", "IP address.", nullable=True),
    "url": _field("URL", "URL.", nullable=True),
    "registryKey": _field("Registry Key", "Registry key.", nullable=True),
    "registryHive": _field("Registry Hive", "Registry hive.", nullable=True),
    "registryValueType": _field("Registry Value Type", "Type of the registry value.", nullable=True),
    "registryValue": _field("Registry Value", "Registry value.", nullable=True),
    "accountName": _field("Account Name", "Account name.", nullable=True),
    "domainName": _field("Domain Name", "Domain of the account.", nullable=True),
    "userSid": _field("User SID", "Security identifier of the user.", nullable=True),
    "aadUserId": _field("Entra User ID", "Microsoft Entra ID object id of the user.", nullable=True),
    "userPrincipalName": _field("User Principal Name", "User principal name.", nullable=True),
    "detectionStatus": _field("Detection Status", "Detected, Blocked or Prevented.", nullable=True),
})

_ALERT_PROPERTIES: Final[Mapping[str, JsonObject]] = {
    "id": _field("Alert ID", "Identifier of the alert, e.g. da637472900382838869_1364969609."),
    "incidentId": _field("Incident ID", "Identifier of the incident the alert belongs to.", "int64", nullable=True),
    "investigationId": _field("Investigation ID", "Identifier of the automated investigation.", "int64",
                              nullable=True),
    "assignedTo": _field("Assigned To", "Owner of the alert.", nullable=True),
    "severity": _field("Severity", "UnSpecified, Informational, Low, Medium or High."),
    "status": _field("Status", "Unknown, New, InProgress or Resolved.", nullable=True),
    "classification": _field("Classification", "Unknown, FalsePositive or TruePositive.", nullable=True),
    "determination": _field("Determination", "What the alert turned out to be (e.g. Malware, SecurityTesting).",
                            nullable=True),
    "investigationState": _field("Investigation State", "State of the automated investigation.", nullable=True),
    "detectionSource": _field("Detection Source", "What detected it (e.g. WindowsDefenderAtp, CustomerTI).",
                              nullable=True),
    "detectorId": _field("Detector ID", "Identifier of the detector that raised the alert.", nullable=True),
    "category": _field("Category", "Category of the alert (e.g. Execution, Malware).", nullable=True),
    "threatFamilyName": _field("Threat Family Name", "Threat family.", nullable=True),
    "title": _field("Title", "Title of the alert."),
    "description": _field("Description", "Description of the alert.", nullable=True),
    "alertCreationTime": _field("Alert Creation Time", "When the alert was created (UTC).", "date-time",
                                nullable=True),
    "firstEventTime": _field("First Event Time", "First event behind the alert, on the device (UTC).", "date-time",
                             nullable=True),
    "lastEventTime": _field("Last Event Time", "Last event behind the alert, on the device (UTC).", "date-time",
                            nullable=True),
    "lastUpdateTime": _field("Last Update Time", "When the alert last changed (UTC).", "date-time", nullable=True),
    "resolvedTime": _field("Resolved Time", "When the alert was resolved (UTC).", "date-time", nullable=True),
    "machineId": _field("Machine ID", "Id of the device the alert is about.", nullable=True),
    "computerDnsName": _field("Computer DNS Name", "Fully qualified name of the device.", nullable=True),
    "rbacGroupName": _field("RBAC Group Name", "Device group of the device.", nullable=True),
    "aadTenantId": _field("Entra Tenant ID", "Microsoft Entra ID tenant of the alert.", nullable=True),
    "threatName": _field("Threat Name", "Name of the threat.", nullable=True),
    "mitreTechniques": _array("MITRE Techniques", "MITRE ATT&CK technique ids (e.g. T1059.001).",
                              {"type": "string", "description": "A MITRE ATT&CK technique id."}, nullable=True),
    "relatedUser": _object("Related User", "The user the alert is about.", {
        "userName": _field("User Name", "Name of the user.", nullable=True),
        "domainName": _field("Domain Name", "Domain of the user.", nullable=True),
    }, nullable=True),
    "comments": _array("Comments", "Comments on the alert.", _bare(_object("Comment", "A comment on the alert.", {
        "comment": _field("Comment", "Text of the comment.", nullable=True),
        "createdBy": _field("Created By", "Who wrote the comment.", nullable=True),
        "createdTime": _field("Created Time", "When the comment was written (UTC).", "date-time", nullable=True),
    })), nullable=True),
    "evidence": _array("Evidence", "The entities the alert is about.", _bare(_EVIDENCE), nullable=True),
}
_ODATA_CONTEXT = _field("OData Context", "OData context of Defender's answer.")


def _alert() -> JsonObject:
    return _bare(_object("Alert", "An alert as Defender for Endpoint returns it (its alert entity).",
                         {"@odata.context": _ODATA_CONTEXT, **_ALERT_PROPERTIES}, required=["id"]))


def _alert_list() -> JsonObject:
    return _bare(_object("Alerts", "The alerts related to the file, as Defender for Endpoint returns them.", {
        "@odata.context": _ODATA_CONTEXT,
        "value": _array("Alerts", "The alerts related to the file (none for an unknown file).", _ref("Alert")),
    }, required=["value"]))


def _operation_result() -> JsonObject:
    """Swagger 2.0 has no oneOf: the alert and the alerts list as one object schema with neither's required
    properties, so each validates against it."""
    return _bare(_object(
        "Operation Result",
        "The finished operation's answer, exactly as the synchronous call gives it: the alerts list (`value`) for "
        "GetFileRelatedAlerts, the alert for CreateAlertByReference.",
        {"@odata.context": _ODATA_CONTEXT,
         "value": _array("Alerts", "GetFileRelatedAlerts: the alerts related to the file.", _ref("Alert")),
         **_ALERT_PROPERTIES}))


# --- the gateway's own shapes -------------------------------------------------------------------------------------

def _create_alert_request() -> JsonObject:
    properties: dict[str, JsonObject] = {
        "eventTime": _field("Event Time", "Time of the advanced-hunting event with all its digits, in UTC, e.g. "
                            "2018-08-03T16:45:21.7115183Z (up to 7 fractional digits; all are kept).",
                            pattern=EVENT_TIME_PATTERN, example="2018-08-03T16:45:21.7115183Z"),
        "reportId": _field("Report ID", "ReportId of the advanced-hunting event: its digits, at most "
                           f"{MAX_REPORT_ID} (a JSON integer is accepted too).", pattern=REPORT_ID_PATTERN,
                           example="20776"),
        "machineId": _field("Machine ID", "DeviceId of the event: 40 hexadecimal characters.",
                            pattern=MACHINE_ID_PATTERN, example="1e5bc9d7e413ddd7902c2932e418702b84d0cc07"),
        "severity": _field("Severity", "Severity of the new alert (any letter case is accepted).",
                           enum=list(SEVERITIES), example=SEVERITIES[0]),
        "category": _field("Category", "Category of the new alert (any letter case is accepted).",
                           enum=list(CATEGORIES), example="Exploit"),
    }
    for name, summary, meaning in (("title", "Title", "Title of the new alert"),
                                   ("description", "Description", "Description of the new alert"),
                                   ("recommendedAction", "Recommended Action", "What the analyst should do")):
        properties[name] = _field(summary, f"{meaning}: at most {MAX_TEXT_LENGTH} characters, not only white space, "
                                  "without control characters (tab, CR and LF are fine) or unpaired surrogates.",
                                  minLength=1, maxLength=MAX_TEXT_LENGTH, pattern=TEXT_PATTERN)
    missing, extra = set(CREATE_FIELDS) - set(properties), set(properties) - set(CREATE_FIELDS)
    if missing or extra:  # a field added to (or dropped from) CREATE_FIELDS must be documented here first
        raise ValueError(f"CreateAlertByReference fields not documented: {sorted(missing)}; unknown: {sorted(extra)}")
    for schema in properties.values():
        schema["x-ms-visibility"] = "important"
    return _bare(_object(
        "Alert Reference",
        "The advanced-hunting event to raise an alert from (eventTime, reportId and machineId from the same row) "
        "and the new alert's fields: exactly these 8, all required, names case-sensitive.",
        {name: properties[name] for name in CREATE_FIELDS}, required=list(CREATE_FIELDS),
        additionalProperties=False))


def _operation() -> JsonObject:
    return _bare(_object("Operation", "An asynchronous operation that is still running.", {
        "id": _field("Operation ID", "Identifier of the operation (the last segment of Location).",
                     pattern=OPERATION_ID_PARAMETER_PATTERN),
        "status": _field("Status", "Always pending: a finished operation answers with its result instead.",
                         enum=[State.PENDING.value]),
        "operation": _field("Operation", "What the operation does.", enum=sorted(OPERATION_NAMES.values())),
        "createdAt": _field("Created At", "When the gateway accepted it (UTC).", "date-time"),
        "attempts": _field("Attempts", "Requests sent to Defender for it so far.", "int32", minimum=0),
    }, required=["id", "status", "operation", "createdAt", "attempts"]))


def _problem() -> JsonObject:
    return _bare(_object("Problem", "An error answer of the gateway: RFC 9457 problem details.", {
        "type": _field("Type", f"What went wrong, as {PROBLEM_TYPE_BASE}<kind>, e.g. {PROBLEM_TYPE_BASE}"
                       "validation-error.", pattern=PROBLEM_TYPE_PATTERN),
        "title": _field("Title", "Short summary of the problem kind."),
        "status": _field("Status", "The HTTP status code.", "int32", minimum=100, maximum=599),
        "detail": _field("Detail", "What happened in this case, and what to do about it."),
        "errors": _array("Errors", "Each invalid input field (validation errors only).", _bare(_object(
            "Field Error", "One invalid input field.", {
                "field": _field("Field", "Where the field is, e.g. body.severity or route.fileHash."),
                "message": _field("Message", "What is wrong with it."),
            }, required=["field", "message"]))),
        "correlationId": _field("Correlation ID", f"The request's correlation id (also in {CORRELATION_HEADER}).",
                                pattern=CORRELATION_ID_PATTERN),
        "upstreamError": _object("Upstream Error", "Defender for Endpoint's own error, when it gave one.", {
            "code": _field("Code", "Defender's error code, e.g. InvalidInput."),
            "message": _field("Message", "Defender's error message."),
            "target": _field("Target", "Defender's request id for the failed call."),
        }),
    }, required=["type", "title", "status", "detail"]))


def _health() -> JsonObject:
    window = _bare(_object("Window", "One rate-limit window of the API.", {
        "limit": _field("Limit", "Calls the window allows.", "int32", minimum=0),
        "windowSeconds": _field("Window Seconds", "Length of the window.", "int32", minimum=0),
        "remaining": _field("Remaining", "Calls the window admits now.", "int32", minimum=0),
        "resetSeconds": _field("Reset Seconds", "Seconds until its oldest call leaves the window.", "int32",
                               minimum=0),
    }, required=["limit", "windowSeconds", "remaining", "resetSeconds"]))

    def queue(title: str, description: str) -> JsonObject:
        return _object(title, description, {
            "name": _field("Name", "Name of the queue."),
            "depth": _field("Depth", "Messages waiting (null: unreadable).", "int32", nullable=True, minimum=0),
            "poisonDepth": _field("Poison Depth", "Messages in its poison queue (null: unreadable).", "int32",
                                  nullable=True, minimum=0),
        }, required=["name", "depth", "poisonDepth"])

    apis = {api.value: _object(f"{api.value.replace('_', ' ').title()} API",
                               f"The Defender API {api.value} (a rate-limit budget of its own).", {
        "admitsNow": _field("Admits Now", "Whether a call would be admitted now (absent when the identity gives no "
                            "token).", "boolean"),
        "retryAfter": _field("Retry After", "Seconds until a call would be admitted (0: now).", "int32", minimum=0),
        "windows": _array("Windows", "Budget left in each window.", window),
        "pendingOperations": _field("Pending Operations", "Asynchronous operations waiting for this API.", "int32",
                                    minimum=0),
        "oldestPendingAgeSeconds": _field("Oldest Pending Age Seconds", "Age of the oldest pending operation (null: "
                                          "none pending).", "int32", nullable=True, minimum=0),
        "waitingQueue": queue("Waiting Queue", "Where requests wait for this API's budget to free."),
    }, required=["pendingOperations", "oldestPendingAgeSeconds", "waitingQueue"]) for api in Api}
    return _bare(_object("Health", "What an operator needs to see: storage, queue, and each Defender API's budget.", {
        "status": _field("Status", "healthy when storage, queues and the identity answer; degraded otherwise.",
                         enum=["healthy", "degraded"]),
        "checkedAt": _field("Checked At", "When this was measured (UTC).", "date-time"),
        "storage": _object("Storage", "Whether the gateway's storage answers.", {
            "tables": _field("Tables", "The rate-limit, answer and operations tables answer.", "boolean"),
            "queues": _field("Queues", "Every queue of the gateway and its poison queue answer.", "boolean"),
        }, required=["tables", "queues"]),
        "identity": _field("Identity", "The managed identity gives a token for Defender.", "boolean"),
        "queue": queue("Queue", "The request queue of asynchronous operations; its poison queue holds the "
                       "requests that failed for good, with their reason."),
        "apis": _object("APIs", "Each Defender API behind the gateway, by the name its rate-limit state has.", apis),
    }, required=["status", "checkedAt", "storage", "queue", "apis"]))


def _definitions() -> JsonObject:
    return {"Alert": _alert(), "AlertList": _alert_list(), "OperationResult": _operation_result(),
            "CreateAlertRequest": _create_alert_request(), "Operation": _operation(), "Problem": _problem(),
            "Health": _health()}


# --- parameters ---------------------------------------------------------------------------------------------------

def _header(name: str, summary: str, description: str, *, visibility: str = "advanced", required: bool = False,
            **extra: Any) -> JsonObject:
    return {"name": name, "in": "header", "required": required, "type": "string", "x-ms-summary": summary,
            "description": description, "x-ms-visibility": visibility, **extra}


def _correlation_parameter() -> JsonObject:
    return _header(CORRELATION_HEADER, "Correlation ID",
                   "Your id for this request (8-128 of A-Z a-z 0-9 . _ : -): kept in the answer, sent to Defender as "
                   "client-request-id and written in every log line. Another value is replaced by a new id.",
                   pattern=CORRELATION_ID_PATTERN)


def _async_parameters() -> list[JsonObject]:
    return [
        _header("Prefer", "Prefer", "respond-async: answer 202 Accepted at once with a Location to poll "
                "(GetOperation), and run the call in the background within the shared rate limit.",
                enum=["respond-async"]),
        _header("Idempotency-Key", "Idempotency Key",
                "Your key for this request (1-255 printable ASCII characters): a repeat with the same key and the "
                "same request gets the same operation and its answer, and spends no Defender quota; the same key "
                "with another request is refused (422 idempotency-key-reuse).", pattern=IDEMPOTENCY_KEY_PATTERN,
                minLength=1, maxLength=255),
        _correlation_parameter(),
    ]


def _file_alerts_parameters() -> list[JsonObject]:
    return [
        {"name": "fileHash", "in": "path", "required": True, "type": "string", "x-ms-summary": "File Hash",
         "description": "SHA-1 (40 hexadecimal characters) or SHA-256 (64) of the file, any letter case; a SHA-256 "
                        "is resolved to the file's SHA-1 through Defender's file information API. MD5 is refused.",
         "pattern": FILE_HASH_PATTERN, "x-ms-visibility": "important",
         "x-example": "6532ec91d513acc05f43ee0aa3002599729fd3e1"},
        _header("Cache-Control", "Cache Control", "no-cache: ask Defender even if the gateway holds a recent shared "
                "answer for this file (and refresh that answer).", enum=["no-cache"]),
        *_async_parameters(),
    ]


def _create_alert_parameters() -> list[JsonObject]:
    return [
        {"name": "body", "in": "body", "required": True, "x-ms-summary": "Alert Reference",
         "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes (Content-Type: application/json).",
         "schema": _ref("CreateAlertRequest")},
        *_async_parameters(),
    ]


def _operation_parameters() -> list[JsonObject]:
    return [
        {"name": "operationId", "in": "path", "required": True, "type": "string", "x-ms-summary": "Operation ID",
         "description": "The operation's id: the last segment of the Location a 202 answer gave.",
         "pattern": OPERATION_ID_PARAMETER_PATTERN, "minLength": 1, "maxLength": 128, "x-ms-visibility": "important"},
        _correlation_parameter(),
    ]


def _health_parameters(auth: AuthMode) -> list[JsonObject]:
    if auth is AuthMode.FUNCTION_KEY:
        return []  # the connection's key is the function key
    return [_header(FUNCTION_KEY_HEADER, "Function Key", "A function key of the gateway: health needs one even when "
                    "Entra ID fronts the gateway.", visibility="important", required=True)]


# --- responses ----------------------------------------------------------------------------------------------------

def _h(summary: str, description: str, kind: str = "string", **extra: Any) -> JsonObject:
    return {"type": kind, "x-ms-summary": summary, "description": description, **extra}


_HEADERS: Final[Mapping[str, JsonObject]] = {
    CORRELATION_HEADER: _h("Correlation ID", "The request's correlation id (yours if well formed, else a new one)."),
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


def _headers(*names: str) -> JsonObject:
    return {name: dict(_HEADERS[name]) for name in names}


_PROBLEM_HEADERS = (CORRELATION_HEADER, "Cache-Control", "RateLimit-Policy", "RateLimit")
_WAIT_HEADERS = (*_PROBLEM_HEADERS, "Retry-After")

#: What each error status means for the two Defender operations (and for a replayed operation's answer).
_ERRORS: Final[Mapping[int, tuple[str, tuple[str, ...]]]] = {
    400: ("Invalid input, named field by field in errors (nothing was sent to Defender), or Defender rejected the "
          "request (upstreamError).", _PROBLEM_HEADERS),
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
          "to fix.", _PROBLEM_HEADERS),
    503: ("Defender or the gateway's storage is unavailable: retry after Retry-After seconds.", _WAIT_HEADERS),
    504: ("Defender did not answer in time (or the outcome of a create is unknown).", _PROBLEM_HEADERS),
}


def _error(status: int, description: str | None = None, headers: Sequence[str] | None = None) -> JsonObject:
    meaning, names = _ERRORS[status]
    return {"description": description or meaning, "schema": _ref("Problem"),
            "headers": _headers(*(names if headers is None else headers))}


def _unauthorized(auth: AuthMode, *, function_key: bool = False) -> JsonObject:
    if auth is AuthMode.FUNCTION_KEY or function_key:
        return {"description": "No or a wrong function key: the Functions host answers, with an empty body."}
    return {"description": "No valid Entra ID token (App Service authentication answers, with an empty body), or no "
                           "client principal reached the gateway (a problem, unauthenticated).",
            "schema": _ref("Problem"), "headers": _headers(CORRELATION_HEADER, "Cache-Control", "WWW-Authenticate")}


def _accepted(*, preference: bool) -> JsonObject:
    names = ("Location", "Retry-After", *(("Preference-Applied",) if preference else ()), CORRELATION_HEADER,
             "Cache-Control")
    return {"description": "Accepted: the operation runs in the background. Poll Location (GetOperation) with GET, "
                           "waiting Retry-After seconds, until the answer is not 202: that answer is exactly what the "
                           "synchronous call gives.", "schema": _ref("Operation"), "headers": _headers(*names)}


def _call_responses(auth: AuthMode, success: JsonObject, statuses: Iterable[int]) -> JsonObject:
    responses: JsonObject = {"200": success, "202": _accepted(preference=True)}
    for status in sorted({*statuses, 401}):
        responses[str(status)] = _unauthorized(auth) if status == 401 else _error(status)
    return responses


# --- operations ---------------------------------------------------------------------------------------------------

_PRODUCES: Final = ["application/json", PROBLEM_CONTENT_TYPE]
_LONG_RUNNING: Final[JsonObject] = {"x-ms-long-running-operation": True,
                                    "x-ms-long-running-operation-options": {"final-state-via": "location"}}


def _operations(auth: AuthMode) -> JsonObject:
    file_alerts = {
        "operationId": GET_FILE_RELATED_ALERTS,
        "summary": "Get alerts related to a file",
        "description": "Returns Defender for Endpoint's alerts related to a file, by its SHA-1 or SHA-256, within the "
                       "gateway's shared rate limit (Defender allows 100 calls a minute and 1,500 an hour). A repeated "
                       "lookup within the cache time is answered from the shared answer without spending quota.",
        "x-ms-visibility": "important", "produces": _PRODUCES, "parameters": _file_alerts_parameters(),
        "responses": _call_responses(auth, {
            "description": "Defender's answer, unchanged: the alerts related to the file (none for an unknown file).",
            "schema": _ref("AlertList"),
            "headers": _headers(CORRELATION_HEADER, "Cache-Control", "Age", "RateLimit-Policy", "RateLimit")},
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
        "parameters": _create_alert_parameters(),
        "responses": _call_responses(auth, {
            "description": "Defender's answer, unchanged: the alert.", "schema": _ref("Alert"),
            "headers": _headers(CORRELATION_HEADER, "Cache-Control", "RateLimit-Policy", "RateLimit")},
            (400, 404, 413, 415, 422, 429, 500, 502, 503, 504)),
        **_LONG_RUNNING,
    }
    replayed = "the finished operation's answer, exactly as the synchronous call gives it."
    operation = {
        "operationId": GET_OPERATION,
        "summary": "Get an asynchronous operation",
        "description": "The Location a 202 answer gives, which Logic Apps and custom connectors poll: 202 while the "
                       "operation is pending, then exactly the answer the synchronous call gives (the alerts, the "
                       "alert, or its problem). 404 for an unknown or expired operation.",
        "x-ms-visibility": "advanced", "produces": _PRODUCES, "parameters": _operation_parameters(),
        "responses": {
            "200": {"description": "Done: " + replayed, "schema": _ref("OperationResult"),
                    "headers": _headers(CORRELATION_HEADER, "Cache-Control", "Age", "RateLimit-Policy", "RateLimit")},
            "202": _accepted(preference=False),
            "400": _error(400, "Not an operation id (nothing was looked up), or the finished operation's 400.",
                      (CORRELATION_HEADER, "Cache-Control")),
            "401": _unauthorized(auth),
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
                       "Entra ID fronts the gateway.",
        "x-ms-visibility": "advanced", "produces": ["application/json"], "parameters": _health_parameters(auth),
        "responses": {
            "200": {"description": "Healthy.", "schema": _ref("Health"), "headers": _headers("Cache-Control")},
            "401": _unauthorized(auth, function_key=True),
            "503": {"description": "Degraded: something the gateway needs does not answer (see the report).",
                    "schema": _ref("Health"), "headers": _headers("Cache-Control")},
        },
    }
    document = {
        "operationId": GET_OPENAPI_DOCUMENT,
        "summary": "Get this OpenAPI document",
        "description": "Returns the gateway's OpenAPI 2.0 document, with the host the request was sent to.",
        "x-ms-visibility": "internal", "produces": ["application/json"], "parameters": [],
        "responses": {"200": {"description": "The OpenAPI 2.0 document.",
                              "schema": {"type": "object", "description": "An OpenAPI 2.0 (Swagger) document."},
                              "headers": _headers("Cache-Control")}},
    }
    if auth is AuthMode.FUNCTION_KEY:
        document["security"] = []  # anonymous; with Entra ID, App Service authentication still asks for a token
    return {FILE_ALERTS_PATH: {"get": file_alerts}, CREATE_ALERT_PATH: {"post": create_alert},
            OPERATION_PATH: {"get": operation}, HEALTH_PATH: {"get": health}, OPENAPI_PATH: {"get": document}}


def _security_definitions(auth: AuthMode) -> JsonObject:
    if auth is AuthMode.ENTRA:
        return {_SECURITY_NAMES[auth]: {
            "type": "oauth2", "flow": "accessCode",
            "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
            "tokenUrl": "https://login.microsoftonline.com/common/oauth2/authorize", "scopes": {},
            "description": "Microsoft Entra ID: a token for the gateway's App ID URI (App Service authentication)."}}
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
                           "create-alert APIs: validated input, one rate-limit budget shared by every caller, "
                           "asynchronous operations and RFC 9457 problem details.",
        },
    }
    if host:
        spec["host"] = host
    spec.update({
        "basePath": BASE_PATH, "schemes": list(schemes), "consumes": ["application/json"], "produces": _PRODUCES,
        "paths": _operations(auth), "definitions": _definitions(),
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


# --- the Power Platform custom connector --------------------------------------------------------------------------

def api_properties(auth: AuthMode, *, client_id: str = "", resource_uri: str | None = None) -> JsonObject:
    """apiProperties.json of the connector for `auth`.

    Entra ID: the `aad` identity provider with `client_id` (the connector's own app registration; empty: fill it in
    the Security tab). The resource the token is for is the gateway's App ID URI: `resource_uri` when given, else a
    required connection parameter (`token:ResourceUri`) that whoever creates a connection fills in.
    Function key: one secure connection parameter, sent as x-functions-key.
    """
    if auth is AuthMode.FUNCTION_KEY:
        parameters: JsonObject = {API_KEY_PARAMETER: {"type": "securestring", "uiDefinition": {
            "displayName": "Function Key",
            "description": "A function key of the gateway's function app (sent as x-functions-key).",
            "tooltip": "az functionapp keys list -g RESOURCE_GROUP -n FUNCTION_APP --query functionKeys.default -o tsv",
            "constraints": {"tabIndex": 1, "clearText": False, "required": "true"}}}}
    else:
        custom: JsonObject = {"loginUri": {"value": "https://login.microsoftonline.com"},
                              "tenantId": {"value": "common"}}
        if resource_uri is not None:
            custom["resourceUri"] = {"value": resource_uri}
        custom["enableOnbehalfOfLogin"] = {"value": "false"}
        parameters = {OAUTH_PARAMETER: {"type": "oauthSetting", "oAuthSettings": {
            "identityProvider": "aad", "clientId": client_id, "scopes": [], "redirectMode": "Global",
            "redirectUrl": CONSENT_REDIRECT_URL, "properties": {"IsFirstParty": "False"},
            "customParameters": custom}}}
        if resource_uri is None:
            parameters[RESOURCE_URI_PARAMETER] = {"type": "string", "uiDefinition": {
                "displayName": "Gateway App ID URI",
                "description": "The Application ID URI of the gateway's Entra ID app registration: api:// followed by "
                               "its client id (docs/deploy.md: Entra ID in front of the functions).",
                "tooltip": "az ad app show --id API_APP_ID --query identifierUris[0] -o tsv",
                "constraints": {"tabIndex": 1, "clearText": True, "required": "true"}}}
        parameters["token:TenantId"] = {"type": "string", "metadata": {"sourceType": "AzureActiveDirectoryTenant"},
                                        "uiDefinition": {"constraints": {"required": "false", "hidden": "true"}}}
    return {"properties": {"connectionParameters": parameters, "iconBrandColor": "#0078d4", "capabilities": [],
                           "policyTemplateInstances": []}}


def connector_document(auth: AuthMode, host: str = CONNECTOR_HOST) -> JsonObject:
    """apiDefinition.swagger.json of the connector for `auth` (https only, the host a placeholder by default)."""
    return document(auth, host)


def connector_files(*, host: str = CONNECTOR_HOST, client_id: str = "",
                    resource_uri: str | None = None) -> dict[str, str]:
    """Every file of the connector directory: relative path -> its text. Entra ID at the top, function key in
    api-key/ (Power Platform takes one security definition per connector)."""
    files: dict[str, str] = {}
    for directory, auth in CONNECTOR_VARIANTS.items():
        prefix = f"{directory}/" if directory else ""
        files[prefix + DEFINITION_FILE] = render(connector_document(auth, host))
        files[prefix + PROPERTIES_FILE] = render(api_properties(auth, client_id=client_id, resource_uri=resource_uri))
    return files


def render(spec: Mapping[str, Any]) -> str:
    """Stable JSON text (two-space indent, key order as built, non-ASCII kept, a final newline)."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
