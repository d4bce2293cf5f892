"""The OpenAPI schemas of the operator page's API: its state (the health report, the poisoned requests, the recent
operations) and the re-drive's request and answer."""

from __future__ import annotations

from shared.defender.facts import OPERATION_NAMES
from shared.http.openapi_blocks import JsonObject, array, bare, obj, prop

#: The re-drive's input rules, defined once: the document states them, shared.http.operator checks them.
POISON_QUEUE_PATTERN = "^[a-z0-9][a-z0-9-]{1,55}-poison$"
MESSAGE_ID_PATTERN = "^[A-Za-z0-9-]{1,100}$"


def _poisoned() -> JsonObject:
    return bare(obj("Poisoned Request", "One entry of a poison queue.", {
        "queue": prop("Queue", "The poison queue it is in."),
        "messageId": prop("Message ID", "Its id in that queue: what a re-drive names."),
        "operationId": prop("Operation ID", "The operation it belongs to (null: not readable).", nullable=True),
        "operation": prop("Operation", "What it asks of Defender.", nullable=True,
                          enum=sorted(OPERATION_NAMES.values())),
        "reason": prop("Reason", "Why it is there: the failed answer's problem type, failed-tries (the host gave up), "
                       "or why the message could not run."),
        "detail": prop("Detail", "What went wrong, in words."),
        "status": prop("Status", "The failed answer's HTTP status (null: none).", "int32", nullable=True),
        "redrivable": prop("Re-drivable", "Whether a re-drive may send it again.", "boolean"),
        "refusal": prop("Refusal", "Why it may not (null: it may).", nullable=True,
                        enum=["invalid-message", "id-reused", "operation-expired", "may-have-reached-defender"]),
    }, required=["queue", "messageId", "reason", "redrivable"]))


def _recent() -> JsonObject:
    return bare(obj("Recent Operation", "An operation of the last minutes.", {
        "id": prop("ID", "The operation's id."),
        "operation": prop("Operation", "What it asks of Defender."),
        "status": prop("Status", "pending or done.", enum=["pending", "done"]),
        "answerStatus": prop("Answer Status", "The HTTP status of its answer (null: pending).", "int32",
                             nullable=True),
        "source": prop("Source", "How it came in.", enum=["http", "queue"]),
        "attempts": prop("Attempts", "Requests sent to Defender for it.", "int32", minimum=0),
        "createdAt": prop("Created At", "When the gateway accepted it (UTC).", "date-time"),
    }, required=["id", "operation", "status", "source", "attempts", "createdAt"]))


def _history() -> JsonObject:
    def series(summary: str, description: str, *, nullable: bool = False) -> JsonObject:
        return array(summary, description + " One point per minute, the oldest first; the last is the minute under "
                     "way.", prop("Point", "The minute's value.", "int32", nullable=nullable, minimum=0))

    budget = bare(obj("Budget History", "One API's budget in one tenant, per minute.", {
        "scope": prop("Scope", "home, or the customer tenant's name."),
        "tenant": prop("Tenant", "The tenant id whose quota it is."),
        "api": prop("API", "The Defender API."),
        "limitPerMinute": prop("Limit Per Minute", "The shortest window's limit, per minute.", "number", minimum=0),
        "admittedFrom": prop("Admitted From", "Since when the budget's log holds every admission (UTC): earlier "
                             "points of admitted are 0 for want of data.", "date-time"),
        "admitted": series("Admitted", "Calls the budget admitted (from its log)."),
        "refused": series("Refused", "Calls the gateway refused (nothing sent)."),
        "throttled": series("Throttled", "Defender's 429 answers."),
    }, required=["scope", "tenant", "api", "limitPerMinute", "admitted", "refused", "throttled"]))
    queue = bare(obj("Queue History", "One queue, per minute, as the maintenance sweep read it.", {
        "api": prop("API", "The API whose waiting queue it is (null: the request queue).", nullable=True),
        "name": prop("Name", "The queue."),
        "depth": series("Depth", "Messages waiting (null: no reading that minute).", nullable=True),
        "pending": series("Pending", "Pending operations of the API (null: no reading).", nullable=True),
        "oldestPendingAgeSeconds": series("Oldest Pending Age Seconds", "Age of the oldest pending operation (0: "
                                          "none; null: no reading).", nullable=True),
    }, required=["name", "depth", "pending", "oldestPendingAgeSeconds"]))
    return obj("History", "The last hour, per minute (null: the history cannot be read).", {
        "startsAt": prop("Starts At", "The first minute (UTC).", "date-time"),
        "minutes": prop("Minutes", "Points in each series.", "int32", minimum=1),
        "budgets": array("Budgets", "Each API's budget per tenant.", budget),
        "queues": array("Queues", "The request queue, then each API's waiting queue.", queue),
    }, required=["startsAt", "minutes", "budgets", "queues"], nullable=True)


def operator_definitions(health: JsonObject) -> dict[str, JsonObject]:
    """OperatorState (`health`'s report and more), RedriveRequest, RedriveResult."""
    state = dict(health)
    state["description"] = "What the operator page shows: the health report, the poisoned requests and the " \
                           "operations of the last 15 minutes (a part that cannot be read is null: degraded)."
    state["properties"] = {
        **health["properties"],
        "poisoned": array("Poisoned", "The first 32 entries of each poison queue.", _poisoned(), nullable=True),
        "recent": array("Recent", "Up to 25 operations of the last 15 minutes, the newest first.", _recent(),
                        nullable=True),
        "history": _history(),
    }
    return {
        "OperatorState": state,
        "RedriveRequest": bare(obj("Re-drive Request", "The poisoned entry to send again.", {
            "queue": prop("Queue", "Its poison queue (from the state).", pattern=POISON_QUEUE_PATTERN),
            "messageId": prop("Message ID", "Its message id (from the state).", pattern=MESSAGE_ID_PATTERN),
        }, required=["queue", "messageId"])),
        "RedriveResult": bare(obj("Re-drive Result", "What was sent again.", {
            "operationId": prop("Operation ID", "The operation sent again, under its own id (null: not readable).",
                                nullable=True),
            "queue": prop("Queue", "The poison queue it was taken from."),
            "requeuedTo": prop("Requeued To", "The request queue it is on again."),
        }, required=["queue", "requeuedTo"])),
    }
