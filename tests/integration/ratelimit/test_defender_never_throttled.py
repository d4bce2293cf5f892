"""Lost state and skewed clocks must not cost a single Defender 429.

Limiters ("instances", each with its own table client and memory) share a table in Azurite; every
call they admit goes at once to the Defender simulator, which enforces the same windows (scaled
down) as exact sliding windows, as Defender does. The simulator's 429 count must stay 0.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import requests
from azure.data.tables import TableClient

from localdev.azurite import Azurite, start_azurite
from localdev.simulator.app import COMMERCIAL_AUDIENCE
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.tokens import issue_token
from shared.ratelimit import CLIENT_OPTIONS, RateLimiter, RateLimitStorageError, TableStore
from tests.support.scripted import policy
from tests.support.servers import SimulatorAdmin

PRINCIPAL = "tenant|app"


def limiter_on(connection_string: str, table: str, windows: str, margin: float, *,
               clock: Callable[[], float] = time.time, share: float = 0.5) -> RateLimiter:
    client = TableClient.from_connection_string(connection_string, table, **CLIENT_OPTIONS)
    return RateLimiter(TableStore(client), policy(windows), margin_seconds=margin, max_conflict_retries=20, clock=clock,
                       new_state_share=share)


class Traffic:
    """Threads that call through limiters until told to stop; admitted calls go to the simulator."""

    def __init__(self, sim: SimulatorAdmin) -> None:
        self.url = f"{sim.url}/api/files/{SEED_FILE_SHA1}/alerts"
        self.headers = {"Authorization": "Bearer " + issue_token(COMMERCIAL_AUDIENCE)[0]}
        self.statuses: Counter[int | str] = Counter()
        self.admitted_at: list[float] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def start(self, limiter: RateLimiter, threads: int = 2) -> None:
        for _ in range(threads):
            thread = threading.Thread(target=self._work, args=(limiter,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self, limiter: RateLimiter) -> None:
        session = requests.Session()
        rng = random.Random()
        while not self._stop.is_set():
            try:
                decision = limiter.acquire(PRINCIPAL)
            except RateLimitStorageError:
                self._count("storage-error")
                time.sleep(0.05)
                continue
            if decision.admitted:
                status = session.get(self.url, headers=self.headers, timeout=10).status_code
                with self._lock:
                    self.statuses[status] += 1
                    self.admitted_at.append(time.time())
            time.sleep(rng.uniform(0.005, 0.03))

    def _count(self, what: str) -> None:
        with self._lock:
            self.statuses[what] += 1

    def until(self, answered: int, timeout: float = 90) -> None:
        """Keep the traffic going until Defender has answered `answered` of its calls with 200 (a deadline, not a
        length of time: how fast the budget comes back is the machine's), then stop it."""
        deadline = time.monotonic() + timeout
        while self.statuses[200] < answered:
            assert time.monotonic() < deadline, f"only {self.statuses} within {timeout} s"
            time.sleep(0.1)
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self._stop.clear()


@pytest.fixture
def traffic(sim: SimulatorAdmin) -> Iterator[Traffic]:
    running = Traffic(sim)
    yield running
    running.stop()


def limit_simulator(sim: SimulatorAdmin, calls: int, seconds: float) -> None:
    sim.reset(limits={"file_alerts": [[calls, seconds]], "create_alert": [[100000, 60]]})


@pytest.mark.slow
def test_storage_restart_with_the_window_half_full_costs_no_429(sim: SimulatorAdmin, traffic: Traffic) -> None:
    """Azurite (in memory) restarts with half the window used, then a storm: nothing is over-admitted.

    Each instance remembers only part of the window (the first does not know the second's calls), so
    the merge alone would let the first refill it; with the new state's share (the default, 0.5) the
    window holds. The window (12 s) outlasts the restart, so Defender still counts the forgotten calls.
    """
    limit_simulator(sim, 8, 12)
    storage = start_azurite()
    try:
        table = "rl" + uuid.uuid4().hex
        first, second = (limiter_on(storage.connection_string, table, "8/12", 1.0) for _ in range(2))
        session = requests.Session()
        for limiter in (first, first, second, second):
            assert limiter.acquire(PRINCIPAL).admitted
            assert session.get(traffic.url, headers=traffic.headers, timeout=10).status_code == 200
        storage.stop()  # how long a restart takes beside the window: bench/failure_bench.py
        storage = start_azurite(blob_port=storage.blob_port, queue_port=storage.queue_port,
                                table_port=storage.table_port)
        traffic.start(first)
        traffic.start(second)
        traffic.until(answered=8)  # the budget is used again: a whole window's worth after the restart
    finally:
        storage.stop()
    assert traffic.statuses[429] == 0, traffic.statuses


def test_a_fresh_instance_after_state_loss_takes_only_its_share(sim: SimulatorAdmin, traffic: Traffic,
                                                                azurite: Azurite) -> None:
    """Half the window used, then the entity is lost and only an instance that remembers nothing goes on."""
    limit_simulator(sim, 6, 5)
    table = "rl" + uuid.uuid4().hex
    first = limiter_on(azurite.connection_string, table, "6/5", 1.0, share=1.0)
    session = requests.Session()
    for _ in range(3):
        assert first.acquire(PRINCIPAL).admitted
        assert session.get(traffic.url, headers=traffic.headers, timeout=10).status_code == 200
    admin = TableClient.from_connection_string(azurite.connection_string, table)
    admin.delete_table()  # the state is gone (a table deleted, restored or swapped)
    traffic.start(limiter_on(azurite.connection_string, table, "6/5", 1.0))
    traffic.until(answered=9)  # its share at once (3), then the whole limit (6) once the window has passed
    assert traffic.statuses[429] == 0, traffic.statuses


@pytest.mark.slow
def test_an_instance_whose_clock_runs_5_s_ahead_costs_no_429(sim: SimulatorAdmin, traffic: Traffic,
                                                              azurite: Azurite) -> None:
    """Margin 2 s, one instance 5 s ahead: its clock is corrected by the table service's Date."""
    limit_simulator(sim, 6, 4)
    table = "rl" + uuid.uuid4().hex
    ahead = limiter_on(azurite.connection_string, table, "6/4", 2.0, clock=lambda: time.time() + 5, share=1.0)
    in_step = limiter_on(azurite.connection_string, table, "6/4", 2.0, share=1.0)
    traffic.start(ahead)
    traffic.start(in_step)
    traffic.until(answered=18)  # three windows' worth, so the instance ahead had its chances to over-admit
    assert traffic.statuses[429] == 0, traffic.statuses
    assert ahead.clock.offset == pytest.approx(-5, abs=1.1)
