"""What one worker process builds once, at start-up, from the settings: the edge, the queue worker, and what
both stand on.

function_app.py calls `start()` when the Functions host loads it; the entry points then use `edge()`,
`worker()` or `current()`. Nothing is built lazily. Bad settings never stop the import (in Azure the
worker would then index no function and every route would be a silent 404): the runtime is then
`Misconfigured`, logged at CRITICAL once, its edge answers every HTTP call 503 gateway-misconfigured,
and function_app registers no queue function, so nothing queued is taken (or poisoned) meanwhile.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.answer_cache import AnswerCache
from shared.async_calls import AsyncCalls
from shared.configuration import ConfigurationError
from shared.credentials import build_credential
from shared.defender_client import DefenderClient
from shared.edge import Edge, HttpEdge, MisconfiguredEdge
from shared.gateway import Gateway, RetryPolicy
from shared.hash_map import FileHashMap
from shared.lookups import FileAlertsLookups, FileHashResolver
from shared.maintenance import Maintenance
from shared.operations import OperationStore
from shared.operations_table import TableOperationStore
from shared.queues import Queues, StorageQueues, queue_service
from shared.ratelimit import RateLimiters, TableStore, build_rate_limiters
from shared.settings import Settings, load_settings
from shared.storage import DURABLE_CLIENT_OPTIONS, table_client
from shared.worker import RequestWorker


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    gateway: Gateway
    operations: OperationStore
    queues: Queues
    edge: HttpEdge
    worker: RequestWorker
    maintenance: Maintenance


@dataclass(frozen=True)
class Misconfigured:
    """The settings are wrong: the edge that says which (its `error`), and all that serves meanwhile."""

    edge: MisconfiguredEdge


logger = logging.getLogger("mde_alert_gateway")
_runtime: Runtime | Misconfigured | None = None


def rate_limiters(settings: Settings) -> RateLimiters:
    """One table client and one limiter per API, as the settings say."""
    limits = settings.rate_limits
    return build_rate_limiters(
        TableStore(table_client(settings.storage, limits.table_name)), limits.policies.values(),
        margin_seconds=limits.margin_seconds, max_conflict_retries=limits.max_conflict_retries,
        new_state_share=limits.new_state_share)


def build(settings: Settings) -> Runtime:
    """One credential (token cache), one HTTP session, one client per table and queue service, one limiter per API."""
    defender = settings.defender
    client = DefenderClient(defender, build_credential(defender))
    retry = RetryPolicy(max_retries=defender.max_retries, max_retry_after=defender.max_retry_after,
                        total_timeout=defender.total_timeout,
                        attempt_seconds=defender.connect_timeout + defender.read_timeout)
    gateway = Gateway(client, rate_limiters(settings), retry)
    cache = answer_cache(settings)
    asynchronous = settings.asynchronous
    operations = TableOperationStore(
        table_client(settings.storage, asynchronous.operations_table, DURABLE_CLIENT_OPTIONS),
        asynchronous.retention_seconds)
    queues = StorageQueues(queue_service(settings.storage), asynchronous)
    async_calls = AsyncCalls(operations, queues, lease_seconds=defender.total_timeout + 30)
    resolver = FileHashResolver(gateway, FileHashMap(table_client(settings.storage,
                                                                  settings.answer_cache.file_hash_table)))
    edge = HttpEdge(gateway, settings, FileAlertsLookups(gateway, cache, resolver), async_calls)
    worker = RequestWorker(gateway, operations, queues, edge.answers, asynchronous, cache=cache, resolver=resolver)
    return Runtime(settings, gateway, operations, queues, edge, worker, Maintenance(operations, queues))


def answer_cache(settings: Settings) -> AnswerCache | None:
    """The shared answers of repeated lookups (None when FILE_ALERTS_CACHE_SECONDS is 0)."""
    cache = settings.answer_cache
    if not cache.ttl_seconds:
        return None
    return AnswerCache(table_client(settings.storage, cache.table_name), cache.ttl_seconds)


def start(env: Mapping[str, str] | None = None) -> Runtime | Misconfigured:
    """Read the settings (the process environment by default), build this process's runtime from them and keep it
    for the entry points; Misconfigured when they are wrong (never raises for that)."""
    global _runtime
    try:
        _runtime = build(load_settings(os.environ if env is None else env))
    except ConfigurationError as error:
        problems = "; ".join(f"{problem.setting}: {problem.reason}" for problem in error.problems)
        logger.critical("The gateway is misconfigured and serves nothing until its app settings are fixed: %s",
                        problems)
        _runtime = Misconfigured(MisconfiguredEdge(error))
    return _runtime


def current() -> Runtime:
    """The runtime built at start-up (RuntimeError while misconfigured: only the edge serves then)."""
    if not isinstance(_runtime, Runtime):
        raise RuntimeError("shared.runtime.start() has not run, or the settings are wrong: function_app.py starts "
                           "the gateway")
    return _runtime


def edge() -> Edge:
    if _runtime is None:
        raise RuntimeError("shared.runtime.start() has not run: function_app.py starts the gateway")
    return _runtime.edge


def worker() -> RequestWorker:
    return current().worker


def maintenance() -> Maintenance:
    return current().maintenance
