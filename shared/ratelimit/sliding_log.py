"""The exact sliding log: admit a call only if every window has a free slot. Pure; no I/O.

A window with limit N and length W keeps the last N admission times (its ring). A call at
`now` fits if the ring holds fewer than N times or its oldest time is at least W + margin ago;
so no interval of length W + margin ever contains more than N admissions. Every admission
enters every window, so the ring of each window is the newest N entries of one shared log
that keeps max(N) entries; that log is what is stored.

Times are integer milliseconds since the epoch. An entry at t occupies [t, t + W + margin).

A log also records since when it is complete (`since_ms`). A log that started recently may
have lost calls made before it (the table or entity was deleted or restored, and no instance
remembered them), so until one full window + margin has passed since then, that window admits
only a share of its limit (`new_state_share`): if the calls nobody knows about filled no more than
the rest, Defender's limit still holds.
"""

from __future__ import annotations

import bisect
from collections import Counter
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
    #: Since when (ms) the log is known to hold every admission; 0 = since long before any window.
    since_ms: int = 0
    #: What the block is for, as its setter named it (e.g. `cpu`: Graph's hunting CPU quota); "" = unnamed.
    blocked_kind: str = ""

    def with_block(self, until_ms: int, kind: str = "") -> LogState:
        """Blocks only ever get longer: keep the later of the two ends (and its kind)."""
        if until_ms <= self.blocked_until_ms:
            return self
        return LogState(self.admissions_ms, until_ms, self.since_ms, kind)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one evaluation and, when admitted, the state to write back."""

    admitted: bool
    reason: Reason
    retry_after: int
    windows: tuple[WindowState, ...]
    state: LogState
    #: The exact wait in milliseconds (0 when admitted); `retry_after` is it rounded up to whole seconds.
    retry_after_ms: int = 0


def ceil_seconds(ms: int) -> int:
    """Milliseconds to whole seconds, rounded up."""
    return -(-ms // 1000)


def _span_ms(window: Window, margin_ms: int) -> int:
    return window.seconds * 1000 + margin_ms


def merge(stored: LogState, remembered: LogState) -> LogState:
    """What is known when the stored state may have lost calls that this instance remembers.

    `remembered` is a state this instance read or wrote earlier. The stored log only ever gains
    entries (and forgets old ones), so an entry present in memory but missing from the store was
    lost: a missing or re-created entity, or one restored from an older copy. Each time is kept
    as often as the more complete of the two holds it (two instances may admit in the same ms).
    `since_ms` stays the stored one: this instance cannot know the calls others made after it
    last looked, so a re-created log stays young however much it remembers. Trim the result.
    """
    counts = Counter(stored.admissions_ms) | Counter(remembered.admissions_ms)
    later = remembered if remembered.blocked_until_ms > stored.blocked_until_ms else stored
    return LogState(tuple(sorted(counts.elements())), later.blocked_until_ms, stored.since_ms, later.blocked_kind)


def missing_from(stored: LogState, merged: LogState) -> int:
    """How many admissions of `merged` the stored state lacks (what a merge restored)."""
    return sum((Counter(merged.admissions_ms) - Counter(stored.admissions_ms)).values())


def _limit_now(window: Window, margin_ms: int, state: LogState, now_ms: int, new_state_share: float) -> int:
    """The window's limit, or only its share while the log is younger than the window + margin."""
    if now_ms - state.since_ms >= _span_ms(window, margin_ms):
        return window.limit
    return max(1, int(window.limit * new_state_share))


def _frees_at(window: Window, margin_ms: int, state: LogState, now_ms: int, new_state_share: float) -> int | None:
    """When the window next has room for a call at `now_ms` (None: it has room now)."""
    span = _span_ms(window, margin_ms)
    log = state.admissions_ms

    def full_until(limit: int) -> int | None:
        ring = log[-limit:]
        return ring[0] + span if len(ring) == limit and ring[0] > now_ms - span else None

    limit = _limit_now(window, margin_ms, state, now_ms, new_state_share)
    until = full_until(limit)
    if until is None or limit == window.limit:
        return until
    # Young: room comes when the share frees, or when youth ends and the whole limit has room.
    grown_up = state.since_ms + span
    return min(until, max(grown_up, full_until(window.limit) or grown_up))


def evaluate(policy: RatePolicy, margin_ms: int, state: LogState, now_ms: int, *,
             new_state_share: float = 1.0) -> Verdict:
    """Decide one call at `now_ms` against `state`."""
    frees_at = [until for window in policy.windows
                if (until := _frees_at(window, margin_ms, state, now_ms, new_state_share)) is not None]
    blocked = state.blocked_until_ms > now_ms
    if blocked or frees_at:
        until = max([*frees_at, state.blocked_until_ms])
        return Verdict(
            admitted=False,
            reason=Reason.BLOCKED if blocked else Reason.RATE_LIMITED,
            retry_after=max(1, ceil_seconds(until - now_ms)),
            windows=window_states(policy, margin_ms, state, now_ms, new_state_share=new_state_share),
            state=state,
            retry_after_ms=max(1, until - now_ms),
        )
    new_state = LogState(_append(policy, margin_ms, state.admissions_ms, now_ms), 0, state.since_ms)  # block over
    return Verdict(
        admitted=True,
        reason=Reason.ADMITTED,
        retry_after=0,
        windows=window_states(policy, margin_ms, new_state, now_ms, new_state_share=new_state_share),
        state=new_state,
    )


def trim(policy: RatePolicy, margin_ms: int, state: LogState, now_ms: int) -> LogState:
    """Drop what no window can count any more and keep the newest max(N) entries."""
    return LogState(_trimmed(policy, margin_ms, list(state.admissions_ms), now_ms), state.blocked_until_ms,
                    state.since_ms, state.blocked_kind)


def _append(policy: RatePolicy, margin_ms: int, log: tuple[int, ...], now_ms: int) -> tuple[int, ...]:
    """Insert `now_ms` in order, then trim."""
    entries = list(log)
    bisect.insort(entries, now_ms)  # in order even if another instance's clock ran ahead
    return _trimmed(policy, margin_ms, entries, now_ms)


def _trimmed(policy: RatePolicy, margin_ms: int, entries: list[int], now_ms: int) -> tuple[int, ...]:
    # One extra margin before forgetting, for instances whose clocks run behind this one.
    horizon = now_ms - max(_span_ms(w, margin_ms) for w in policy.windows) - margin_ms
    first_kept = max(bisect.bisect_right(entries, horizon), len(entries) - policy.longest_log)
    return tuple(entries[first_kept:])


def window_states(policy: RatePolicy, margin_ms: int, state: LogState, now_ms: int, *,
                  new_state_share: float = 1.0) -> tuple[WindowState, ...]:
    """How many calls each window still admits at `now_ms` and when its oldest counted call leaves."""
    states = []
    for window in policy.windows:
        span = _span_ms(window, margin_ms)
        ring = state.admissions_ms[-window.limit:]
        first_active = bisect.bisect_right(ring, now_ms - span)
        active = len(ring) - first_active
        reset_ms = ring[first_active] + span - now_ms if active else 0
        limit = _limit_now(window, margin_ms, state, now_ms, new_state_share)
        states.append(WindowState(
            name=window.name,
            limit=window.limit,
            window_seconds=window.seconds,
            remaining=max(0, limit - active),
            reset_seconds=ceil_seconds(reset_ms),
            current_limit=limit,
        ))
    return tuple(states)
