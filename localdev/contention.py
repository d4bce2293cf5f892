"""Driving a limiter under contention and measuring it from outside: the most calls any window held,
and what an exact limiter would admit.

Shared by the contention benchmark and the multi-process test, so both load and judge alike.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from shared.ratelimit import Decision, RateLimiter, RatePolicy
from shared.ratelimit.sliding_log import LogState, evaluate

#: Called under a lock with each decision, how long acquire took (s), and time.time() when it returned.
Recorder = Callable[[Decision, float, float], None]


def hammer(limiter: RateLimiter, principal: str, *, threads: int, start: float, duration: float,
           record: Recorder) -> int:
    """From `start` (epoch s) for `duration` s, `threads` threads call acquire with short random pauses.

    Returns how many acquire calls raised (each is also a call that was not admitted).
    """
    lock = threading.Lock()
    errors = 0
    end = start + duration

    def work() -> None:
        nonlocal errors
        rng = random.Random()
        while time.time() < end:
            began = time.perf_counter()
            try:
                decision = limiter.acquire(principal)
            except Exception:
                with lock:
                    errors += 1
                continue
            latency, returned = time.perf_counter() - began, time.time()
            with lock:
                record(decision, latency, returned)
            time.sleep(rng.uniform(0, 0.01))

    time.sleep(max(0.0, start - time.time()))
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


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
