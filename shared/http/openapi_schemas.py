"""The OpenAPI document's schemas: the validation's own rules as anchored patterns, Defender's alert entity, and
the gateway's own shapes (the create body, an operation, a problem, the health report), with `definitions()`
for the document's `definitions`. Built from where the code defines each fact, so it cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from shared.answers.correlation import CORRELATION_HEADER
from shared.answers.problems import PROBLEM_TYPE_BASE
from shared.asynchronous.operations import OPERATION_ID_PATTERN, State
from shared.defender.facts import CATEGORIES, CREATE_FIELDS, OPERATION_NAMES, SEVERITIES, Api
from shared.http.openapi_blocks import CORRELATION_ID_PATTERN, JsonObject, array, bare, obj, prop, ref
from shared.http.openapi_operator import operator_definitions
from shared.identifiers import SHA1_ANY_CASE, SHA256_ANY_CASE
from shared.validation import FORBIDDEN_IN_TEXT, MAX_REPORT_ID, MAX_TEXT_LENGTH

# --- patterns: the validation's own rules, as anchored JSON-schema patterns (ECMA 262 and Python read them alike) --

SHA1_PATTERN: Final = f"^{SHA1_ANY_CASE.pattern}$"
FILE_HASH_PATTERN: Final = f"^(?:{SHA1_ANY_CASE.pattern}|{SHA256_ANY_CASE.pattern})$"
MACHINE_ID_PATTERN: Final = SHA1_PATTERN
#: The UTC form advanced hunting gives (the validator also reads a +00:00 zone and lower case; documented: Z).
#: Years 0001-9999 (datetime's), and only days the calendar has (Gregorian: 29 February in leap years alone), so that
#: every time the pattern lets through the validator accepts; hours, minutes and seconds in range.
_YEAR = r"(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
              r"|(?:0[13578]|1[02])-31)")
EVENT_TIME_PATTERN: Final = (f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
                             r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,7})?Z$")
#: The validator's class of characters refused in text, unbracketed, without its range of (unpaired) surrogates:
#: JSON-schema tools cannot generate or match lone surrogates, so the document says it in words instead.
_FORBIDDEN = FORBIDDEN_IN_TEXT.pattern[1:-1].replace(r"\ud800-\udfff", "")
#: Non-empty, not only white space, without the characters the validator refuses.
TEXT_PATTERN: Final = f"^[^{_FORBIDDEN}]*[^\\s{_FORBIDDEN}][^{_FORBIDDEN}]*$"
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

# --- Defender's alert entity (shared/reference/defender-api.md, localdev/simulator/sample_alert.json) -------------

_EVIDENCE = obj("Evidence", "One entity the alert is about (a file, process, IP address, user ...).", {
    "entityType": prop("Entity Type", "Kind of entity: File, Process, User, Ip, Url, Registry, ..."),
    "evidenceCreationTime": prop("Evidence Creation Time", "When the evidence was added (UTC).", "date-time",
                                   nullable=True),
    "sha1": prop("SHA-1", "SHA-1 of the file.", nullable=True),
    "sha256": prop("SHA-256", "SHA-256 of the file.", nullable=True),
    "fileName": prop("File Name", "Name of the file.", nullable=True),
    "filePath": prop("File Path", "Folder of the file.", nullable=True),
    "processId": prop("Process ID", "Id of the process.", "int64", nullable=True),
    "processCommandLine": prop("Process Command Line", "Command line of the process.", nullable=True),
    "processCreationTime": prop("Process Creation Time", "When the process started (UTC).", "date-time",
                                  nullable=True),
    "parentProcessId": prop("Parent Process ID", "Id of the parent process.", "int64", nullable=True),
    "parentProcessCreationTime": prop("Parent Process Creation Time", "When the parent process started (UTC).",
                                        "date-time", nullable=True),
    "parentProcessFileName": prop("Parent Process File Name", "File name of the parent process.", nullable=True),
    "parentProcessFilePath": prop("Parent Process File Path", "Folder of the parent process's file.",
                                    nullable=True),
    "ipAddress": prop("IP Address", "IP address.", nullable=True),
    "url": prop("URL", "URL.", nullable=True),
    "registryKey": prop("Registry Key", "Registry key.", nullable=True),
    "registryHive": prop("Registry Hive", "Registry hive.", nullable=True),
    "registryValueType": prop("Registry Value Type", "Type of the registry value.", nullable=True),
    "registryValue": prop("Registry Value", "Registry value.", nullable=True),
    "accountName": prop("Account Name", "Account name.", nullable=True),
    "domainName": prop("Domain Name", "Domain of the account.", nullable=True),
    "userSid": prop("User SID", "Security identifier of the user.", nullable=True),
    "aadUserId": prop("Entra User ID", "Microsoft Entra ID object id of the user.", nullable=True),
    "userPrincipalName": prop("User Principal Name", "User principal name.", nullable=True),
    "detectionStatus": prop("Detection Status", "Detected, Blocked or Prevented.", nullable=True),
})

_ALERT_PROPERTIES: Final[Mapping[str, JsonObject]] = {
    "id": prop("Alert ID", "Identifier of the alert, e.g. da637472900382838869_1364969609."),
    "incidentId": prop("Incident ID", "Identifier of the incident the alert belongs to.", "int64", nullable=True),
    "investigationId": prop("Investigation ID", "Identifier of the automated investigation.", "int64",
                              nullable=True),
    "assignedTo": prop("Assigned To", "Owner of the alert.", nullable=True),
    "severity": prop("Severity", "UnSpecified, Informational, Low, Medium or High."),
    "status": prop("Status", "Unknown, New, InProgress or Resolved.", nullable=True),
    "classification": prop("Classification", "Unknown, FalsePositive or TruePositive.", nullable=True),
    "determination": prop("Determination", "What the alert turned out to be (e.g. Malware, SecurityTesting).",
                            nullable=True),
    "investigationState": prop("Investigation State", "State of the automated investigation.", nullable=True),
    "detectionSource": prop("Detection Source", "What detected it (e.g. WindowsDefenderAtp, CustomerTI).",
                              nullable=True),
    "detectorId": prop("Detector ID", "Identifier of the detector that raised the alert.", nullable=True),
    "category": prop("Category", "Category of the alert (e.g. Execution, Malware).", nullable=True),
    "threatFamilyName": prop("Threat Family Name", "Threat family.", nullable=True),
    "title": prop("Title", "Title of the alert."),
    "description": prop("Description", "Description of the alert.", nullable=True),
    "alertCreationTime": prop("Alert Creation Time", "When the alert was created (UTC).", "date-time",
                                nullable=True),
    "firstEventTime": prop("First Event Time", "First event behind the alert, on the device (UTC).", "date-time",
                             nullable=True),
    "lastEventTime": prop("Last Event Time", "Last event behind the alert, on the device (UTC).", "date-time",
                            nullable=True),
    "lastUpdateTime": prop("Last Update Time", "When the alert last changed (UTC).", "date-time", nullable=True),
    "resolvedTime": prop("Resolved Time", "When the alert was resolved (UTC).", "date-time", nullable=True),
    "machineId": prop("Machine ID", "Id of the device the alert is about.", nullable=True),
    "computerDnsName": prop("Computer DNS Name", "Fully qualified name of the device.", nullable=True),
    "rbacGroupName": prop("RBAC Group Name", "Device group of the device.", nullable=True),
    "aadTenantId": prop("Entra Tenant ID", "Microsoft Entra ID tenant of the alert.", nullable=True),
    "threatName": prop("Threat Name", "Name of the threat.", nullable=True),
    "mitreTechniques": array("MITRE Techniques", "MITRE ATT&CK technique ids (e.g. T1059.001).",
                              {"type": "string", "description": "A MITRE ATT&CK technique id."}, nullable=True),
    "relatedUser": obj("Related User", "The user the alert is about.", {
        "userName": prop("User Name", "Name of the user.", nullable=True),
        "domainName": prop("Domain Name", "Domain of the user.", nullable=True),
    }, nullable=True),
    "comments": array("Comments", "Comments on the alert.", bare(obj("Comment", "A comment on the alert.", {
        "comment": prop("Comment", "Text of the comment.", nullable=True),
        "createdBy": prop("Created By", "Who wrote the comment.", nullable=True),
        "createdTime": prop("Created Time", "When the comment was written (UTC).", "date-time", nullable=True),
    })), nullable=True),
    "evidence": array("Evidence", "The entities the alert is about.", bare(_EVIDENCE), nullable=True),
}
_ODATA_CONTEXT = prop("OData Context", "OData context of Defender's answer.")


def _alert() -> JsonObject:
    return bare(obj("Alert", "An alert as Defender for Endpoint returns it (its alert entity).",
                         {"@odata.context": _ODATA_CONTEXT, **_ALERT_PROPERTIES}, required=["id"]))


def _alert_list() -> JsonObject:
    return bare(obj("Alerts", "The alerts related to the file, as Defender for Endpoint returns them.", {
        "@odata.context": _ODATA_CONTEXT,
        "value": array("Alerts", "The alerts related to the file (none for an unknown file).", ref("Alert")),
    }, required=["value"]))


def _operation_result() -> JsonObject:
    """Swagger 2.0 has no oneOf: the alert and the alerts list as one object schema with neither's required
    properties, so each validates against it."""
    return bare(obj(
        "Operation Result",
        "The finished operation's answer, exactly as the synchronous call gives it: the alerts list (`value`) for "
        "GetFileRelatedAlerts, the alert for CreateAlertByReference, a hunting query's results in the shape its path "
        "answers (HuntingResult: Stats, Schema, Results; GraphHuntingResult: schema, results).",
        {"@odata.context": _ODATA_CONTEXT,
         "value": array("Alerts", "GetFileRelatedAlerts: the alerts related to the file.", ref("Alert")),
         **_ALERT_PROPERTIES}))


# --- the gateway's own shapes -------------------------------------------------------------------------------------

def _create_alert_request() -> JsonObject:
    properties: dict[str, JsonObject] = {
        "eventTime": prop("Event Time", "Time of the advanced-hunting event with all its digits, in UTC, e.g. "
                            "2018-08-03T16:45:21.7115183Z (up to 7 fractional digits; all are kept).",
                            pattern=EVENT_TIME_PATTERN, example="2018-08-03T16:45:21.7115183Z"),
        "reportId": prop("Report ID", "ReportId of the advanced-hunting event: its digits, at most "
                           f"{MAX_REPORT_ID} (a JSON integer is accepted too).", pattern=REPORT_ID_PATTERN,
                           example="20776"),
        "machineId": prop("Machine ID", "DeviceId of the event: 40 hexadecimal characters.",
                            pattern=MACHINE_ID_PATTERN, example="1e5bc9d7e413ddd7902c2932e418702b84d0cc07"),
        "severity": prop("Severity", "Severity of the new alert (any letter case is accepted).",
                           enum=list(SEVERITIES), example=SEVERITIES[0]),
        "category": prop("Category", "Category of the new alert (any letter case is accepted).",
                           enum=list(CATEGORIES), example="Exploit"),
    }
    for name, summary, meaning in (("title", "Title", "Title of the new alert"),
                                   ("description", "Description", "Description of the new alert"),
                                   ("recommendedAction", "Recommended Action", "What the analyst should do")):
        properties[name] = prop(summary, f"{meaning}: at most {MAX_TEXT_LENGTH} characters, not only white space, "
                                  "without control characters (tab, CR and LF are fine) or unpaired surrogates.",
                                  minLength=1, maxLength=MAX_TEXT_LENGTH, pattern=TEXT_PATTERN)
    missing, extra = set(CREATE_FIELDS) - set(properties), set(properties) - set(CREATE_FIELDS)
    if missing or extra:  # a field added to (or dropped from) CREATE_FIELDS must be documented here first
        raise ValueError(f"CreateAlertByReference fields not documented: {sorted(missing)}; unknown: {sorted(extra)}")
    for schema in properties.values():
        schema["x-ms-visibility"] = "important"
    return bare(obj(
        "Alert Reference",
        "The advanced-hunting event to raise an alert from (eventTime, reportId and machineId from the same row) "
        "and the new alert's fields: exactly these 8, all required, names case-sensitive.",
        {name: properties[name] for name in CREATE_FIELDS}, required=list(CREATE_FIELDS),
        additionalProperties=False))


def _operation() -> JsonObject:
    return bare(obj("Operation", "An asynchronous operation that is still running.", {
        "id": prop("Operation ID", "Identifier of the operation (the last segment of Location).",
                     pattern=OPERATION_ID_PARAMETER_PATTERN),
        "status": prop("Status", "Always pending: a finished operation answers with its result instead.",
                         enum=[State.PENDING.value]),
        "operation": prop("Operation", "What the operation does.", enum=sorted(OPERATION_NAMES.values())),
        "createdAt": prop("Created At", "When the gateway accepted it (UTC).", "date-time"),
        "attempts": prop("Attempts", "Requests sent to Defender for it so far.", "int32", minimum=0),
    }, required=["id", "status", "operation", "createdAt", "attempts"]))


def _problem() -> JsonObject:
    return bare(obj("Problem", "An error answer of the gateway: RFC 9457 problem details.", {
        "type": prop("Type", f"What went wrong, as {PROBLEM_TYPE_BASE}<kind>, e.g. {PROBLEM_TYPE_BASE}"
                       "validation-error.", pattern=PROBLEM_TYPE_PATTERN),
        "title": prop("Title", "Short summary of the problem kind."),
        "status": prop("Status", "The HTTP status code.", "int32", minimum=100, maximum=599),
        "detail": prop("Detail", "What happened in this case, and what to do about it."),
        "errors": array("Errors", "Each invalid input field (validation errors only).", bare(obj(
            "Field Error", "One invalid input field.", {
                "field": prop("Field", "Where the field is, e.g. body.severity or route.fileHash."),
                "message": prop("Message", "What is wrong with it."),
            }, required=["field", "message"]))),
        "correlationId": prop("Correlation ID", f"The request's correlation id (also in {CORRELATION_HEADER}).",
                                pattern=CORRELATION_ID_PATTERN),
        "upstreamError": obj("Upstream Error", "Defender for Endpoint's own error, when it gave one.", {
            "code": prop("Code", "Defender's error code, e.g. InvalidInput."),
            "message": prop("Message", "Defender's error message."),
            "target": prop("Target", "Defender's request id for the failed call."),
        }),
    }, required=["type", "title", "status", "detail"]))


def _health() -> JsonObject:
    window = bare(obj("Window", "One rate-limit window of the API.", {
        "limit": prop("Limit", "Calls the window allows.", "int32", minimum=0),
        "windowSeconds": prop("Window Seconds", "Length of the window.", "int32", minimum=0),
        "remaining": prop("Remaining", "Calls the window admits now.", "int32", minimum=0),
        "resetSeconds": prop("Reset Seconds", "Seconds until its oldest call leaves the window.", "int32",
                               minimum=0),
        "currentLimit": prop("Current Limit", "Calls the window admits now in all: the limit, or only the new-state "
                             "share of it while the budget's state is younger than the window (calls made before it "
                             "began may still count at Defender).", "int32", minimum=0),
    }, required=["limit", "windowSeconds", "remaining", "resetSeconds"]))

    def queue(title: str, description: str) -> JsonObject:
        return obj(title, description, {
            "name": prop("Name", "Name of the queue."),
            "depth": prop("Depth", "Messages waiting (null: unreadable).", "int32", nullable=True, minimum=0),
            "poisonDepth": prop("Poison Depth", "Messages in its poison queue (null: unreadable).", "int32",
                                  nullable=True, minimum=0),
        }, required=["name", "depth", "poisonDepth"])

    apis = {api.value: obj(f"{api.value.replace('_', ' ').title()} API",
                               f"The Defender API {api.value} (a rate-limit budget of its own).", {
        "admitsNow": prop("Admits Now", "Whether a call would be admitted now (absent when the identity gives no "
                            "token).", "boolean"),
        "retryAfter": prop("Retry After", "Seconds until a call would be admitted (0: now).", "int32", minimum=0),
        "windows": array("Windows", "Budget left in each window.", window),
        "pendingOperations": prop("Pending Operations", "Asynchronous operations waiting for this API.", "int32",
                                    minimum=0),
        "oldestPendingAgeSeconds": prop("Oldest Pending Age Seconds", "Age of the oldest pending operation (null: "
                                          "none pending).", "int32", nullable=True, minimum=0),
        "waitingQueue": queue("Waiting Queue", "Where requests wait for this API's budget to free."),
    }, required=["pendingOperations", "oldestPendingAgeSeconds", "waitingQueue"]) for api in Api}
    return bare(obj("Health", "What an operator needs to see: storage, queue, and each Defender API's budget.", {
        "status": prop("Status", "healthy when storage, queues and the identity answer; degraded otherwise.",
                         enum=["healthy", "degraded"]),
        "checkedAt": prop("Checked At", "When this was measured (UTC).", "date-time"),
        "storage": obj("Storage", "Whether the gateway's storage answers.", {
            "tables": prop("Tables", "The rate-limit, answer and operations tables answer.", "boolean"),
            "queues": prop("Queues", "Every queue of the gateway and its poison queue answer.", "boolean"),
        }, required=["tables", "queues"]),
        "identity": prop("Identity", "The managed identity gives a token for Defender.", "boolean"),
        "graphIdentity": prop("Graph Identity", "The managed identity gives a token for Microsoft Graph (advanced "
                              "hunting; absent when no API the gateway serves is Graph's).", "boolean"),
        "queue": queue("Queue", "The request queue of asynchronous operations; its poison queue holds the "
                       "requests that failed for good, with their reason."),
        "apis": obj("APIs", "Each Defender API behind the gateway, by the name its rate-limit state has.", apis),
        "tenants": array("Tenants", "With many tenants: each customer tenant's budgets (its own), or why it gives "
                         "no token.", bare(obj("Tenant", "A customer tenant (MDE_TENANTS).", {
                             "id": prop("ID", "The tenant's id."),
                             "name": prop("Name", "Its short name (its id when it has none)."),
                             "identity": prop("Identity", "Whether it gave the gateway a token.", "boolean"),
                             "reason": prop("Reason", "Why it gave none (absent when it did).", nullable=True),
                             "graphIdentity": prop("Graph Identity", "Whether it gave the gateway a token for "
                                                   "Microsoft Graph (advanced hunting).", "boolean"),
                             "graphReason": prop("Graph Reason", "Why it gave none for Graph (absent when it did).",
                                                 nullable=True),
                             "apis": prop("APIs", "Each API's admitsNow, retryAfter and windows, as above.",
                                          "object"),
                         }, required=["id", "name", "identity"]))),
    }, required=["status", "checkedAt", "storage", "queue", "apis"]))


def definitions() -> JsonObject:
    return {"Alert": _alert(), "AlertList": _alert_list(), "OperationResult": _operation_result(),
            "CreateAlertRequest": _create_alert_request(), "Operation": _operation(), "Problem": _problem(),
            "Health": _health(), **operator_definitions(_health())}
