"""The storm's two measures of budget use (localdev.storm), on call times made up to the millisecond."""

from __future__ import annotations

import pytest

from localdev.storm import drain_seconds, ideal_drain_seconds, slot_reuse


def schedule(calls: int, limit: int, span: float, *, spread: float = 0.0, late: float = 0.0) -> list[float]:
    """Calls sent in bursts of `limit`, one burst per `span` (+ `late` each time), each burst over `spread`."""
    return [(index // limit) * (span + late) + (index % limit) * spread / limit for index in range(calls)]


def test_the_exact_sliding_log_schedule_is_the_ideal_by_both_measures() -> None:
    times = schedule(200, 15, 2.25)
    assert ideal_drain_seconds(200, "15/2", 0.25) == pytest.approx(drain_seconds(times)) == pytest.approx(29.25)
    assert slot_reuse(times, "15/2", 0.25) == pytest.approx(1.0)


def test_a_slow_first_burst_costs_the_drain_but_not_the_slot_reuse() -> None:
    times = schedule(500, 100, 10.25, spread=3.0)  # 100 sent over 3 s, every slot reused the moment it frees
    assert ideal_drain_seconds(500, "100/10", 0.25) / drain_seconds(times) == pytest.approx(41 / 43.97, abs=1e-3)
    assert slot_reuse(times, "100/10", 0.25) == pytest.approx(1.0)


def test_slots_left_idle_lower_the_slot_reuse() -> None:
    times = schedule(200, 15, 2.25, late=0.25)  # each freed slot used a quarter of a second late
    assert slot_reuse(times, "15/2", 0.25) == pytest.approx(2.25 / 2.5)
    assert slot_reuse(schedule(10, 15, 2.25), "15/2", 0.25) == 1.0  # never waited for a slot
