"""The request queue's message format (version 1), checked like the HTTP input.

    {"version": 1, "id": "<caller-chosen id>", "operation": "CreateAlertByReference",
     "body": {<the 8 fields of CreateAlertByReference>}, "replyQueue": "<optional queue name>"}
    {"version": 1, "id": "<caller-chosen id>", "operation": "GetFileRelatedAlerts",
     "fileHash": "<sha1 or sha256>"}
    {"version": 1, "id": "<caller-chosen id>", "operation": "RunHuntingQuery",
     "body": {"Query": "<KQL>", "Timespan": "<ISO 8601, optional>"}, "shape": "graph" (default) or "defender"}

A hunting query's `shape` is the answer's: Graph's (`schema`, `results`) or Defender's (`Stats`, `Schema`, `Results`,
whose body then has `Query` alone); the operation keeps it, so GET /api/operations/{id} answers in it.

A SHA-256 `fileHash` is kept as given (the operation's request is the lookup by SHA-256); the worker resolves
it to the file's SHA-1 before the alerts call. `id` is the operation id and the idempotency key: a message
with an id already used by the same request joins that operation, one with a different request is refused.
An Event Grid event (Event Grid or CloudEvents schema) whose `data` is such a message is accepted as that
message; without an `id` in `data`, the event's own id is used (Event Grid redelivers an event with the same id).
A message may also be base64 of the JSON (a producer that encodes as the Functions default does).

`caller` (optional) is the Entra object id of the principal that may read the operation at
/api/operations/{id} when the gateway runs with Entra ID; without it, no Entra caller can read it (the
answer still goes to `replyQueue`). Whoever may write to the queue may name any reader: the queue's
data roles are the trust boundary. With function keys, every key holder reads every operation.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from shared.answers.answer import Answer
from shared.asynchronous.operations import OPERATION_ID_PATTERN
from shared.asynchronous.queue_names import MAX_MESSAGE_BYTES, QUEUE_NAME, message_bytes
from shared.defender.client import DefenderRequest
from shared.defender.facts import OPERATION_NAMES, Api
from shared.defender.tenants import MultiTenant, Tenant
from shared.identifiers import GUID, GUID_ANY_CASE
from shared.telemetry.catalogue import TRACEPARENT
from shared.validation import FieldError, InvalidInputError, validate_create_alert, validate_file_hash
from shared.validation.hunting import HuntingShape, validate_hunting

VERSION = 1
#: The operation names of the queue format: the HTTP functions' names.
OPERATIONS: dict[str, Api] = {name: api for api, name in OPERATION_NAMES.items()}
_ID = re.compile(OPERATION_ID_PATTERN, re.ASCII)
_FIELDS = {"version", "id", "operation", "body", "fileHash", "replyQueue", "caller", "tenantId", "shape", TRACEPARENT}
#: A W3C trace context `traceparent` (version 00): trace id and parent id not all zero.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}", re.ASCII)


@dataclass(frozen=True)
class RequestMessage:
    id: str
    request: DefenderRequest
    reply_queue: str | None = None
    #: The Entra object id that may read the operation ("" : none with Entra ID; every key holder with keys).
    caller: str = ""
    #: The W3C trace context of the call that queued it (its span continues there); None: a trace of its own.
    traceparent: str | None = None
    #: A hunting query's answer shape (None for the other operations).
    shape: HuntingShape | None = None


class InvalidMessageError(ValueError):
    """The message cannot be run; `id` is its id when that much was readable (its operation records the problem)."""

    def __init__(self, reason: str, errors: list[FieldError], message_id: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = tuple(errors)
        self.message_id = message_id


def encode(message: RequestMessage) -> str:
    """The JSON text of `message` (what the gateway itself queues for an HTTP 202), in UTF-8 rather than `\\uXXXX`
    escapes (6 bytes a character), so that a valid query always fits (HUNTING_MAX_QUERY_BYTES)."""
    document: dict[str, Any] = {"version": VERSION, "id": message.id, "operation": OPERATION_NAMES[message.request.api]}
    if message.request.api in (Api.CREATE_ALERT, Api.HUNTING):
        document["body"] = dict(message.request.body or {})
        if message.shape is not None:
            document["shape"] = message.shape.value
    else:
        document["fileHash"] = message.request.file_hash
    if message.reply_queue:
        document["replyQueue"] = message.reply_queue
    if message.caller:
        document["caller"] = message.caller
    if message.request.tenant:
        document["tenantId"] = message.request.tenant
    if message.traceparent:
        document[TRACEPARENT] = message.traceparent
    return json.dumps(document, ensure_ascii=False)


def poison_entry(text: str, reason: str, detail: str, **extra: object) -> str:
    """The worker's entry on the poison queue: why (`reason`, `detail`, `extra`) and the message `text`, in UTF-8.

    Within a queue message's 64 KiB: a message too long to go along whole (one that is invalid, near the limit) is
    cut to fit, and `truncatedFrom` gives its size in bytes. Such an entry is never re-driven
    (shared.asynchronous.redrive: the sender must send a correct message), so the cut loses nothing it is for; an
    entry that did not fit would fail on every try, and the host would poison the message without its reason."""
    entry: dict[str, object] = {"reason": reason, "detail": detail, **extra, "message": text}
    encoded = json.dumps(entry, ensure_ascii=False)
    if message_bytes(encoded) <= MAX_MESSAGE_BYTES:
        return encoded
    entry["truncatedFrom"] = message_bytes(text)
    fits, too_long = 0, len(text)  # the longest prefix of the message that fits, found by halving
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if message_bytes(json.dumps({**entry, "message": text[:middle]}, ensure_ascii=False)) <= MAX_MESSAGE_BYTES:
            fits = middle
        else:
            too_long = middle
    return json.dumps({**entry, "message": text[:fits]}, ensure_ascii=False)


def parse(text: str, *, forbidden_reply_queues: frozenset[str] = frozenset(),
          tenants: MultiTenant | None = None) -> RequestMessage:
    """Read and check one message; InvalidMessageError says what is wrong and, if readable, its id. `tenants`: the
    customer tenants a message may name in `tenantId` (by id or short name; none: the home tenant alone)."""
    document = _document(text)
    document, fallback_id = _unwrap_event(document)
    raw_id = document.get("id", fallback_id)
    message_id = raw_id if isinstance(raw_id, str) and _ID.fullmatch(raw_id) else None
    errors: list[FieldError] = []
    if message_id is None:
        errors.append(FieldError("id", "is required: 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                                       "or digit (a GUID is a good id)"))
    if document.get("version") != VERSION or isinstance(document.get("version"), bool):
        errors.append(FieldError("version", f"must be {VERSION}"))
    for name in sorted(set(document) - _FIELDS):
        errors.append(FieldError(name, "is not a field of a request message"))
    reply_queue = document.get("replyQueue")
    if reply_queue is not None and (not isinstance(reply_queue, str) or not QUEUE_NAME.fullmatch(reply_queue)
                                    or reply_queue in forbidden_reply_queues):
        errors.append(FieldError("replyQueue", "must be a queue name (3-63 lowercase letters, digits and single "
                                               "hyphens) other than the gateway's request and poison queues"))
    caller = document.get("caller", "")
    if not isinstance(caller, str) or (caller and not GUID_ANY_CASE.fullmatch(caller)):
        errors.append(FieldError("caller", "must be the Entra object id (a GUID) of the principal that may read the "
                                           "operation"))
    named_tenant = document.get("tenantId")
    tenant = tenants.find(named_tenant) if isinstance(named_tenant, str) and tenants is not None else None
    if tenant is None and isinstance(named_tenant, str) and GUID.fullmatch(named_tenant.strip().lower()):
        # A tenant id the gateway no longer serves (removed while this waited): kept, so that its operation is
        # answered (502, no token for it) instead of left pending.
        tenant = Tenant(named_tenant.strip().lower(), named_tenant.strip().lower())
    if named_tenant is not None and tenant is None:
        errors.append(FieldError("tenantId", "must be one of the gateway's customer tenants (MDE_TENANTS), by id or "
                                             "short name; leave it out for the home tenant"))
    operation = document.get("operation")
    api = OPERATIONS.get(operation) if isinstance(operation, str) else None
    request: DefenderRequest | None = None
    shape = _shape(api, document.get("shape"), errors)
    if api is None:
        errors.append(FieldError("operation", "must be one of " + ", ".join(OPERATIONS)))
    elif shape is not None or api is not Api.HUNTING:
        try:
            request = _request(api, document, shape)
        except InvalidInputError as error:
            errors.extend(error.errors)
    if errors or request is None:
        raise InvalidMessageError("invalid-message", errors, message_id)
    assert message_id is not None
    # A trace context that is not one is ignored, never a reason to refuse the request.
    traceparent = document.get(TRACEPARENT)
    traceparent = traceparent if isinstance(traceparent, str) and _TRACEPARENT.fullmatch(traceparent) else None
    return RequestMessage(message_id, request.for_tenant(tenant.id if tenant else None), reply_queue,
                          caller.lower() if isinstance(caller, str) else "", traceparent, shape)


def _shape(api: Api | None, value: Any, errors: list[FieldError]) -> HuntingShape | None:
    """A hunting message's answer shape (Graph's by default); None for another operation (which names none)."""
    if api is not Api.HUNTING:
        if value is not None:
            errors.append(FieldError("shape", f"is a field of {OPERATION_NAMES[Api.HUNTING]} messages only"))
        return None
    if value is None:
        return HuntingShape.GRAPH
    if value not in {shape.value for shape in HuntingShape}:
        errors.append(FieldError("shape", "must be " + " or ".join(shape.value for shape in HuntingShape)))
        return None
    return HuntingShape(value)


def _request(api: Api, document: dict[str, Any], shape: HuntingShape | None) -> DefenderRequest:
    if api is Api.HUNTING:
        if "fileHash" in document:
            raise InvalidInputError([FieldError("fileHash", "is not a field of RunHuntingQuery messages")])
        body = document.get("body")
        if not isinstance(body, dict):
            raise InvalidInputError([FieldError("body", "must be the JSON object runHuntingQuery takes: "
                                                        '{"Query": "<KQL>", "Timespan"?: "<ISO 8601>"}')])
        query, timespan = validate_hunting(body, shape or HuntingShape.GRAPH)
        return DefenderRequest.hunting(query, timespan)
    if api is Api.CREATE_ALERT:
        if "fileHash" in document:
            raise InvalidInputError([FieldError("fileHash", "is not a field of CreateAlertByReference messages")])
        body = document.get("body")
        if not isinstance(body, dict):
            raise InvalidInputError([FieldError("body", "must be the JSON object CreateAlertByReference takes")])
        return DefenderRequest.create_alert(validate_create_alert(body))
    if "body" in document:
        raise InvalidInputError([FieldError("body", "is not a field of GetFileRelatedAlerts messages")])
    return DefenderRequest.file_alerts(validate_file_hash(document.get("fileHash"), field="fileHash").value)


def _document(text: str) -> dict[str, Any]:
    if message_bytes(text) > MAX_MESSAGE_BYTES:
        raise InvalidMessageError("message-too-large", [FieldError("message", "is larger than 64 KiB")], None)
    stripped = text.strip()
    if stripped and not stripped.startswith("{"):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):  # base64 of the JSON (Functions' default)
            stripped = base64.b64decode(stripped, validate=True).decode("utf-8").strip()
    try:
        document = json.loads(stripped, parse_constant=_refuse)
    except (ValueError, RecursionError):
        raise InvalidMessageError("not-json", [FieldError("message", "is not a JSON object")], None) from None
    if not isinstance(document, dict):
        raise InvalidMessageError("not-json", [FieldError("message", "is not a JSON object")], None)
    return document


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unwrap_event(document: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """An Event Grid / CloudEvents envelope gives its `data` (and its id as the fallback message id)."""
    is_event = "data" in document and ("eventType" in document or "specversion" in document)
    if not is_event:
        return document, None
    data = document.get("data")
    if not isinstance(data, dict):
        raise InvalidMessageError("invalid-message", [FieldError("data", "must be a request message (an object)")],
                                  None)
    return data, document.get("id")


def reply(operation_id: str, answer: Answer) -> str:
    """The reply message: the operation's answer, its body inline when it fits a queue message."""
    document: dict[str, object] = {"version": 1, "id": operation_id, "status": answer.status,
                                   "headers": dict(answer.headers)}
    try:
        document["body"] = json.loads(answer.body)
    except ValueError:
        document["body"] = answer.body.decode("utf-8", "replace")
    text = json.dumps(document)
    if len(text.encode()) > 60 * 1024:
        del document["body"]
        document["bodyOmitted"] = True  # larger than a queue message: GET /api/operations/{id} has it
        text = json.dumps(document)
    return text


def _problem_field(answer: Answer, name: str) -> str:
    try:
        value = json.loads(answer.body).get(name)
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def problem_kind(answer: Answer) -> str:
    """An answer's problem type, its last part (`hunting-query-rejected`), for the poison entry; else its status."""
    kind = _problem_field(answer, "type")
    return kind.rsplit(":", 1)[-1] if kind else f"status-{answer.status}"


def problem_detail(answer: Answer) -> str:
    """An answer's problem detail (empty when it has none)."""
    return _problem_field(answer, "detail")
