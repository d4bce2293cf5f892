"""The operator page's last hour (shared/history): admissions read from the limiter's log, refusals and Defender's
429s counted on the call path and flushed, queue depths and the oldest pending age recorded by the sweep, the
retention, and the new-state share the page explains. In process: the real gateway, limiters and sweep over the
memory stores and a scripted Defender."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.asynchronous.operations import Source
from shared.asynchronous.queues_memory import MemoryQueues
from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.history.counters import MinuteCounters
from shared.history.memory_store import MemoryHistoryStore
from shared.history.store import RETENTION_MINUTES, WINDOW_MINUTES, Count, count_key, minute_of
from shared.operator import operator_state
from tests.support.rigs import EdgeRig, make_edge
from tests.support.scripted import alerts_reply, error_reply

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
FILE_ALERTS = DefenderRequest.file_alerts(SHA1)


def state(rig: EdgeRig) -> dict[str, Any]:
    healthy, document = operator_state(rig.gateway, rig.runtime.operations, rig.runtime.queues, clock=rig.clock)
    assert healthy
    return document


def budget(document: dict[str, Any], api: Api = Api.FILE_ALERTS) -> dict[str, Any]:
    found = [entry for entry in document["history"]["budgets"] if entry["api"] == api.value]
    assert len(found) == 1
    entry: dict[str, Any] = found[0]
    return entry


def storm(rig: EdgeRig) -> None:
    """A success, a Defender 429 (no Retry-After: the API is held), then two calls the gateway refuses."""
    for _ in range(4):
        rig.gateway.call(FILE_ALERTS, "unit-history")


def test_the_state_charts_admissions_refusals_and_429s_of_the_minute() -> None:
    history = MemoryHistoryStore()
    rig = make_edge([alerts_reply(), error_reply(429, "TooManyRequests", "Rate limit is exceeded")],
                    limits={Api.FILE_ALERTS: "10/60"}, history=history)
    storm(rig)
    chart = budget(state(rig))
    assert history.requests == 1  # one range read; this instance's counts come from its memory, nothing written
    assert len(chart["admitted"]) == len(chart["refused"]) == len(chart["throttled"]) == WINDOW_MINUTES
    assert (chart["admitted"][-1], chart["throttled"][-1], chart["refused"][-1]) == (2, 1, 2)
    assert sum(chart["admitted"]) == 2 and sum(chart["refused"]) == 2 and sum(chart["throttled"]) == 1
    assert chart["limitPerMinute"] == 10 and chart["scope"] == "home"
    # A minute later, flushed, the storm sits one point back; nothing is counted twice.
    rig.clock.advance(60)
    assert rig.gateway.counters is not None and rig.gateway.counters.flush()
    chart = budget(state(rig))
    assert (chart["admitted"][-2:], chart["refused"][-2:], chart["throttled"][-2:]) == ([2, 0], [2, 0], [1, 0])


def test_admissions_are_read_from_the_limiters_log_not_copied() -> None:
    history = MemoryHistoryStore()
    rig = make_edge([alerts_reply()] * 3, limits={Api.FILE_ALERTS: "10/60,100/3600"}, history=history)
    for _ in range(3):
        rig.gateway.call(FILE_ALERTS, "unit-history")
        rig.clock.advance(60)
    assert budget(state(rig))["admitted"][-4:] == [1, 1, 1, 0]
    assert all("admitted" not in row.values for row in history.since(0))  # the history holds no admission


def test_a_history_that_fails_loses_no_count_and_counts_none_twice() -> None:
    history = MemoryHistoryStore()
    clock_now = [1_800_000_000.0]
    counters = MinuteCounters(history, clock=lambda: clock_now[0])
    history.available = False
    counters.count("file_alerts", "t", Count.REFUSED)
    assert not counters.flush()
    counters.count("file_alerts", "t", Count.REFUSED)
    history.available = True
    assert counters.flush() and counters.flush()
    rows = history.since(0)
    assert [(row.key, dict(row.values)) for row in rows] == [(count_key("file_alerts", "t"), {"refused": 2})]


def test_the_call_path_flushes_at_most_once_a_minute() -> None:
    history = MemoryHistoryStore()
    clock_now = [1_800_000_000.0]
    flushes: list[Callable[[], object]] = []
    counters = MinuteCounters(history, clock=lambda: clock_now[0], run_flush=flushes.append)
    for _ in range(50):
        counters.count("file_alerts", "t", Count.REFUSED)
    assert history.requests == 0  # nothing written within the minute
    clock_now[0] += 60
    counters.count("file_alerts", "t", Count.REFUSED)
    counters.count("file_alerts", "t", Count.REFUSED)
    assert len(flushes) == 1 and history.requests == 0  # due once, run beside the call, not in it
    flushes[0]()
    assert history.requests == 2  # one addition per (minute, API, tenant) that counted
    assert sum(row.values["refused"] for row in history.since(0)) == 52


def test_the_sweep_records_depths_and_the_oldest_age_and_purges_old_rows() -> None:
    history = MemoryHistoryStore()
    rig = make_edge(history=history)
    operations, queues = rig.runtime.operations, rig.runtime.queues
    history.peak(minute_of(rig.clock()) - RETENTION_MINUTES - 1, "queue~requests", {"depth": 9})
    operations.create(operations.new("op-1", FILE_ALERTS, caller="", source=Source.QUEUE, correlation_id="c"))
    queues.put_waiting(Api.FILE_ALERTS, "one")
    queues.put_waiting(Api.FILE_ALERTS, "two")
    rig.clock.advance(90)
    rig.runtime.maintenance.sweep()
    assert isinstance(queues, MemoryQueues)
    queues.take(queues.waiting_name(Api.FILE_ALERTS))
    rig.clock.advance(1)
    rig.runtime.maintenance.sweep()  # the same minute: its highest reading stays
    rig.clock.advance(60)
    rig.runtime.maintenance.sweep()
    charts = {entry["api"]: entry for entry in state(rig)["history"]["queues"]}
    waiting = charts[Api.FILE_ALERTS.value]
    assert waiting["name"] == queues.waiting_name(Api.FILE_ALERTS)
    assert waiting["depth"][-2:] == [2, 0] and waiting["depth"][0] is None  # the drain; no sweep an hour ago
    assert waiting["oldestPendingAgeSeconds"][-2:] == [91, 151]
    assert charts[None]["name"] == queues.requests_name
    assert min(row.minute for row in history.since(0)) > minute_of(rig.clock()) - RETENTION_MINUTES


def test_a_new_state_says_it_admits_its_share() -> None:
    rig = make_edge([alerts_reply()] * 4, limits={Api.FILE_ALERTS: "100/60"},
                    settings_env={"RATE_LIMIT_NEW_STATE_SHARE": "0.5"})
    for _ in range(4):
        rig.gateway.call(FILE_ALERTS, "unit-history")
    window = state(rig)["apis"][Api.FILE_ALERTS.value]["windows"][0]
    assert (window["limit"], window["currentLimit"], window["remaining"]) == (100, 50, 46)
    rig.clock.advance(70)  # the window (and the margin) passed since the state began: the whole limit
    window = state(rig)["apis"][Api.FILE_ALERTS.value]["windows"][0]
    assert (window["limit"], window["currentLimit"]) == (100, 100)
