"""The limiter's clock, checked against the storage service's Date header and corrected."""

from __future__ import annotations

import logging
import re
from email.utils import formatdate

import pytest

from shared.ratelimit.clock import ClockSync


def date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


def test_a_clock_in_step_is_left_alone() -> None:
    sync = ClockSync(lambda: 1000.0)
    sync.observe(date(1000.0), sent=1000.3, received=1000.35)  # service second 1000 while we read 1000.3
    assert sync.offset == 0.0
    assert sync.bounds() == pytest.approx((-0.35, 0.7))


def test_a_clock_ahead_is_corrected_and_answers_narrow_the_estimate(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    sync = ClockSync(lambda: now[0])
    skew = 5.0  # this clock reads 5 s ahead of the service

    def answer(true_time: float, round_trip: float = 0.01) -> None:
        now[0] = true_time + skew
        sync.observe(date(int(true_time)), sent=true_time + skew - round_trip, received=true_time + skew)

    with caplog.at_level(logging.WARNING, "mde_alert_gateway.ratelimit"):
        answer(1000.3)
    low, high = sync.bounds() or (0.0, 0.0)
    assert low <= -skew <= high and high - low <= 1.01
    logged = re.search(r"clock is ([0-9.]+) s ahead of the storage service", caplog.text)
    assert logged is not None and 4.0 <= float(logged[1]) <= 5.0
    for true_time in (1000.9, 1001.05, 1001.5, 1001.99, 1002.02):
        answer(true_time)
    low, high = sync.bounds() or (0.0, 0.0)
    assert low <= -skew <= high and high - low <= 0.1
    assert sync.now() == pytest.approx(now[0] - skew, abs=0.1)


def test_a_stepped_clock_starts_the_estimate_over() -> None:
    now = [2000.0]
    sync = ClockSync(lambda: now[0])
    sync.observe(date(2000), sent=1999.9, received=2000.0)
    assert sync.offset == 0.0
    sync.observe(date(2001), sent=2030.0, received=2030.1)  # NTP stepped the local clock 29 s ahead
    low, high = sync.bounds() or (0.0, 0.0)
    assert low == pytest.approx(-29.1) and high == pytest.approx(-28.0)
    assert sync.offset == pytest.approx(-28.0)


@pytest.mark.parametrize("header", [None, "", "yesterday", "Mon, 99 Nov 2026 25:61:00 GMT"])
def test_answers_without_a_usable_date_are_ignored(header: str | None) -> None:
    sync = ClockSync(lambda: 10.0)
    sync.observe(header, sent=9.0, received=10.0)
    assert sync.bounds() is None and sync.offset == 0.0


def test_a_disabled_sync_never_corrects() -> None:
    sync = ClockSync(lambda: 10.0, enabled=False)
    sync.observe(date(5000), sent=9.0, received=10.0)
    assert sync.offset == 0.0 and sync.now() == 10.0
