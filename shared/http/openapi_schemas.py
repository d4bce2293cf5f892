"""The OpenAPI document's schemas: the validation's own rules as anchored patterns, Defender's alert entity, and
the gateway's own shapes (the create body, an operation, a problem, the health report), with `definitions()`
for the document's `definitions`. Built from where the code defines each fact, so it cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.answers.correlation import CORRELATION_HEADER, CORRELATION_ID_FORMAT
from shared.answers.problems import PROBLEM_TYPE_BASE
from shared.asynchronous.operations import OPERATION_ID_PATTERN, State
from shared.defender.facts import CATEGORIES, CREATE_FIELDS, OPERATION_NAMES, SEVERITIES, Api
from shared.validation import FORBIDDEN_IN_TEXT, HEX, MAX_REPORT_ID, MAX_TEXT_LENGTH

JsonObject = dict[str, Any]

# --- patterns: the validation's own rules, as anchored JSON-schema patterns (ECMA 262 and Python read them alike) --

_HEX_DIGIT = HEX.pattern.removesuffix("+")  # "[0-9a-fA-F]", the validator's character class
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
_FORBIDDEN = FORBIDDEN_IN_TEXT.pattern[1:-1].replace(r"\ud800-\udfff", "")
#: Non-empty, not only white space, without the characters the validator refuses.
TEXT_PATTERN: Final = f"^[^{_FORBIDDEN}]*[^\\s{_FORBIDDEN}][^{_FORBIDDEN}]*$"
CORRELATION_ID_PATTERN: Final = f"^{CORRELATION_ID_FORMAT.pattern}$"
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


def ref(definition: str) -> JsonObject:
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
        "value": _array("Alerts", "The alerts related to the file (none for an unknown file).", ref("Alert")),
    }, required=["value"]))


def _operation_result() -> JsonObject:
    """Swagger 2.0 has no oneOf: the alert and the alerts list as one object schema with neither's required
    properties, so each validates against it."""
    return _bare(_object(
        "Operation Result",
        "The finished operation's answer, exactly as the synchronous call gives it: the alerts list (`value`) for "
        "GetFileRelatedAlerts, the alert for CreateAlertByReference.",
        {"@odata.context": _ODATA_CONTEXT,
         "value": _array("Alerts", "GetFileRelatedAlerts: the alerts related to the file.", ref("Alert")),
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


def definitions() -> JsonObject:
    return {"Alert": _alert(), "AlertList": _alert_list(), "OperationResult": _operation_result(),
            "CreateAlertRequest": _create_alert_request(), "Operation": _operation(), "Problem": _problem(),
            "Health": _health()}
