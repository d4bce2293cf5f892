"""What one worker process builds once, at start-up, from the settings: the edge, the queue worker, and what
both stand on.

function_app.py calls `start()` when the Functions host loads it; the entry points then use `edge()`,
`worker()` or `current()`. Nothing is built lazily. Bad settings never stop the import (in Azure the
worker would then index no function and every route would be a silent 404): the runtime is then
`Misconfigured`, logged at CRITICAL once, its edge answers every HTTP call 503 gateway-misconfigured,
and function_app registers no queue function, so nothing queued is taken (or poisoned) meanwhile. Any other
exception while building the runtime (the settings passed, something else failed) ends the same way: caught
here too, logged by its type and place only (its text may hold a secret), and answered without detail.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.answers.mapping import Answers
from shared.asynchronous.calls import AsyncCalls
from shared.asynchronous.maintenance import Maintenance
from shared.asynchronous.operations import OperationStore
from shared.asynchronous.operations_table import TableOperationStore
from shared.asynchronous.queues import Queues, StorageQueues, queue_service
from shared.asynchronous.results import ResultsStore
from shared.asynchronous.results_blob import BlobResultsStore, blob_service
from shared.asynchronous.worker import RequestWorker
from shared.configuration import ConfigurationError
from shared.defender.client import DefenderClient
from shared.defender.credentials import build_credential
from shared.defender.facts import Api
from shared.defender.gateway import Gateway, RetryPolicy
from shared.health import oldest_pending_readings, queue_readings
from shared.history.counters import MinuteCounters
from shared.history.store import HistoryStore
from shared.history.table_store import TableHistoryStore
from shared.http.callers import may_act
from shared.http.edge import HttpEdge
from shared.http.misconfigured import Edge, MisconfiguredEdge
from shared.http.tokens import SigningKeys
from shared.lookups.answer_cache import AnswerCache
from shared.lookups.file_alerts import FileAlertsLookups
from shared.lookups.hash_map import FileHashMap
from shared.lookups.hunting import HUNTING_KIND, HuntingLookups
from shared.ratelimit import RateLimiters, TableStore, build_rate_limiters
from shared.settings import Settings, load_settings, requested_auth
from shared.tables.clients import DURABLE_CLIENT_OPTIONS, table_client
from shared.telemetry.catalogue import OLDEST_PENDING_AGE, QUEUE_DEPTH, RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING
from shared.telemetry.recorder import Telemetry
from shared.telemetry.setup import start_telemetry


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    gateway: Gateway
    operations: OperationStore
    queues: Queues
    edge: HttpEdge
    worker: RequestWorker
    maintenance: Maintenance
    #: The hunting queries the edge and the worker share (their shared answers, the queries in flight).
    hunting: HuntingLookups


@dataclass(frozen=True)
class Misconfigured:
    """The settings are wrong, or the start failed otherwise: the edge that says so (its `error`: the bad settings,
    None for another failure), and all that serves meanwhile."""

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
    storage, asynchronous = settings.storage, settings.asynchronous
    results = BlobResultsStore.of(blob_service(storage), asynchronous.results_container)
    return compose(
        settings,
        DefenderClient(settings.defender, build_credential(settings.defender)),
        rate_limiters(settings),
        TableOperationStore(table_client(storage, asynchronous.operations_table, DURABLE_CLIENT_OPTIONS),
                            asynchronous.retention_seconds, results=results),
        StorageQueues(queue_service(storage), asynchronous),
        cache=answer_cache(settings),
        hash_map=FileHashMap(table_client(storage, settings.answer_cache.file_hash_table)),
        history=TableHistoryStore(table_client(storage, asynchronous.history_table)),
        telemetry=start_telemetry(settings.telemetry), results=results, hunting_cache=hunting_cache(settings))


def compose(settings: Settings, client: DefenderClient, limiters: RateLimiters, operations: OperationStore,
            queues: Queues, *, cache: AnswerCache | None = None, hash_map: FileHashMap | None = None,
            clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
            monotonic: Callable[[], float] = time.monotonic, telemetry: Telemetry | None = None,
            keys: SigningKeys | None = None, history: HistoryStore | None = None,
            results: ResultsStore | None = None, hunting_cache: AnswerCache | None = None) -> Runtime:
    """The runtime over the given client, limiters and stores (Azure's in `build`; in-process twins in the unit
    tests): one gateway, one lookups object and one answer mapping that the edge and the worker share. `keys`: the
    Entra token issuer's signing keys (None: its published JWKS, read when a token first comes); `history`: where
    the operator page's last hour is kept (None: no history); `results`: where answers too large for an operation's
    record are kept (the operation store's; the sweep deletes them past their expiry); `hunting_cache`: the shared
    hunting answers (None: HUNTING_SHARE_SECONDS is 0, every query goes to Graph)."""
    defender = settings.defender
    retry = RetryPolicy(defender)
    telemetry = telemetry or Telemetry()
    counters = MinuteCounters(history, clock=clock) if history is not None else None
    gateway = Gateway(client, limiters, retry, sleep=sleep, monotonic=monotonic, telemetry=telemetry,
                      counters=counters)
    answers = Answers(defender, settings.rate_limits.policies, cache.ttl_seconds if cache else None,
                      hunting_share=hunting_cache.ttl_seconds if hunting_cache else None)
    lookups = FileAlertsLookups(gateway, cache, hash_map)
    hunting = HuntingLookups(gateway, hunting_cache)
    asynchronous = settings.asynchronous
    # An operation run here (Idempotency-Key on a synchronous call) holds its lease for the longest synchronous call.
    async_calls = AsyncCalls(operations, queues, lease_seconds=max(map(defender.deadline_of, Api)) + 30,
                             clock=clock, telemetry=telemetry)
    edge = HttpEdge(gateway, answers, settings.access, lookups=lookups, async_calls=async_calls,
                    async_on_throttle=asynchronous.async_on_throttle, clock=clock, keys=keys, hunting=hunting)
    worker = RequestWorker(gateway, operations, queues, answers, asynchronous, lookups=lookups, hunting=hunting,
                           clock=clock,
                           sleep=sleep, may_act=functools.partial(may_act, settings.access))
    telemetry.observe(RATE_LIMIT_REMAINING, gateway.budget_readings)
    telemetry.observe(RATE_LIMIT_LIMIT, gateway.limit_readings)
    telemetry.observe(QUEUE_DEPTH, lambda: queue_readings(queues, gateway.apis))
    telemetry.observe(OLDEST_PENDING_AGE, lambda: oldest_pending_readings(operations, clock))
    return Runtime(settings, gateway, operations, queues, edge, worker,
                   Maintenance(operations, queues, clock=clock, counters=counters, apis=gateway.apis,
                               results=results), hunting)


def answer_cache(settings: Settings) -> AnswerCache | None:
    """The shared answers of repeated lookups (None when FILE_ALERTS_CACHE_SECONDS is 0)."""
    cache = settings.answer_cache
    if not cache.ttl_seconds:
        return None
    return AnswerCache(table_client(settings.storage, cache.table_name), cache.ttl_seconds)


def hunting_cache(settings: Settings) -> AnswerCache | None:
    """The shared answers of identical hunting queries (None when HUNTING_SHARE_SECONDS is 0: the default)."""
    cache = settings.answer_cache
    if not cache.hunting_share_seconds:
        return None
    return AnswerCache(table_client(settings.storage, cache.table_name), cache.hunting_share_seconds,
                       kind=HUNTING_KIND)


def start(env: Mapping[str, str] | None = None) -> Runtime | Misconfigured:
    """Read the settings (the process environment by default), build this process's runtime from them and keep it
    for the entry points; Misconfigured when they are wrong or anything else fails while building (never raises:
    an exception here would leave the app with no function at all, every route a 404)."""
    global _runtime
    env = os.environ if env is None else env
    try:
        _runtime = build(load_settings(env))
    except ConfigurationError as error:
        problems = "; ".join(f"{problem.setting}: {problem.reason}" for problem in error.problems)
        logger.critical("The gateway is misconfigured and serves nothing until its app settings are fixed: %s",
                        problems)
        _runtime = Misconfigured(MisconfiguredEdge(error, requested_auth(env)))
    except Exception as error:  # whatever else failed: still an app that says so rather than one with no function
        logger.critical("The gateway could not start (%s raised at %s) and serves nothing until it is restarted with "
                        "the cause fixed; the error's text is not logged, as it may hold a secret.",
                        type(error).__name__, raised_at(error))
        _runtime = Misconfigured(MisconfiguredEdge(None, requested_auth(env)))
    return _runtime


def raised_at(error: BaseException) -> str:
    """Where `error` was raised, as `file.py:line in function` (no values, so nothing secret)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "an unknown place"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"


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
