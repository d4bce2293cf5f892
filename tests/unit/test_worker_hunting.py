"""Hunting queries on the queue path, in process: the real RequestWorker, Gateway, DefenderClient, limiters and
HuntingLookups, with Microsoft Graph scripted at the requests transport, the operations and queues in their memory
twins, and time on a hand-driven clock. Graph's CPU 429 puts a queued query on the hunting waiting queue
(`<REQUESTS_QUEUE>-hunting`, function WaitHunting) until the block ends, sending nothing meanwhile; with
HUNTING_SHARE_SECONDS an identical query joins the one in flight in this process."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import requests

from shared.asynchronous.operations import State
from shared.asynchronous.operations_memory import MemoryOperationStore
from shared.asynchronous.queues_memory import MemoryQueues
from shared.asynchronous.worker import EARLY_SECONDS, LEASE_MARGIN_SECONDS, MAX_HOLD_SECONDS
from shared.defender.facts import GRAPH_HUNTING_PATH, HUNTING_CPU_CYCLE_SECONDS, Api
from shared.lookups.hunting import HuntingLookups
from tests.support.inputs import VALID
from tests.support.rigs import EdgeRig, function_metadata, make_edge
from tests.support.scripted import FakeClock, FakeTable, Reply, alert_reply, alerts_reply

GRAPH = "https://graph.microsoft.com"
SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
QUERY = f'DeviceFileEvents | where SHA1 == "{SHA1}" | take 5'
ROWS = [{"Timestamp": "2026-12-06T10:00:00.1234567Z", "ReportId": 7101,
         "DeviceId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"}]
GRAPH_ANSWER = {"@odata.context": f"{GRAPH}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
                "schema": [{"name": "Timestamp", "type": "DateTime"}, {"name": "ReportId", "type": "Int64"},
                           {"name": "DeviceId", "type": "String"}],
                "results": ROWS}


def results(takes: float = 0.0) -> Reply:
    return Reply(200, GRAPH_ANSWER, takes=takes)


def cpu_429(until: float) -> Reply:
    """Graph's CPU 429: the time the block ends in its message, no Retry-After (as Graph answers it)."""
    named = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = f"Tenant CPU quota for advanced hunting exceeded. Queries are blocked until {named}."
    return Reply(429, {"error": {"code": "TooManyRequests", "message": message, "innerError": {
        "date": "2026-12-06T20:00:00", "request-id": "5e1c0b0a-0000-4000-8000-000000000001"}}})


def hunt_message(message_id: str, query: str = QUERY, **extra: Any) -> str:
    return json.dumps({"version": 1, "id": message_id, "operation": "RunHuntingQuery", "body": {"Query": query},
                       **extra})


def waiting(rig: EdgeRig) -> list[dict[str, Any]]:
    """The messages on the hunting waiting queue, with their delay from now."""
    queues = rig.runtime.queues
    assert isinstance(queues, MemoryQueues)
    return [{**json.loads(m.text), "delay": m.visible_at - rig.clock.now}
            for m in queues.messages.get(queues.waiting_name(Api.HUNTING), [])]


def take_waiting(rig: EdgeRig) -> list[str]:
    """The hunting waiting queue's messages, taken off it (as the WaitHunting trigger takes them)."""
    queues = rig.runtime.queues
    assert isinstance(queues, MemoryQueues)
    taken = queues.messages.pop(queues.waiting_name(Api.HUNTING), [])
    return [m.text for m in taken]


def operation_of(rig: EdgeRig, operation_id: str) -> Any:
    operations = rig.runtime.operations
    assert isinstance(operations, MemoryOperationStore)
    found = operations.get(operation_id)
    assert found is not None
    return found


def test_the_hunting_waiting_queue_is_the_one_wait_hunting_reads() -> None:
    rig = make_edge()
    requests_queue = rig.settings.asynchronous.queues[0]
    assert rig.runtime.queues.waiting_name(Api.HUNTING) == f"{requests_queue}-hunting"
    trigger = function_metadata()["WaitHunting"]["bindings"][0]
    assert trigger["type"] == "queueTrigger" and trigger["queueName"] == "%REQUESTS_QUEUE%-hunting"


def test_a_cpu_429_reschedules_a_queued_query_to_the_end_of_the_block_and_sends_nothing_meanwhile() -> None:
    clock = FakeClock()
    now = clock.now
    until = (now // HUNTING_CPU_CYCLE_SECONDS + 1) * HUNTING_CPU_CYCLE_SECONDS + 300  # the time Graph names
    rig = make_edge([cpu_429(until), results(), results()], clock=clock)
    worker = rig.runtime.worker

    worker.handle(hunt_message("first", shape="defender"))
    (copy,) = waiting(rig)
    assert copy["id"] == "first" and copy["delay"] == until - now  # back exactly when the block ends
    first = operation_of(rig, "first")
    assert first.state is State.PENDING and not first.in_flight and first.lease_until == 0
    assert first.attempts == 1 and first.failures == 0  # a CPU 429 is no failure: it never spends a retry
    assert len(rig.transport.calls) == 1

    # Meanwhile: another query, and the first one's copy delivered early, wait without a call to Graph.
    worker.handle(hunt_message("second", 'DeviceEvents | take 1'))
    clock.advance(600)
    for text in take_waiting(rig):
        worker.handle(text, waiting=True)
    delays = sorted((m["id"], m["delay"]) for m in waiting(rig))
    assert delays == [("first", until - clock.now - EARLY_SECONDS), ("second", until - clock.now - EARLY_SECONDS)]
    assert until - clock.now > MAX_HOLD_SECONDS  # too far off to wait for in place
    assert len(rig.transport.calls) == 1 and operation_of(rig, "second").attempts == 0

    # The block ends: both go to Graph once each and are answered, each in its caller's shape.
    clock.advance(until - clock.now)
    for text in take_waiting(rig):
        worker.handle(text, waiting=True)
    assert waiting(rig) == [] and len(rig.transport.calls) == 3
    assert all(call.url == f"{GRAPH}{GRAPH_HUNTING_PATH}" for call in rig.transport.calls)
    first, second = operation_of(rig, "first"), operation_of(rig, "second")
    assert first.state is State.DONE and first.answer.status == 200 and first.attempts == 2
    assert json.loads(first.answer.body)["Results"] == ROWS  # Defender's shape, as the message asked
    assert second.state is State.DONE and json.loads(second.answer.body) == GRAPH_ANSWER and second.attempts == 1
    rig.transport.assert_done()


class CountingLock:
    """A lock that counts its releases: the second release of the flights' lock is a second query having looked at
    the flights (and found the first one's in flight), a condition to wait for with a deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._condition = threading.Condition()
        self.released = 0

    def __enter__(self) -> CountingLock:
        self._lock.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._lock.release()
        with self._condition:
            self.released += 1
            self._condition.notify_all()

    def wait_released(self, count: int, timeout: float = 10.0) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: self.released >= count, timeout)


def test_with_sharing_a_queued_query_joins_the_identical_one_in_flight_in_this_process() -> None:
    table = FakeTable()
    rig = make_edge([results()], settings_env={"HUNTING_SHARE_SECONDS": "60"}, hunting_table=table)
    hunting = rig.runtime.hunting
    assert isinstance(hunting, HuntingLookups) and hunting.sharing
    lock = CountingLock()
    hunting._flights._lock = lock  # type: ignore[assignment]  # observed, not replaced: the same locking
    worker = rig.runtime.worker
    joiner = threading.Thread(target=worker.handle, args=(hunt_message("joiner"),))
    joined: list[bool] = []

    def in_flight(_: requests.PreparedRequest) -> None:
        # The leader's query is at Graph: the identical one comes to this process now, and finds it in flight.
        joiner.start()
        joined.append(lock.wait_released(2))

    rig.transport.on_send = in_flight
    worker.handle(hunt_message("leader"))
    joiner.join(10)
    assert joined == [True] and not joiner.is_alive()
    assert len(rig.transport.calls) == 1  # one Graph call for both
    leader, follower = operation_of(rig, "leader"), operation_of(rig, "joiner")
    assert leader.state is State.DONE and follower.state is State.DONE
    assert json.loads(leader.answer.body) == json.loads(follower.answer.body) == GRAPH_ANSWER
    assert (leader.attempts, follower.attempts) == (1, 0)  # the joiner sent nothing of its own
    assert len(table.entities) == 1  # the answer kept once, for every instance


def test_a_claims_lease_is_its_own_apis_longest_attempt_not_a_hunting_querys() -> None:
    """A hunting query's claim outlasts Graph's 3 minutes (else another worker claims it again: a second Graph call);
    a create's or a lookup's stays its own attempt's, so the sweep finishes a dead instance's within that + a sweep."""
    rig = make_edge([results(), alert_reply(), alerts_reply()])
    leases: dict[str, float] = {}
    handling: list[str] = []

    def record_lease(_: requests.PreparedRequest) -> None:  # the request is leaving: its operation is claimed
        leases[handling[-1]] = operation_of(rig, handling[-1]).lease_until - rig.clock.now

    rig.transport.on_send = record_lease
    messages: dict[str, dict[str, Any]] = {
        "hunt": {"operation": "RunHuntingQuery", "body": {"Query": QUERY}},
        "create": {"operation": "CreateAlertByReference", "body": VALID},
        "lookup": {"operation": "GetFileRelatedAlerts", "fileHash": SHA1}}
    for operation_id, fields in messages.items():
        handling.append(operation_id)
        rig.runtime.worker.handle(json.dumps({"version": 1, "id": operation_id, **fields}))
        assert operation_of(rig, operation_id).state is State.DONE
    retry = rig.gateway.retry
    assert leases == {"hunt": retry.attempt_seconds_of(Api.HUNTING) + LEASE_MARGIN_SECONDS,
                      "create": retry.attempt_seconds_of(Api.CREATE_ALERT) + LEASE_MARGIN_SECONDS,
                      "lookup": retry.attempt_seconds_of(Api.FILE_ALERTS) + LEASE_MARGIN_SECONDS}
    assert leases["create"] < leases["hunt"]


def test_a_queued_query_answered_from_the_shared_answer_says_its_age_and_the_original_calls_time() -> None:
    rig = make_edge([results(takes=4.25)], settings_env={"HUNTING_SHARE_SECONDS": "60"})
    worker = rig.runtime.worker
    worker.handle(hunt_message("fresh", shape="defender"))
    rig.clock.advance(12)
    worker.handle(hunt_message("shared", shape="defender"))
    fresh, shared = operation_of(rig, "fresh").answer, operation_of(rig, "shared").answer
    assert len(rig.transport.calls) == 1 and operation_of(rig, "shared").attempts == 0
    assert json.loads(shared.body)["Stats"] == json.loads(fresh.body)["Stats"]
    assert json.loads(shared.body)["Stats"]["ExecutionTime"] == 4.25  # the Graph call's, kept with the answer
    assert (fresh.headers["Age"], shared.headers["Age"]) == ("0", "12")
    assert shared.headers["Cache-Control"] == "private, max-age=60"
