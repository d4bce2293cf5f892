"""Measuring a limiter from outside: the most calls any window held, and what an exact limiter would admit.

Shared by the contention benchmark and the multi-process test, so both judge by the same yardstick.
"""

from __future__ import annotations

from shared.ratelimit import RatePolicy
from shared.ratelimit.sliding_log import LogState, evaluate


def max_in_any_interval(times: list[float], length: float) -> int:
    """Most times within any half-open interval [t, t + length)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while ordered[first] <= moment - length:
            first += 1
        most = max(most, last - first + 1)
    return most


def ideal_admissions(policy: RatePolicy, margin_seconds: float, start: float, duration: float) -> int:
    """What an exact limiter admits under unbroken demand: the sliding log offered a call every millisecond."""
    state, count = LogState(), 0
    for now in range(round(start * 1000), round((start + duration) * 1000)):
        verdict = evaluate(policy, round(margin_seconds * 1000), state, now)
        if verdict.admitted:
            state, count = verdict.state, count + 1
    return count
