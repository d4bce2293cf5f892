"""Advanced hunting under load, end to end: three local hosts sharing one queue, one operations table and one
rate-limit table, in front of the simulator's Graph with the same hunting windows as the gateway's budget.

A storm of hunting queries (half over HTTP on Defender's path with `Prefer: respond-async`, half queued) is answered
in full without one Graph 429, each query sent once; and Graph's CPU 429, earned through one host, stops the others
without a call until the time its body names, after which a queued query runs.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from localdev.azurite import Azurite
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.storm import run_storm
from tests.support.servers import FUNCTION_KEY, HostFactory, IdentityAdmin, SimulatorAdmin

HUNT_WINDOWS = "10/2"
HUNTS = 90
#: See test_storm.py: one second of margin keeps the test about correctness on a loaded machine.
MARGIN = "1"
#: How far ahead the CPU block of the second test ends.
BLOCK_SECONDS = 30


def shared_settings() -> dict[str, str]:
    """The hosts' shared queue and tables, and an identity of their own (its calls alone in the simulator's log)."""
    suffix = uuid.uuid4().hex[:12]
    return {"REQUESTS_QUEUE": "hunt-" + suffix, "OPERATIONS_TABLE": "ops" + suffix, "RATE_LIMIT_TABLE": "rl" + suffix,
            "RATE_LIMIT_HUNTING": HUNT_WINDOWS, "RATE_LIMIT_MARGIN_SECONDS": MARGIN, "RATE_LIMIT_NEW_STATE_SHARE": "1",
            "AZURE_CLIENT_ID": str(uuid.uuid4())}


def own_calls(sim: SimulatorAdmin, settings: dict[str, str]) -> list[dict[str, Any]]:
    return [call for call in sim.calls("hunting")
            if (call.get("caller") or "").endswith("|" + settings["AZURE_CLIENT_ID"])]


def query(index: int) -> str:
    """A query of its own per request (the `DeviceName` clause excludes nothing): a duplicate send is visible."""
    return (f'DeviceFileEvents | where SHA1 == "{SEED_FILE_SHA1}" and DeviceName != "storm-{index}" '
            f"| project Timestamp, ReportId, DeviceId | take {1 + index % 2}")


@pytest.mark.timeout(600)
def test_a_hunting_storm_over_three_hosts_is_answered_in_full_without_a_graph_429(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    limit, seconds = HUNT_WINDOWS.split("/")
    sim.reset(limits={"hunting": [[float(limit), float(seconds)]]})
    settings = shared_settings()
    hosts = [host_factory(**settings) for _ in range(3)]
    queries = [query(index) for index in range(HUNTS)]
    result = run_storm([host.url for host in hosts], FUNCTION_KEY, azurite.connection_string,
                       settings["REQUESTS_QUEUE"], creates=0, lookups=0, create_body={}, sha1s=[], hunts=queries)

    assert len(result.answers) == HUNTS  # 0 lost
    assert Counter(status for status, _ in result.answers.values()) == {200: HUNTS}
    for operation_id, sent in result.queries.items():
        answer = result.answers[operation_id][1]
        rows = answer.get("Results", answer.get("results"))  # Defender's shape over HTTP, Graph's when queued
        assert len(rows) == 1 + queries.index(sent) % 2, answer
    calls = own_calls(sim, settings)
    assert [call for call in calls if call["status"] == 429] == []  # 0 Graph 429
    assert sorted(Counter(json.loads(call["body"])["Query"] for call in calls).values()) == [1] * HUNTS  # once each
    for host in hosts:
        host.host.stop()


def hunt(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{url}/api/security/runHuntingQuery", timeout=60, json={"Query": query(0)},
                         headers={"x-functions-key": FUNCTION_KEY, **(headers or {})})


@pytest.mark.timeout(300)
def test_graphs_cpu_429_stops_every_host_until_the_time_it_names(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    sim.reset()
    settings = shared_settings()
    first, second = host_factory(**settings), host_factory(**settings)
    # Graph names the end to the second. Far enough ahead that both hosts' first calls (a cold token, a new table)
    # come before it on a slow machine; the queued query then waits it out.
    until = math.ceil(time.time()) + BLOCK_SECONDS
    requests.post(f"{sim.url}/_sim/hunting/cpu", timeout=5, json={
        "exhaust": True, "until": datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}).raise_for_status()

    asked = time.time()
    earned = hunt(first.url)  # Graph's CPU 429, through the first host
    assert earned.status_code == 429, earned.text
    assert earned.json()["type"].endswith(":hunting-cpu-exhausted"), earned.text
    # To the end of the block Graph named (whole seconds, plus the rate-limit margin), never past it.
    assert 0 < int(earned.headers["Retry-After"]) <= until - asked + float(MARGIN) + 1
    refused = hunt(second.url)  # the other host holds the block without asking Graph
    assert refused.status_code == 429, refused.text
    assert refused.json()["type"].endswith(":hunting-cpu-exhausted"), refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert len(own_calls(sim, settings)) == 1

    accepted = hunt(second.url, {"Prefer": "respond-async"})  # a query that may wait is queued, not refused
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    deadline = time.monotonic() + 180
    while (answer := requests.get(location, headers={"x-functions-key": FUNCTION_KEY}, timeout=30)).status_code \
            == 202:
        assert time.monotonic() < deadline, "the queued query was not answered after the block"
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"], answer.text
    calls = own_calls(sim, settings)
    assert [call["status"] for call in calls] == [429, 200]  # nothing reached Graph during the block
    assert calls[1]["time"] >= until
    for host in (first, second):
        host.host.stop()
