"""The operator page's state (GET /api/operator/state): the health report (budgets per API and window, pending
operations, queue depths), the poisoned requests with whether each may be re-driven, and the operations of the
last minutes with their outcome. Each part that cannot be read is null and the state says degraded."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.asynchronous.operations import OperationsStorageError, OperationStore
from shared.asynchronous.queue_names import POISON_SUFFIX
from shared.asynchronous.queues import Queues, QueueStorageError
from shared.asynchronous.redrive import poisoned
from shared.defender.facts import OPERATION_NAMES
from shared.defender.gateway import Gateway
from shared.health import health_report

#: How far back the page lists operations, and how many.
RECENT_MINUTES = 15
RECENT_LIMIT = 25


def poison_queues(queues: Queues, gateway: Gateway) -> list[str]:
    """Every poison queue: the request queue's (the worker's records and the host's gave-ups), then each waiting
    queue's (the host's)."""
    return [queues.poison_name, *(queues.waiting_name(api) + POISON_SUFFIX for api in gateway.apis)]


def operator_state(gateway: Gateway, operations: OperationStore, queues: Queues, *,
                   clock: Callable[[], float] = time.time) -> tuple[bool, dict[str, Any]]:
    """(healthy, state)."""
    healthy, state = health_report(gateway, operations, queues, clock=clock)
    try:
        state["poisoned"] = [entry.to_json() for entry in poisoned(
            queues, operations, poison_queues(queues, gateway), gateway.client.settings.multi_tenant)]
    except (QueueStorageError, OperationsStorageError):
        state["poisoned"], healthy = None, False
    try:
        recent = operations.recent(clock() - RECENT_MINUTES * 60, RECENT_LIMIT)
        state["recent"] = [{
            "id": operation.id, "operation": OPERATION_NAMES.get(operation.api, operation.api.value),
            "status": operation.state.value, "answerStatus": operation.answer.status if operation.answer else None,
            "source": operation.source.value, "attempts": operation.attempts,
            "createdAt": datetime.fromtimestamp(operation.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        } for operation in recent]
    except OperationsStorageError:
        state["recent"], healthy = None, False
    state["status"] = "healthy" if healthy else "degraded"
    return healthy, state
