"""urllib3 retries for calls to Defender: safe for POST, bounded in time, and counted by the rate limiter.

The retry policy lives on the shared requests.Session, so what differs per call (the deadline,
and the gate that takes a rate-limit slot before each retry) travels in context variables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

#: Called right before a retry goes out; raises to stop retrying (e.g. the rate limit is spent).
RetryGate = Callable[[], None]
#: Called with Defender's Retry-After (seconds) whenever it answers 429, retried or not.
ThrottleHook = Callable[[float], None]

_gate: ContextVar[RetryGate | None] = ContextVar("defender_retry_gate", default=None)
_on_throttle: ContextVar[ThrottleHook | None] = ContextVar("defender_on_throttle", default=None)
_deadline: ContextVar[float | None] = ContextVar("defender_retry_deadline", default=None)

GET_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@contextmanager
def retry_scope(*, deadline: float, gate: RetryGate | None,
                on_throttle: ThrottleHook | None = None) -> Iterator[None]:
    """Within this block, retries stop so that the last attempt can end by `deadline` (monotonic)."""
    tokens = (_deadline.set(deadline), _gate.set(gate), _on_throttle.set(on_throttle))
    try:
        yield
    finally:
        _on_throttle.reset(tokens[2])
        _gate.reset(tokens[1])
        _deadline.reset(tokens[0])


class DefenderRetry(Retry):
    """GET: 429/502/503/504 and connection errors. POST: only when it surely did not reach Defender
    (connect errors) or Defender said 429/503 with Retry-After, so a create is never duplicated."""

    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def __init__(self, *args: Any, max_retry_after: float = 10.0, attempt_seconds: float = 35.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("allowed_methods", frozenset({"GET"}))
        kwargs.setdefault("status_forcelist", GET_RETRY_STATUSES)
        kwargs.setdefault("raise_on_status", False)
        kwargs.setdefault("respect_retry_after_header", True)
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after
        self.attempt_seconds = attempt_seconds

    def new(self, **kw: Any) -> DefenderRetry:
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        retry.attempt_seconds = self.attempt_seconds
        return retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            return bool(self.total) and has_retry_after and status_code in self.RETRY_AFTER_STATUS_CODES
        return super().is_retry(method, status_code, has_retry_after)

    def increment(self, method: str | None = None, url: str | None = None,
                  response: BaseHTTPResponse | None = None, error: Exception | None = None,
                  _pool: ConnectionPool | None = None, _stacktrace: TracebackType | None = None) -> DefenderRetry:
        if response is not None and response.status == 429:
            on_throttle = _on_throttle.get()
            if on_throttle is not None:
                on_throttle(self.get_retry_after(response) or 60.0)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        wait = retry.get_backoff_time()
        if response is not None:
            retry_after = retry.get_retry_after(response)
            if retry_after is not None:
                if retry_after > self.max_retry_after:
                    # Not worth holding the caller: give them Defender's answer and its Retry-After now.
                    raise _give_up(_pool, url, None)
                wait = retry_after
        deadline = _deadline.get()
        if deadline is not None and time.monotonic() + wait + self.attempt_seconds > deadline:
            raise _give_up(_pool, url, error)
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        super().sleep(response)
        gate = _gate.get()
        if gate is not None:
            gate()


def _give_up(pool: ConnectionPool | None, url: str | None, error: Exception | None) -> MaxRetryError:
    """What urllib3 raises when retries run out: the caller then gets the last response or error."""
    return MaxRetryError(pool, url or "", error)  # type: ignore[arg-type]
