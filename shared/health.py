"""GET /api/health: what an operator watching a storm drain needs, per API, read live.

Per API: whether a call would be admitted now and the budget each window has left (a read of the
shared rate-limit state, no slot taken), pending operations and the oldest one's age, and the depth
of its waiting queue. Overall: the request queue's depth, every poison queue's, whether tables
and queues answer, and whether the identity gives a token for Defender (`identity`) and for Microsoft
Graph (`graphIdentity`: advanced hunting), each asked on its own (one failing never hides the other).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from shared.asynchronous.operations import OperationsStorageError, OperationStore
from shared.asynchronous.queue_names import POISON_SUFFIX
from shared.asynchronous.queues import Queues
from shared.defender.client import IdentityError
from shared.defender.facts import API_FACTS, Api, Service
from shared.defender.gateway import Gateway, Identity
from shared.ratelimit import Decision, RateLimitStorageError
from shared.ratelimit.sliding_log import LogState
from shared.telemetry import catalogue
from shared.telemetry.recorder import Readings

#: The budgets' logs a report read, by (tenant id, API): the operator page charts their admissions.
Logs = dict[tuple[str, Api], LogState]


def health_report(gateway: Gateway, operations: OperationStore, queues: Queues, *,
                  clock: Callable[[], float] = time.time, logs: Logs | None = None) -> tuple[bool, dict[str, Any]]:
    """(healthy, report): healthy when storage, queues and the identity all answer. `logs`, when given, gets each
    budget's log as read for the report (no further storage request)."""
    now = clock()
    pending: dict[Api, list[float]] = {api: [] for api in gateway.apis}
    tables_ok = True
    try:
        for row in operations.pending():
            pending.setdefault(row.api, []).append(row.created_at)
    except OperationsStorageError:
        tables_ok = False
    depths = {name: (queues.depth(name), queues.depth(name + POISON_SUFFIX))
              for name in (queues.requests_name, *(queues.waiting_name(api) for api in gateway.apis))}
    queues_ok = all(depth is not None for pair in depths.values() for depth in pair)
    identities = {service: _identity(gateway, None, service) for service in _services(gateway)}
    apis: dict[str, Any] = {}
    for api in gateway.apis:
        entry: dict[str, Any] = {"pendingOperations": len(pending[api]),
                                 "oldestPendingAgeSeconds": int(now - min(pending[api])) if pending[api] else None,
                                 "waitingQueue": _queue(queues.waiting_name(api), depths)}
        identity = identities[API_FACTS[api].service]
        if isinstance(identity, Identity):
            try:
                decision, log = gateway.inspect(api, identity)
                if logs is not None:
                    logs[(identity.tenant, api)] = log
                entry.update(_budget(decision))
            except RateLimitStorageError:
                tables_ok = False
        apis[api.value] = entry
    identity_ok = {service: isinstance(identity, Identity) for service, identity in identities.items()}
    healthy = tables_ok and queues_ok and all(identity_ok.values())
    report: dict[str, Any] = {
        "status": "healthy" if healthy else "degraded",
        "checkedAt": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "storage": {"tables": tables_ok, "queues": queues_ok}, "identity": identity_ok[Service.DEFENDER],
        **({"graphIdentity": identity_ok[Service.GRAPH]} if Service.GRAPH in identity_ok else {}),
        "queue": _queue(queues.requests_name, depths),
        "apis": apis,
    }
    multi = gateway.client.settings.multi_tenant
    if multi is not None:
        report["tenants"] = [_tenant(gateway, tenant.id, tenant.name, logs) for tenant in multi.tenants]
    return healthy, report


def _services(gateway: Gateway) -> tuple[Service, ...]:
    """Whose tokens the gateway needs: Defender's always, Graph's when it has a budget for an API Graph serves."""
    return (Service.DEFENDER, *((Service.GRAPH,) if any(API_FACTS[api].service is Service.GRAPH
                                                        for api in gateway.apis) else ()))


def _identity(gateway: Gateway, tenant: str | None, service: Service) -> Identity | IdentityError:
    try:
        return gateway.identity(tenant, service)
    except IdentityError as error:
        return error


def _budget(decision: Decision) -> dict[str, Any]:
    """An API's budget as the report shows it; `currentLimit` is below `limit` while a new state admits only its
    share of the window (see shared.ratelimit.sliding_log)."""
    return {"admitsNow": decision.admitted, "retryAfter": decision.retry_after, "windows": [
        {"limit": w.limit, "windowSeconds": w.window_seconds, "remaining": w.remaining,
         "resetSeconds": w.reset_seconds, "currentLimit": w.current_limit} for w in decision.windows]}


def _tenant(gateway: Gateway, tenant_id: str, name: str, logs: Logs | None) -> dict[str, Any]:
    """A customer tenant's budgets (its own: Defender counts per tenant), or why its token is missing; whether it
    gives a token for Graph's scope too (`graphIdentity`, and `graphReason` when not). A tenant that has not
    consented does not make the gateway unhealthy: the others are served."""
    entry: dict[str, Any] = {"id": tenant_id, "name": name}
    if Service.GRAPH in _services(gateway):
        graph = _identity(gateway, tenant_id, Service.GRAPH)
        entry["graphIdentity"] = isinstance(graph, Identity)
        if isinstance(graph, IdentityError):
            entry["graphReason"] = graph.reason
    try:
        identity = gateway.identity(tenant_id)
    except IdentityError as error:
        return {**entry, "identity": False, "reason": error.reason}
    apis: dict[str, Any] = {}
    for api in gateway.apis:
        try:
            decision, log = gateway.inspect(api, identity)
        except RateLimitStorageError:
            continue
        if logs is not None:
            logs[(identity.tenant, api)] = log
        apis[api.value] = _budget(decision)
    return {**entry, "identity": True, "apis": apis}


def _queue(name: str, depths: dict[str, tuple[int | None, int | None]]) -> dict[str, Any]:
    depth, poison_depth = depths[name]
    return {"name": name, "depth": depth, "poisonDepth": poison_depth}


def queue_readings(queues: Queues, apis: Iterable[Api]) -> Readings:
    """The depth of every queue the gateway reads and of its poison queue (the queue depth gauge): `requests`,
    `waiting-<api>`, each also with `-poison`. A queue that cannot be read gives no reading."""
    names = {"requests": queues.requests_name, **{f"waiting-{api.value}": queues.waiting_name(api) for api in apis}}
    for label, name in names.items():
        for suffix in ("", POISON_SUFFIX):
            depth = queues.depth(name + suffix)
            if depth is not None:
                yield float(depth), {catalogue.QUEUE: label + suffix}


def oldest_pending_readings(operations: OperationStore, clock: Callable[[], float] = time.time) -> Readings:
    """The age of the oldest pending operation, 0 when none (raises OperationsStorageError: no reading)."""
    oldest = min((row.created_at for row in operations.pending()), default=None)
    yield (max(0.0, clock() - oldest) if oldest is not None else 0.0), {}
