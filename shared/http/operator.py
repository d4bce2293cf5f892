"""The operator page and its API: GET /api/operator (the page), GET /api/operator/state (what it shows, JSON) and
POST /api/operator/redrive (send a poisoned request again). Behind a function key, like health, and behind Entra
ID too when the gateway runs with it.

The page is one static file with its script inline; its Content-Security-Policy allows that script alone (by its
hash), no other source, and only requests to this origin. The script writes every value as text, never as markup:
a poison queue holds whatever a sender put on the request queue.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func

from shared.answers.answer import Answer
from shared.answers.mapping import Answers, tenant_not_allowed_problem
from shared.answers.problems import Problem
from shared.asynchronous.calls import AsyncCalls
from shared.asynchronous.redrive import NotPoisoned, RedriveRefused, Refusal, redrive
from shared.defender.gateway import Gateway
from shared.defender.tenants import HOME_TENANT
from shared.http.openapi_operator import MESSAGE_ID_PATTERN, POISON_QUEUE_PATTERN
from shared.operator import operator_state, poison_queues
from shared.validation import FieldError, InvalidInputError, parse_json_object

PAGE = (Path(__file__).parent / "operator_page.html").read_text(encoding="utf-8")
_SCRIPT = re.search(r"<script>(.*?)</script>", PAGE, re.S)
assert _SCRIPT is not None, "operator_page.html has no inline script"
#: The policy that lets the page's own script run and nothing else.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_SCRIPT.group(1).encode("utf-8")).digest()).decode()
    + "'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
      "frame-ancestors 'none'"
)
_MESSAGE_ID = re.compile(MESSAGE_ID_PATTERN, re.ASCII)
_POISON_QUEUE = re.compile(POISON_QUEUE_PATTERN, re.ASCII)
_JSON = "application/json"


class OperatorConsole:
    """What the three operator functions answer, over the gateway, the operations and the queues."""

    def __init__(self, gateway: Gateway, async_calls: AsyncCalls, answers: Answers, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.async_calls = async_calls
        self.answers = answers
        self._clock = clock

    @staticmethod
    def page() -> func.HttpResponse:
        return func.HttpResponse(PAGE, status_code=200, mimetype="text/html", charset="utf-8", headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    def state(self) -> func.HttpResponse:
        healthy, state = operator_state(self.gateway, self.async_calls.operations, self.async_calls.queues,
                                        clock=self._clock)
        return func.HttpResponse(json.dumps(state), status_code=200 if healthy else 503, mimetype=_JSON,
                                 headers={"Cache-Control": "no-store"})

    def redrive(self, body: bytes | None, content_type: str | None, correlation_id: str,
                may_redrive: Callable[[str | None], bool] | None = None) -> Answer:
        """Re-drive the poisoned entry the body names ({"queue", "messageId"}), if `may_redrive` its tenant (403
        tenant-not-allowed otherwise). Raises InputError (400, nothing changed), QueueStorageError and
        OperationsStorageError for the edge to answer."""
        queues = self.async_calls.queues
        document = parse_json_object(body or b"", content_type)
        queue, message_id = document.get("queue"), document.get("messageId")
        errors = []
        if not isinstance(queue, str) or not _POISON_QUEUE.fullmatch(queue):
            errors.append(FieldError("body.queue", "must be a poison queue's name (from the state)"))
        if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
            errors.append(FieldError("body.messageId", "must be the id of a poisoned message (from the state)"))
        if errors:
            raise InvalidInputError(errors)
        assert isinstance(queue, str) and isinstance(message_id, str)
        # Only the gateway's own poison queues are read: any other name holds nothing to re-drive.
        result = redrive(queues, self.async_calls.operations, queue, message_id, self._clock(),
                         self.gateway.client.settings.multi_tenant, may_redrive) \
            if queue in poison_queues(queues, self.gateway) else NotPoisoned()
        if isinstance(result, NotPoisoned):
            return self.answers.problem(None, Problem(
                404, "poisoned-message-not-found", "Poisoned message not found",
                "The queue shows no such message: it was re-driven already, or is not among the 32 it shows first."),
                correlation_id)
        if isinstance(result, RedriveRefused) and result.entry.refusal is Refusal.TENANT_NOT_ALLOWED:
            return self.answers.problem(None, tenant_not_allowed_problem(result.entry.tenant or HOME_TENANT),
                                        correlation_id)
        if isinstance(result, RedriveRefused):
            entry = result.entry
            return self.answers.problem(None, Problem(
                409, "redrive-refused", "Not re-driven", _REFUSALS[entry.refusal.value if entry.refusal else ""],
                extensions={"refusal": entry.refusal.value if entry.refusal else None,
                            "operationId": entry.operation_id}), correlation_id)
        document_out: dict[str, Any] = {"operationId": result.operation_id, "queue": result.queue,
                                        "requeuedTo": queues.requests_name}
        return Answer(200, {"Content-Type": _JSON, "Cache-Control": "no-store",
                            "X-Correlation-ID": correlation_id}, json.dumps(document_out).encode())


_REFUSALS = {
    "invalid-message": "The message itself cannot run (it is not a valid request message): send a corrected one.",
    "id-reused": "The message's id names another request: send it again with an id of its own.",
    "operation-expired": "Its operation's record is gone (older than the retention, OPERATIONS_RETENTION_HOURS, or "
                         "never written), so whether a create reached Defender cannot be told: send it again as a "
                         "new request (a create only if the device has no such alert).",
    "may-have-reached-defender": "A create that was sent to Defender at least once is never sent again: Defender "
                                 "may have acted on it. Check the device's alerts, and send a new request if none "
                                 "was created.",
    "": "It cannot be re-driven.",
}
