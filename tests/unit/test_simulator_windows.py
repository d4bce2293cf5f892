"""The simulator's sliding windows (localdev.simulator.throttle): Defender's contract, counted by arrival time, exact
when threads look at calls out of their arrival order."""

from __future__ import annotations

from localdev.simulator.throttle import SlidingWindows
from tests.support.scripted import FakeClock

CALLER = "tenant|app"


def windows(limit: int, seconds: float, clock: FakeClock) -> SlidingWindows:
    return SlidingWindows({"create_alert": [(limit, seconds)]}, clock=clock)


def test_the_call_over_the_limit_is_refused_until_the_oldest_leaves() -> None:
    clock = FakeClock(1000.0)
    limits = windows(3, 10, clock)
    for _ in range(3):
        assert limits.admit(CALLER, "create_alert")[0]
        clock.advance(1)
    assert limits.admit(CALLER, "create_alert") == (False, 7, (3, 10))  # the first leaves at 1010, now 1003
    clock.now = 1010.0
    assert limits.admit(CALLER, "create_alert")[0]


def test_a_call_looked_at_late_counts_where_it_arrived() -> None:
    clock = FakeClock(1000.0)
    limits = windows(3, 10, clock)
    for at in (1001.0, 1002.0, 1003.0):
        assert limits.admit(CALLER, "create_alert", at=at)[0]
    # Arrived at 1000.5, before the three, and looked at only now: with them it makes four within 10 s.
    admitted, _, window = limits.admit(CALLER, "create_alert", at=1000.5)
    assert (admitted, window) == (False, (3, 10))
    # Arrived long before them (1000 - 10 s): four calls, but never three plus one within any 10 s.
    assert limits.admit(CALLER, "create_alert", at=990.0)[0]
    assert not limits.admit(CALLER, "create_alert", at=1010.5)[0]  # 1001, 1002, 1003 and this: within 9.5 s
    assert limits.admit(CALLER, "create_alert", at=1011.0)[0]  # 10 s after 1001: the window holds three


def test_callers_and_apis_are_counted_apart() -> None:
    clock = FakeClock(1000.0)
    limits = SlidingWindows({"create_alert": [(1, 60)], "file_alerts": [(1, 60)]}, clock=clock)
    assert limits.admit(CALLER, "create_alert")[0]
    assert limits.admit("other|app", "create_alert")[0]
    assert limits.admit(CALLER, "file_alerts")[0]
    assert not limits.admit(CALLER, "create_alert")[0]
