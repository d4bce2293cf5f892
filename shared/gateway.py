"""The gateway's one job per call: name the caller identity, take a shared rate-limit slot, call Defender.

Order matters: input is validated before this runs (no quota for bad input), the token comes
before the slot (an identity failure spends nothing), and a Defender 429 blocks every instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.credentials import principal_of
from shared.defender_client import AccessToken, DefenderClient
from shared.problems import ProblemError
from shared.ratelimit import (
    CREATE_ALERT,
    FILE_ALERTS,
    Decision,
    RateLimiters,
    RateLimitStorageError,
    policy_header,
    rate_limit_headers,
)
from shared.retry import RetryGate, ThrottleHook
from shared.upstream import UpstreamAnswer, UpstreamThrottledError

logger = logging.getLogger("mde_alert_gateway")

__all__ = ["CREATE_ALERT", "FILE_ALERTS", "Gateway", "GatewayResponse"]


@dataclass(frozen=True)
class GatewayResponse:
    """A successful answer for the caller: Defender's body unchanged, plus rate-limit headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _refusal(decision: Decision, headers: dict[str, str]) -> ProblemError:
    return ProblemError(
        429, "Rate limit reached",
        f"The gateway holds this call so that Defender never throttles the shared identity; retry after "
        f"{decision.retry_after} s. Nothing was sent to Defender.", "rate-limited",
        headers=headers)


class Gateway:
    """Binds the Defender client to the shared rate limiters of both APIs."""

    def __init__(self, client: DefenderClient, limiters: RateLimiters) -> None:
        self._client = client
        self._limiters = limiters

    def policy_headers(self, api: str) -> dict[str, str]:
        """`RateLimit-Policy` alone, for answers given before the limiter is consulted."""
        return {"RateLimit-Policy": policy_header(self._limiters.for_api(api).policy)}

    def file_alerts(self, sha1: str, correlation_id: str) -> GatewayResponse:
        return self._call(FILE_ALERTS, correlation_id, lambda token, gate, hook: self._client.get_file_alerts(
            sha1, token, correlation_id=correlation_id, retry_gate=gate, on_throttle=hook))

    def create_alert(self, body: dict[str, str], correlation_id: str) -> GatewayResponse:
        return self._call(CREATE_ALERT, correlation_id, lambda token, gate, hook: self._client.create_alert(
            body, token, correlation_id=correlation_id, retry_gate=gate, on_throttle=hook))

    def _call(self, api: str, correlation_id: str,
              send: Callable[[AccessToken, RetryGate, ThrottleHook], UpstreamAnswer]) -> GatewayResponse:
        token = self._client.token()
        principal = principal_of(token.value)
        limiter = self._limiters.for_api(api)
        decision = limiter.acquire(principal)
        headers = rate_limit_headers(decision)
        if not decision.admitted:
            logger.info("%s refused by the shared rate limit, retry after %d s [correlation %s]", api,
                        decision.retry_after, correlation_id)
            raise _refusal(decision, headers)

        def before_retry() -> None:
            # Every attempt that may reach Defender takes a slot, retries included.
            retry_decision = limiter.acquire(principal)
            headers.update(rate_limit_headers(retry_decision))
            if not retry_decision.admitted:
                raise _refusal(retry_decision, headers)

        shared_block_until = 0.0

        def on_throttle(retry_after: float) -> None:
            # Defender said 429: every instance holds this API until its Retry-After has passed.
            # The same 429 is reported by the retry policy and again when it reaches the caller.
            nonlocal shared_block_until
            until = time.time() + retry_after
            if until <= shared_block_until + 1:
                return
            shared_block_until = until
            try:
                limiter.block(principal, retry_after)
            except RateLimitStorageError as error:
                # This instance holds calls anyway (the block is kept in process before the write);
                # the caller still gets Defender's 429 rather than a 503.
                logger.warning("%s: could not share Defender's 429 block: %s [correlation %s]", api, error,
                               correlation_id)

        try:
            answer = send(token, before_retry, on_throttle)
        except UpstreamThrottledError as throttled:
            on_throttle(throttled.retry_after)
            throttled.headers.update(headers)
            raise
        except ProblemError as problem:
            problem.headers.update(headers)
            raise
        return GatewayResponse(answer.status, answer.body, headers)
