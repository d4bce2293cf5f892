"""The exact sliding log: admit a call only if every window has a free slot. Pure; no I/O.

A window with limit N and length W keeps the last N admission times (its ring). A call at
`now` fits if the ring holds fewer than N times or its oldest time is at least W + margin ago;
so no interval of length W + margin ever contains more than N admissions. Every admission
enters every window, so the ring of each window is the newest N entries of one shared log
that keeps max(N) entries; that log is what is stored.

Times are integer milliseconds since the epoch. An entry at t occupies [t, t + W + margin).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from shared.ratelimit.decision import Reason, WindowState
from shared.ratelimit.policy import RatePolicy, Window


@dataclass(frozen=True)
class LogState:
    """The shared state of one (principal, API): admission times and Defender's 429 block."""

    #: Admission times in ms, ascending; at most the policy's largest limit of them.
    admissions_ms: tuple[int, ...] = ()
    #: Refuse every call before this time (ms); 0 = no block.
    blocked_until_ms: int = 0

    def with_block(self, until_ms: int) -> LogState:
        """Blocks only ever get longer: keep the later of the two ends."""
        return LogState(self.admissions_ms, max(self.blocked_until_ms, until_ms))


@dataclass(frozen=True)
class Verdict:
    """The outcome of one evaluation and, when admitted, the state to write back."""

    admitted: bool
    reason: Reason
    retry_after: int
    windows: tuple[WindowState, ...]
    state: LogState


def ceil_seconds(ms: int) -> int:
    """Milliseconds to whole seconds, rounded up."""
    return -(-ms // 1000)


def _span_ms(window: Window, margin_ms: int) -> int:
    return window.seconds * 1000 + margin_ms


def evaluate(policy: RatePolicy, margin_ms: int, state: LogState, now_ms: int) -> Verdict:
    """Decide one call at `now_ms` against `state`."""
    log = state.admissions_ms
    frees_at = []
    for window in policy.windows:
        span = _span_ms(window, margin_ms)
        ring = log[-window.limit:]
        if len(ring) == window.limit and ring[0] > now_ms - span:
            frees_at.append(ring[0] + span)
    blocked = state.blocked_until_ms > now_ms
    if blocked or frees_at:
        until = max([*frees_at, state.blocked_until_ms])
        return Verdict(
            admitted=False,
            reason=Reason.BLOCKED if blocked else Reason.RATE_LIMITED,
            retry_after=max(1, ceil_seconds(until - now_ms)),
            windows=window_states(policy, margin_ms, log, now_ms),
            state=state,
        )
    new_log = _append(policy, margin_ms, log, now_ms)
    return Verdict(
        admitted=True,
        reason=Reason.ADMITTED,
        retry_after=0,
        windows=window_states(policy, margin_ms, new_log, now_ms),
        state=LogState(new_log),  # any block has expired
    )


def _append(policy: RatePolicy, margin_ms: int, log: tuple[int, ...], now_ms: int) -> tuple[int, ...]:
    """Insert `now_ms` in order; drop what no window can count any more and keep the newest max(N)."""
    entries = list(log)
    bisect.insort(entries, now_ms)  # in order even if another instance's clock ran ahead
    # One extra margin before forgetting, for instances whose clocks run behind this one.
    horizon = now_ms - max(_span_ms(w, margin_ms) for w in policy.windows) - margin_ms
    first_kept = max(bisect.bisect_right(entries, horizon), len(entries) - policy.longest_log)
    return tuple(entries[first_kept:])


def window_states(policy: RatePolicy, margin_ms: int, log: tuple[int, ...], now_ms: int) -> tuple[WindowState, ...]:
    """How many calls each window still admits at `now_ms` and when its oldest counted call leaves."""
    states = []
    for window in policy.windows:
        span = _span_ms(window, margin_ms)
        ring = log[-window.limit:]
        first_active = bisect.bisect_right(ring, now_ms - span)
        active = len(ring) - first_active
        reset_ms = ring[first_active] + span - now_ms if active else 0
        states.append(WindowState(
            name=window.name,
            limit=window.limit,
            window_seconds=window.seconds,
            remaining=window.limit - active,
            reset_seconds=ceil_seconds(reset_ms),
        ))
    return tuple(states)
