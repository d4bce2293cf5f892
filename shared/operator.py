"""The operator page's state (GET /api/operator/state): the health report (budgets per API and window, pending
operations, queue depths), the poisoned requests with whether each may be re-driven, and the operations of the
last minutes with their outcome, and the last hour per minute (`history`: see shared.history). Each part that
cannot be read is null and the state says degraded."""

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
from shared.health import Logs, health_report
from shared.history.series import Budget, first_minute, history
from shared.history.store import HistoryStorageError

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
    logs: Logs = {}
    healthy, state = health_report(gateway, operations, queues, clock=clock, logs=logs)
    state["history"] = _history(gateway, queues, logs, clock()) if gateway.counters is not None else None
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


def _history(gateway: Gateway, queues: Queues, logs: Logs, now: float) -> dict[str, Any] | None:
    """The last hour: admissions from the budgets' logs just read, the rest from the history and the counts this
    instance has not flushed yet (so what it counted shows at once, and the read writes nothing). None when the
    history cannot be read."""
    counters = gateway.counters
    assert counters is not None
    try:
        rows = [*counters.store.since(first_minute(now)), *counters.unflushed()]
    except HistoryStorageError:
        return None
    multi = gateway.client.settings.multi_tenant
    names = {tenant.id: tenant.name for tenant in multi.tenants} if multi is not None else {}
    budgets = []
    for (tenant, api), log in logs.items():
        policy = gateway.policy(api)
        shortest = min(policy.windows, key=lambda window: window.seconds)
        span_ms = max(window.seconds for window in policy.windows) * 1000
        full = len(log.admissions_ms) >= policy.longest_log
        budgets.append(Budget(
            names.get(tenant, "home"), tenant, api.value, log.admissions_ms, shortest.limit * 60 / shortest.seconds,
            log.admissions_ms[0] if full else max(log.since_ms, int(now * 1000) - span_ms)))
    return history(now, rows, budgets, [("requests", queues.requests_name),
                                         *((api.value, queues.waiting_name(api)) for api in gateway.apis)])
