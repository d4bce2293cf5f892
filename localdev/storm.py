"""A storm of asynchronous requests against running local hosts, and how well the shared budget drained it.

Used by tests/integration/test_storm.py, test_hunting_storm.py and bench/storm_bench.py. Half of each kind arrives
over HTTP with `Prefer: respond-async` (alternating between the hosts), half as queue messages; every request has
its own id (creates their own title, so a duplicate at the simulator is visible). The ideal drain is
the exact sliding log's own schedule for the same windows and margin, with a caller always waiting.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared.ratelimit import RatePolicy, parse_windows
from shared.ratelimit.sliding_log import LogState, evaluate


@dataclass
class StormResult:
    #: operation id -> (status, body) of its final answer
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    #: operation id -> the create's title (creates only)
    titles: dict[str, str] = field(default_factory=dict)
    #: operation id -> the hunting query (hunts only)
    queries: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def ideal_drain_seconds(calls: int, windows: str, margin_seconds: float) -> float:
    """Time from the first to the last of `calls` admissions on the exact sliding log (windows `n/s,...`)."""
    policy = RatePolicy("ideal", parse_windows(windows))
    state, now_ms, first_ms = LogState(since_ms=-10**12), 0, None
    margin_ms = round(margin_seconds * 1000)
    for _ in range(calls):
        while True:
            verdict = evaluate(policy, margin_ms, state, now_ms)
            if verdict.admitted:
                break
            now_ms += verdict.retry_after_ms
        state = verdict.state
        first_ms = now_ms if first_ms is None else first_ms
    return (now_ms - (first_ms or 0)) / 1000


def drain_seconds(call_times: Sequence[float]) -> float:
    return max(call_times) - min(call_times) if call_times else 0.0


def slot_reuse(call_times: Sequence[float], windows: str, margin_seconds: float) -> float:
    """How promptly freed slots were used again: 1.0 when every call went out the moment its slot freed.

    With one window of `limit` calls per `span` (+ margin), call i can go out no sooner than call i - limit
    plus the span. Summed over every call after the first `limit`, those waits are the time between the
    mean of the first `limit` calls and the mean of the last `limit`; the exact sliding log needs
    (calls - limit) / limit spans for it. Unlike the first-to-last drain, this measures the pacing alone:
    how long the gateway takes to send the first burst (its own speed, not the budget) cancels out.
    """
    (window,) = parse_windows(windows)
    times = sorted(call_times)
    if len(times) <= window.limit:
        return 1.0
    first, last = times[:window.limit], times[-window.limit:]
    ideal = (len(times) - window.limit) / window.limit * (window.seconds + margin_seconds)
    return ideal / (sum(last) / len(last) - sum(first) / len(first))


def run_storm(host_urls: Sequence[str], key: str, connection_string: str, queue: str, *, creates: int,
              lookups: int, create_body: dict[str, Any], sha1s: Sequence[str], hunts: Sequence[str] = (),
              timeout: float = 300) -> StormResult:
    """Send the storm (all at once, from a pool of threads) and wait for every operation's final answer.

    `hunts`: advanced-hunting queries, one request each: over HTTP on Defender's path (`/api/advancedqueries/run`,
    answered in Defender's shape), queued as `RunHuntingQuery` messages (Graph's shape); `result.queries` maps each
    operation to its query."""
    result = StormResult()
    client = QueueClient.from_connection_string(connection_string, queue)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    work: list[tuple[str, str, dict[str, Any]]] = []  # (id, kind, message)
    for index in range(creates):
        operation_id = uuid.uuid4().hex
        title = f"storm {index} {operation_id[:8]}"
        result.titles[operation_id] = title
        work.append((operation_id, "create", {"version": 1, "id": operation_id, "operation": "CreateAlertByReference",
                                              "body": {**create_body, "title": title}}))
    for query in hunts:
        operation_id = uuid.uuid4().hex
        result.queries[operation_id] = query
        work.append((operation_id, "hunt", {"version": 1, "id": operation_id, "operation": "RunHuntingQuery",
                                            "body": {"Query": query}}))
    for index in range(lookups):
        operation_id = uuid.uuid4().hex
        work.append((operation_id, "lookup", {"version": 1, "id": operation_id, "operation": "GetFileRelatedAlerts",
                                              "fileHash": sha1s[index % len(sha1s)]}))
    locations: dict[str, str] = {}
    started = time.monotonic()

    def submit(item: tuple[int, tuple[str, str, dict[str, Any]]]) -> None:
        index, (operation_id, kind, message) = item
        host = host_urls[index % len(host_urls)]
        if index % 2:  # queue input: the id is the operation id
            client.send_message(json.dumps(message))
            locations[operation_id] = f"{host}/api/operations/{operation_id}"
            return
        headers = {"x-functions-key": key, "Prefer": "respond-async", "Idempotency-Key": operation_id}
        if kind == "create":
            response = requests.post(f"{host}/api/alerts/CreateAlertByReference", json=message["body"],
                                     headers=headers, timeout=60)
        elif kind == "hunt":
            response = requests.post(f"{host}/api/advancedqueries/run", json=message["body"], headers=headers,
                                     timeout=60)
        else:
            response = requests.get(f"{host}/api/files/{message['fileHash']}/alerts", headers=headers, timeout=60)
        if response.status_code != 202:
            raise AssertionError(f"{kind} not accepted: {response.status_code} {response.text}")
        locations[operation_id] = response.headers["Location"]

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, enumerate(work)))
    # Creates over HTTP are named by their Location (an Idempotency-Key gives another operation id).
    titles, queries = dict(result.titles), dict(result.queries)
    result.titles = {locations[operation_id].rsplit("/", 1)[1]: title for operation_id, title in titles.items()}
    result.queries = {locations[operation_id].rsplit("/", 1)[1]: query for operation_id, query in queries.items()}
    deadline = started + timeout
    pending = {location.rsplit("/", 1)[1]: location for location in locations.values()}
    session = requests.Session()
    while pending:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(pending)} operation(s) still pending after {timeout} s")
        for operation_id, location in list(pending.items()):
            response = session.get(location, headers={"x-functions-key": key}, timeout=30)
            if response.status_code in (202, 404):  # 404: a queue message not taken yet
                continue
            result.answers[operation_id] = (response.status_code, response.json())
            del pending[operation_id]
        time.sleep(0.5)
    result.seconds = time.monotonic() - started
    return result
