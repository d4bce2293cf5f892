"""Repeated lookups through local hosts: shared answers, Age / Cache-Control, no-cache, TTL, one upstream call.

(Test hosts have the cache off unless a test turns it on, as these do.)
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.servers import HostFactory, IdentityAdmin, SimulatorAdmin, assert_problem


def until(ask: Callable[[], requests.Response], done: Callable[[requests.Response], bool],
          timeout: float = 15) -> requests.Response:
    """Ask again until the answer is `done` (each answer checked as it comes), or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not done(answer := ask()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {answer.status_code} {answer.headers}"
        time.sleep(0.1)
    return answer


def test_a_repeated_lookup_is_answered_from_the_shared_cache_by_another_instance(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    table = "answers" + uuid.uuid4().hex[:12]
    first, second = (host_factory(ANSWER_CACHE_TABLE=table, FILE_ALERTS_CACHE_SECONDS="60") for _ in range(2))
    fresh = first.get_alerts(SEED_FILE_SHA1)
    assert fresh.status_code == 200
    assert fresh.headers["Cache-Control"] == "private, max-age=60" and fresh.headers["Age"] == "0"
    shared = until(lambda: second.get_alerts(SEED_FILE_SHA1), lambda answer: int(answer.headers["Age"]) >= 1)
    assert shared.status_code == 200 and shared.content == fresh.content
    assert shared.headers["Cache-Control"] == "private, max-age=60" and int(shared.headers["Age"]) >= 1
    assert "RateLimit" not in shared.headers and "RateLimit-Policy" in shared.headers  # no slot was taken
    assert len(sim.calls("file_alerts")) == 1
    # The caller can insist on a fresh answer, which also refreshes the shared one.
    refreshed = second.get_alerts(SEED_FILE_SHA1, headers={"Cache-Control": "no-cache"})
    assert refreshed.status_code == 200 and refreshed.headers["Age"] == "0"
    assert len(sim.calls("file_alerts")) == 2
    first.host.stop()
    second.host.stop()


def test_answers_expire_and_failures_are_not_kept(host_factory: HostFactory, sim: SimulatorAdmin,
                                                  identity: IdentityAdmin) -> None:
    gateway = host_factory(FILE_ALERTS_CACHE_SECONDS="1")
    sim.fault("status", status=500, api="file_alerts", count=1)
    assert_problem(gateway.get_alerts(SEED_FILE_SHA1), 502)
    assert gateway.get_alerts(SEED_FILE_SHA1).status_code == 200  # the failure was not kept
    assert gateway.get_alerts(SEED_FILE_SHA1).status_code == 200  # the success was
    assert len(sim.calls("file_alerts")) == 2
    # Shared until it expires, then asked again.
    again = until(lambda: gateway.get_alerts(SEED_FILE_SHA1), lambda _: len(sim.calls("file_alerts")) == 3)
    assert again.status_code == 200 and again.headers["Age"] == "0"
    assert len(sim.calls("file_alerts")) == 3
    gateway.host.stop()


def test_a_long_alert_list_is_shared_whole(host_factory: HostFactory, sim: SimulatorAdmin,
                                           identity: IdentityAdmin) -> None:
    sha1 = secrets.token_hex(20)
    for _ in range(120):  # about 370 KB of JSON that compresses poorly: several 60 KiB chunks
        sim.add_alert(sha1=sha1, title=secrets.token_hex(700))
    table = "answers" + uuid.uuid4().hex[:12]
    first, second = (host_factory(ANSWER_CACHE_TABLE=table, FILE_ALERTS_CACHE_SECONDS="60") for _ in range(2))
    fresh = first.get_alerts(sha1)
    assert fresh.status_code == 200 and len(fresh.json()["value"]) == 120 and len(fresh.content) > 300_000
    shared = second.get_alerts(sha1)
    assert shared.content == fresh.content and "Age" in shared.headers and "RateLimit" not in shared.headers
    assert len(sim.calls("file_alerts")) == 1
    first.host.stop()
    second.host.stop()


def test_concurrent_identical_lookups_share_one_upstream_call(host_factory: HostFactory, sim: SimulatorAdmin,
                                                              identity: IdentityAdmin) -> None:
    gateway = host_factory(FILE_ALERTS_CACHE_SECONDS="0")  # no shared cache: only the in-process sharing
    assert "Cache-Control" in gateway.get_alerts(SEED_FILE_SHA1).headers  # warm: token, table, pools
    assert gateway.get_alerts(SEED_FILE_SHA1).headers["Cache-Control"] == "no-store"
    sim.reset()
    sim.fault("latency", api="file_alerts", delay=1.5, count=1)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: gateway.get_alerts(SEED_FILE_SHA1), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.content for a in answers}) == 1
    assert len(sim.calls("file_alerts")) == 1
    gateway.host.stop()
