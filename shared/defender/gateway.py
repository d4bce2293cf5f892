"""The one call path to Defender: take a shared rate-limit slot, send once, classify; retry on top.

    Gateway.call(request)            the HTTP path: attempts, retried as RetryPolicy allows, within the total time
      Gateway.attempt(request)       one slot + one request: Refused (nothing sent) or Sent(outcome)
        RateLimiter.acquire          shared budget in the state store (RateLimitStorageError: refuse)
        DefenderClient.send          one HTTP request -> typed outcome
        RateLimiter.block            a Defender 429 holds the API on every instance: exactly once per 429
                                     (Graph's hunting CPU 429: until the time its body names, see cpu_block_end)

Order matters: input is validated before this runs (no quota for bad input), the token comes before
the slot (an identity failure spends nothing), and every request that may reach Defender has a slot.
A caller that must not sleep long (the queue worker) uses `admit` and `send` itself and reschedules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.defender.client import AccessToken, DefenderClient, DefenderRequest, IdentityError
from shared.defender.credentials import principal_of
from shared.defender.facts import API_FACTS, DEFAULT_THROTTLE_SECONDS, HUNTING_CPU_CYCLE_SECONDS, Api, Service
from shared.defender.outcomes import (
    Outcome,
    Reach,
    Throttled,
    ThrottleKind,
    Unavailable,
    outcome_name,
    outcome_status,
)
from shared.defender.settings import DefenderSettings
from shared.history.counters import MinuteCounters
from shared.history.store import Count
from shared.ratelimit import Decision, RateLimiters, RateLimitStorageError, RatePolicy, WindowState
from shared.ratelimit.sliding_log import LogState
from shared.telemetry import catalogue
from shared.telemetry.catalogue import SpanName
from shared.telemetry.recorder import Readings, Telemetry

logger = logging.getLogger("mde_alert_gateway")

#: What a GET is retried on besides throttling and transport failures (urllib3's old status_forcelist).
GET_RETRY_STATUSES = frozenset({502, 503, 504})
#: Statuses whose Retry-After makes even a POST safe to repeat: Defender refused it without acting on it.
POST_RETRY_AFTER_STATUSES = frozenset({503})


@dataclass(frozen=True)
class Identity:
    """The gateway's token and the principal whose Defender quota it spends (tenant | application); `service`: whose
    audience the token is for (Defender's, or Graph's for hunting: the same principal, another token)."""

    token: AccessToken
    principal: str
    service: Service = Service.DEFENDER

    @property
    def tenant(self) -> str:
        """The tenant id whose quota the token spends (the principal's first part)."""
        return self.principal.split("|", 1)[0]


@dataclass(frozen=True)
class Refused:
    """The shared budget had no room (or Defender's block holds): nothing was sent."""

    decision: Decision


@dataclass(frozen=True)
class Sent:
    """One request went to Defender with a slot (`decision`) and came to `outcome`."""

    outcome: Outcome
    decision: Decision
    #: How long the request itself took (monotonic seconds around DefenderClient.send: no token, slot or backoff);
    #: Defender's hunting shape states it as Stats.ExecutionTime.
    seconds: float = 0.0
    #: After a 429: how long the shared block it set holds from the answer, in seconds (computed once, in
    #: Gateway._block: the caller's Retry-After for Graph's CPU 429 and the worker's reschedule both take it). None
    #: when the answer was no 429.
    blocked_for: float | None = None


Attempt = Refused | Sent


@dataclass(frozen=True)
class CallResult:
    """Where a call ended: its last attempt, and what Defender said last (even if a retry was then refused)."""

    last: Attempt
    #: Requests that went to Defender.
    sent: int
    #: Defender's last answer, None if nothing was sent.
    outcome: Outcome | None

    @property
    def seconds(self) -> float:
        """How long the last request itself took (Sent.seconds; 0 if the last attempt sent nothing)."""
        return self.last.seconds if isinstance(self.last, Sent) else 0.0

    @property
    def decision(self) -> Decision:
        """The last rate-limit decision: the state the caller's RateLimit headers describe."""
        return self.last.decision


@dataclass(frozen=True)
class RetryPolicy:
    """What the HTTP path retries, how long it waits, and when it gives up.

    GET: throttling, 502/503/504 and transport failures. POST: only when it surely did not reach
    Defender, or Defender said 429/503 with a Retry-After, so a create is never duplicated.
    A Retry-After above `max_retry_after` is handed back to the caller instead of waited out.
    How long an attempt and a synchronous call may take is the settings' (DefenderSettings.attempt_seconds_of,
    deadline_of): defined there once, read here.
    """

    settings: DefenderSettings
    backoff_factor: float = 0.5
    backoff_max: float = 8.0

    @property
    def max_retries(self) -> int:
        return self.settings.max_retries

    @property
    def max_retry_after(self) -> float:
        return self.settings.max_retry_after

    def attempt_seconds_of(self, api: Api) -> float:
        """The longest one attempt at `api` can take (a hunting query waits for Graph's, up to 3 minutes)."""
        return self.settings.attempt_seconds_of(api)

    def deadline_of(self, api: Api) -> float:
        """The longest a synchronous call to `api` takes, retries included."""
        return self.settings.deadline_of(api)

    @property
    def retry_room_seconds(self) -> float:
        """What must still fit before the deadline for a retry to start: an ordinary attempt (connect +
        MDE_READ_TIMEOUT_SECONDS), for hunting too: a query usually answers in seconds, and one that runs on is cut
        at the deadline (a timeout)."""
        return self.attempt_seconds_of(Api.CREATE_ALERT)

    def wait_before_retry(self, method: str, outcome: Outcome, retries_done: int) -> float | None:
        """Seconds to wait before retrying after `outcome`, or None: do not retry."""
        if retries_done >= self.max_retries or not self.retryable(method, outcome):
            return None
        retry_after = outcome.retry_after if isinstance(outcome, Throttled | Unavailable) else None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        if isinstance(outcome, Throttled):
            return None  # no Retry-After: the shared block holds the API for DEFAULT_THROTTLE_SECONDS anyway
        # Exponential backoff as urllib3 does it: the first retry at once, then factor * 2**n, capped.
        return 0.0 if retries_done == 0 else min(self.backoff_max, self.backoff_factor * 2 ** retries_done)

    @staticmethod
    def retryable(method: str, outcome: Outcome) -> bool:
        """Whether repeating a request after `outcome` is safe and may help (a POST only if it cannot duplicate).

        Never Graph's hunting CPU 429 (the tenant's CPU is spent until the block ends). A hunting query that ran too
        long (504, or a read timeout after it left) is a POST that may have reached Graph: never repeated either."""
        if isinstance(outcome, Throttled) and outcome.kind is ThrottleKind.CPU:
            return False
        if method == "GET":
            return isinstance(outcome, Throttled) or (
                isinstance(outcome, Unavailable) and (outcome.status is None or outcome.status in GET_RETRY_STATUSES))
        if isinstance(outcome, Unavailable) and outcome.reach is Reach.NOT_SENT:
            return True
        if isinstance(outcome, Throttled):
            return outcome.retry_after is not None
        return (isinstance(outcome, Unavailable) and outcome.status in POST_RETRY_AFTER_STATUSES
                and outcome.retry_after is not None)


class Gateway:
    """Binds the Defender client to the shared rate limiters of its APIs, with one retry policy for HTTP."""

    def __init__(self, client: DefenderClient, limiters: RateLimiters, retry: RetryPolicy, *,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic,
                 telemetry: Telemetry | None = None, counters: MinuteCounters | None = None) -> None:
        self.client = client
        #: The operator page's history of refusals and Defender's 429s (None: not kept).
        self.counters = counters
        self._limiters = limiters
        self.retry = retry
        self._sleep = sleep
        self._monotonic = monotonic
        self.telemetry = telemetry or Telemetry()
        #: The last decision this process saw per API (the budget gauges read it: no storage request).
        self._last: dict[Api, Decision] = {}

    def budget_readings(self) -> Readings:
        """Calls left in each window of each API, as this process last saw them within that window (for the gauges:
        an instance that has seen nothing for a whole window reports nothing for it, not a stale count)."""
        for api, window in self._recent_windows():
            yield float(window.remaining), {catalogue.API: api.value, catalogue.WINDOW: window.name}

    def limit_readings(self) -> Readings:
        for api, window in self._recent_windows():
            yield float(window.limit), {catalogue.API: api.value, catalogue.WINDOW: window.name}

    def _recent_windows(self) -> Iterator[tuple[Api, WindowState]]:
        for api, decision in list(self._last.items()):
            now = self._limiters.for_api(api).clock.now()
            for window in decision.windows:
                if now - decision.decided_at < window.window_seconds:
                    yield api, window

    @property
    def apis(self) -> tuple[Api, ...]:
        """The APIs this gateway has a budget for."""
        return tuple(Api(name) for name in self._limiters.by_api)

    def identity(self, tenant: str | None = None, service: Service = Service.DEFENDER) -> Identity:
        """The token to call `service` with (Defender, or Graph for hunting: `request.service`) in the home tenant or
        customer tenant `tenant`, and whose quota it uses (each tenant's own, see principal_of); IdentityError if the
        identity gives none, or one that names no tenant or another tenant."""
        token = self.client.token(tenant, service)
        multi = self.client.settings.multi_tenant
        try:
            principal = principal_of(token.value, tenant, multi)
        except ValueError as error:  # fail closed: nothing is read, spent or sent for an unknown principal
            raise IdentityError(self.client.settings.upstream(service).scope, str(error),
                                tenant=multi.find(tenant) if multi and tenant else None) from None
        return Identity(token, principal, service)

    def admit(self, api: Api, identity: Identity, correlation_id: str) -> Decision:
        """Take a slot of `api`'s shared budget (or be refused). Raises RateLimitStorageError if it cannot be read."""
        with self.telemetry.span(SpanName.RATE_LIMIT, {catalogue.API: api.value,
                                                      catalogue.CORRELATION_ID: correlation_id}) as span:
            decision = self._limiters.for_api(api).acquire(identity.principal)
            span.set_attribute(catalogue.DECISION, decision.reason.value)
        self._last[api] = decision
        self.telemetry.rate_limit_decision(api.value, decision.reason.value)
        if not decision.admitted:
            self._count(api, identity, Count.REFUSED)
            logger.info("%s refused by the shared rate limit (%s), retry after %d s [correlation %s]", api,
                        decision.reason, decision.retry_after, correlation_id)
        return decision

    def known_refusal(self, api: Api, identity: Identity) -> Decision | None:
        """The refusal `api`'s budget gives now by what this process remembers (no storage request), else None."""
        return self._limiters.for_api(api).known_refusal(identity.principal)

    def peek(self, api: Api, identity: Identity) -> Decision:
        """What a call to `api` would be told now, without taking a slot (for reports)."""
        return self._limiters.for_api(api).peek(identity.principal)

    def inspect(self, api: Api, identity: Identity) -> tuple[Decision, LogState]:
        """`peek`, and the budget's log of admissions (for the operator page's history); one storage read."""
        return self._limiters.for_api(api).inspect(identity.principal)

    def policy(self, api: Api) -> RatePolicy:
        """The windows of `api`'s budget."""
        return self._limiters.for_api(api).policy

    def _count(self, api: Api, identity: Identity, what: Count) -> None:
        if self.counters is not None:
            self.counters.count(api.value, identity.tenant, what)

    def send(self, request: DefenderRequest, identity: Identity, decision: Decision, correlation_id: str, *,
             time_left: float | None = None) -> Attempt:
        """Send once on the slot `decision` admitted; a Defender 429 becomes a shared block, exactly once.

        A slot that has grown stale by the time the request is about to leave (this thread stalled after the
        admission: a GC pause, a CPU-starved instance, a slow table write) is not used: a new one is taken,
        and when none is free the call is Refused with nothing sent. See RateLimiter.stale.
        """
        if identity.service is not request.service:  # a Defender token must never go to Graph, nor the reverse
            raise ValueError(f"a {request.api} request needs the identity for {request.service}: "
                             "gateway.identity(tenant, request.service)")
        limiter = self._limiters.for_api(request.api)
        while limiter.stale(decision):
            logger.warning("%s: the slot taken %.0f ms ago is too old to send on; taking a new one [correlation %s]",
                           request.api, (limiter.clock.now() - decision.decided_at) * 1000, correlation_id)
            decision = self.admit(request.api, identity, correlation_id)
            if not decision.admitted:
                return Refused(decision)
        started = self._monotonic()
        with self.telemetry.span(SpanName.DEFENDER, {catalogue.API: request.api.value,
                                                    catalogue.CORRELATION_ID: correlation_id}) as span:
            outcome = self.client.send(request, identity.token, correlation_id=correlation_id, time_left=time_left)
            name, status = outcome_name(outcome), outcome_status(outcome)
            span.set_attributes({catalogue.OUTCOME: name, catalogue.STATUS: status or 0})
        seconds = self._monotonic() - started
        self.telemetry.defender_request(request.api.value, name, status, seconds,
                                        limit=outcome.kind.value if isinstance(outcome, Throttled) else "calls")
        blocked_for = None
        if isinstance(outcome, Throttled):
            self._count(request.api, identity, Count.THROTTLED)
            blocked_for = self._block(request.api, identity, outcome, correlation_id)
        return Sent(outcome, decision, seconds, blocked_for)

    def _block(self, api: Api, identity: Identity, outcome: Throttled, correlation_id: str) -> float:
        """Defender (or Graph) said 429: every instance holds this API until its Retry-After has passed (else
        DEFAULT_THROTTLE_SECONDS), or, for Graph's hunting CPU 429, until the end cpu_block_end gives. Computed here
        alone: returned as the seconds the block holds from now, for the caller's Retry-After and the worker's
        reschedule."""
        limiter = self._limiters.for_api(api)
        now = limiter.clock.now()
        end = cpu_block_end(now, outcome.until, outcome.retry_after) if outcome.kind is ThrottleKind.CPU else None
        wait = end - now if end is not None else \
            outcome.retry_after if outcome.retry_after is not None else float(DEFAULT_THROTTLE_SECONDS)
        try:
            if end is not None:
                limiter.block_until(identity.principal, end, kind=ThrottleKind.CPU.value)
                self.telemetry.cpu_block(api.value)
                logger.warning("%s: the tenant's hunting CPU quota is exhausted; every instance holds %s until %s "
                               "(%.0f s) [correlation %s]", api, identity.tenant, _utc(end), end - now,
                               correlation_id)
            else:
                limiter.block(identity.principal, wait)
        except RateLimitStorageError as error:
            # This instance holds calls anyway (the block is kept in process before the write).
            logger.warning("%s: could not share %s's 429 block: %s [correlation %s]", api,
                           API_FACTS[api].service.display_name, error, correlation_id)
        return wait

    def attempt(self, request: DefenderRequest, identity: Identity, correlation_id: str, *,
                time_left: float | None = None) -> Attempt:
        """Take a slot and, if admitted, send once. Raises RateLimitStorageError if the budget cannot be read."""
        decision = self.admit(request.api, identity, correlation_id)
        if not decision.admitted:
            return Refused(decision)
        return self.send(request, identity, decision, correlation_id, time_left=time_left)

    def call(self, request: DefenderRequest, correlation_id: str, *, identity: Identity | None = None) -> CallResult:
        """The HTTP path: identity, then attempts retried as the policy allows, all within its total time."""
        with self.telemetry.span(SpanName.CALL, {catalogue.API: request.api.value,
                                                catalogue.CORRELATION_ID: correlation_id}):
            return self._call(request, correlation_id, identity or self.identity(request.tenant, request.service))

    def _call(self, request: DefenderRequest, correlation_id: str, identity: Identity) -> CallResult:
        deadline = self._monotonic() + self.retry.deadline_of(request.api)
        sent = 0
        outcome: Outcome | None = None
        last: Sent | None = None
        while True:
            try:
                attempt = self.attempt(request, identity, correlation_id, time_left=deadline - self._monotonic())
            except RateLimitStorageError as error:
                if last is None:
                    raise
                # The budget cannot be read for a retry: no retry, and the caller hears what Defender said.
                logger.warning("%s: no retry, the rate-limit storage failed: %s [correlation %s]", request.api,
                               error, correlation_id)
                return CallResult(last, sent, outcome)
            if isinstance(attempt, Refused):
                return CallResult(attempt, sent, outcome)
            last, sent, outcome = attempt, sent + 1, attempt.outcome
            wait = self.retry.wait_before_retry(request.method, outcome, sent - 1)
            if wait is None or self._monotonic() + wait + self.retry.retry_room_seconds > deadline:
                return CallResult(attempt, sent, outcome)
            self._sleep(wait)


def cpu_block_end(now: float, until: float | None, retry_after: float | None) -> float:
    """When a hunting CPU block ends (epoch seconds), from Graph's 429 at `now`: the time its message names, else
    its Retry-After, else the next cycle boundary (UTC, HUNTING_CPU_CYCLE_SECONDS: Graph's CPU allocation renews
    every 15 minutes); never later than that boundary plus one cycle (a clock or message gone wrong cannot hold the
    tenant for hours), and at least a second from now (a named time already past, by clock skew, still holds)."""
    cycle = HUNTING_CPU_CYCLE_SECONDS
    boundary = (now // cycle + 1) * cycle
    end = until if until is not None else now + retry_after if retry_after is not None else boundary
    return max(now + 1.0, min(end, boundary + cycle))


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
