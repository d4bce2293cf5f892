"""Advanced hunting's times, in process: a synchronous query's own deadline (HUNTING_TIMEOUT_SECONDS, not
MDE_TOTAL_TIMEOUT_SECONDS, under the platform's HTTP cut), how long an identical query waits for the running one,
Stats.ExecutionTime as the Graph call's own time, and a CPU block's end computed once and carried to every answer.
Graph is scripted at the requests transport; the clocks move only by hand (a scripted answer's `takes` moves them
inside the send alone)."""

from __future__ import annotations

import json
import threading
from typing import cast

import azure.functions as func
import pytest
from azure.data.tables import TableClient

from shared.asynchronous.queues_memory import MemoryQueues
from shared.defender.client import DefenderRequest
from shared.defender.facts import API_FACTS, MDE_HUNTING_PATH, Api, Service
from shared.defender.gateway import CallResult, Refused, Sent
from shared.defender.outcomes import Success
from shared.defender.settings import LONGEST_SYNCHRONOUS_SECONDS
from shared.lookups.answer_cache import AnswerCache
from shared.lookups.file_alerts import Deferred
from shared.lookups.flights import Flights
from shared.lookups.hunting import HUNTING_KIND, HuntingLookups, Ran
from shared.validation.hunting import HuntingShape
from tests.support.rigs import GATEWAY_URL, make_edge
from tests.support.scripted import FakeClock, FakeTable, Reply, Step, read_timeout

GRAPH = "https://graph.microsoft.com"
QUERY = 'DeviceProcessEvents | where SHA1 == "6532ec91d513acc05f43ee0aa3002599729fd3e1" | take 10'
HUNT = DefenderRequest.hunting(QUERY)
CID = "correlation-timing"
ROWS = [{"ReportId": 1234, "DeviceId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"}]
GRAPH_ANSWER = {"@odata.context": f"{GRAPH}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
                "schema": [{"name": "ReportId", "type": "Int64"}, {"name": "DeviceId", "type": "String"}],
                "results": ROWS}


def results(takes: float = 0.0) -> Reply:
    return Reply(200, GRAPH_ANSWER, takes=takes)


# --- finding 1: a synchronous query waits for Graph's whole time -------------------------------------------------

def test_a_synchronous_query_graph_answers_in_130_s_is_answered() -> None:
    rig = make_edge([results(takes=130)])  # MDE_TOTAL_TIMEOUT_SECONDS 100, HUNTING_TIMEOUT_SECONDS 200
    result = rig.gateway.call(HUNT, CID)
    assert isinstance(result.outcome, Success) and result.sent == 1
    assert rig.transport.calls[0].timeout == (5.0, 200.0)  # the whole HUNTING_TIMEOUT_SECONDS, not what 100 s left
    assert rig.gateway.retry.deadline_of(Api.HUNTING) == 205.0
    assert rig.gateway.retry.deadline_of(Api.FILE_ALERTS) == 100.0  # Defender's calls keep MDE_TOTAL_TIMEOUT_SECONDS


def test_a_synchronous_query_ends_before_the_platform_cuts_the_http_answer() -> None:
    rig = make_edge([results()], settings_env={"HUNTING_TIMEOUT_SECONDS": "300"})
    assert rig.gateway.retry.deadline_of(Api.HUNTING) == LONGEST_SYNCHRONOUS_SECONDS == 220.0
    rig.gateway.call(HUNT, CID)
    assert rig.transport.calls[0].timeout == (5.0, 220.0)
    # The queue worker's single attempt waits the whole setting (it answers no HTTP caller).
    assert rig.gateway.retry.attempt_seconds_of(Api.HUNTING) == 305.0


def graph_timeout() -> Reply:
    return Reply(504, {"error": {"code": "GatewayTimeout", "message": "Query execution has exceeded the allowed "
                                 "execution time.", "innerError": {"date": "2026-12-06T20:00:00"}}})


@pytest.mark.parametrize(("step", "says"), [
    (graph_timeout(), "Microsoft Graph stopped the query: it ran longer than Graph allows (3 minutes)."),
    (read_timeout(), "The gateway stopped waiting for Graph's answer: HUNTING_TIMEOUT_SECONDS is 200 s, and a "
                     "synchronous call ends within 205 s"),
])
def test_the_504_says_which_limit_ended_the_query(step: Step, says: str) -> None:
    rig = make_edge([step])
    result = rig.gateway.call(HUNT, CID)
    answer = rig.edge.answers.result(Api.HUNTING, result, CID)
    document = json.loads(answer.body)
    assert (answer.status, document["type"]) == (504, "urn:mde-alert-gateway:problem:hunting-query-timeout")
    assert document["detail"].startswith(says) and result.sent == 1, document["detail"]


# --- finding 11: one definition ----------------------------------------------------------------------------------

def test_the_upstreams_are_named_once_on_service() -> None:
    assert Service.DEFENDER.display_name == "Defender" and Service.GRAPH.display_name == "Microsoft Graph"
    assert API_FACTS[Api.HUNTING].service.display_name == "Microsoft Graph"


def test_an_attempts_longest_time_is_the_settings_own() -> None:
    rig = make_edge(settings_env={"HUNTING_TIMEOUT_SECONDS": "240"})
    defender, retry = rig.settings.defender, rig.gateway.retry
    assert all(retry.attempt_seconds_of(api) == defender.attempt_seconds_of(api) for api in Api)
    assert max(map(retry.attempt_seconds_of, Api)) == defender.attempt_seconds_of(Api.HUNTING) == 245.0


# --- finding 3: an identical query waits as long as the running one can take ---------------------------------------

#: How long the running (leading) query's Graph call takes: past MDE_TOTAL_TIMEOUT_SECONDS + 5 (105 s), within a
#: hunting attempt (connect + HUNTING_TIMEOUT_SECONDS: 205 s).
LEADER_SECONDS = 150.0
#: A real deadline for the threads of the test (never a fixed sleep).
DEADLINE = 10.0


class _TimedFlight(threading.Event):
    """A flight's done-signal on the test's time: a joiner waiting `timeout` seconds sees the leader (which takes
    LEADER_SECONDS) end only if `timeout` reaches that far; then the leader is let go and waited for for real."""

    def __init__(self, leader_may_go: threading.Event, waits: list[float]) -> None:
        super().__init__()
        self.leader_may_go = leader_may_go
        self.waits = waits

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout if timeout is not None else float("inf"))
        if timeout is None or timeout >= LEADER_SECONDS:
            self.leader_may_go.set()
            return super().wait(DEADLINE)
        return False  # the joiner's time ran out before the leader's answer came


def test_an_identical_queued_query_waits_for_the_running_one_past_the_total_timeout() -> None:
    leader_may_go, leader_sending = threading.Event(), threading.Event()
    waits: list[float] = []
    flights: Flights[CallResult] = Flights(lambda: _TimedFlight(leader_may_go, waits))
    cache = AnswerCache(cast(TableClient, FakeTable()), 60, clock=FakeClock(), kind=HUNTING_KIND)
    rig = make_edge([results(takes=LEADER_SECONDS)])
    hunts = HuntingLookups(rig.gateway, cache, flights=flights)
    identity = rig.gateway.identity(service=Service.GRAPH)

    def send(request: DefenderRequest) -> CallResult | Deferred[None]:
        if threading.current_thread() is not threading.main_thread():  # the leader: runs until let go
            leader_sending.set()
            assert leader_may_go.wait(DEADLINE)
        attempt = rig.gateway.attempt(request, identity, CID)
        assert isinstance(attempt, Sent)
        return CallResult(attempt, 1, attempt.outcome)

    found: list[object] = []
    leader = threading.Thread(target=lambda: found.append(hunts.run(HUNT, identity, send)))
    leader.start()
    try:
        assert leader_sending.wait(DEADLINE)
        joined = hunts.run(HUNT, identity, send)
    finally:
        leader_may_go.set()
        leader.join(DEADLINE)
    assert isinstance(joined, Ran) and joined.joined and isinstance(joined.result.outcome, Success)
    assert len(rig.transport.calls) == 1  # one Graph call for both
    assert waits == [rig.gateway.retry.attempt_seconds_of(Api.HUNTING) + 5] == [210.0]
    assert len(found) == 1 and isinstance(found[0], Ran) and not found[0].joined


# --- finding 4: Stats.ExecutionTime is the Graph request's own time ------------------------------------------------

#: The Graph request's own time (the scripted answer takes it: the fake clocks move inside the send alone).
GRAPH_SECONDS = 7.25
CALLS_429 = Reply(429, {"error": {"code": "TooManyRequests", "message": "API calls quota exceeded! maximum allowed 45 "
                                  "per 00:01:00"}}, headers={"Retry-After": "2"}, takes=3.0)


def hunting_request(headers: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest("POST", f"{GATEWAY_URL}{MDE_HUNTING_PATH}", body=json.dumps({"Query": QUERY}).encode(),
                            headers={"Content-Type": "application/json", **(headers or {})})


def test_execution_time_is_the_graph_calls_own_not_the_retry_or_its_wait() -> None:
    # A calls-429 that took 3 s, its Retry-After of 2 s waited out, then the answer in 7.25 s: the call took 12.25 s,
    # its Graph request 7.25 s.
    rig = make_edge([CALLS_429, results(takes=GRAPH_SECONDS)])
    response = rig.edge.hunt(hunting_request(), HuntingShape.DEFENDER)
    assert response.status_code == 200 and len(rig.transport.calls) == 2 and rig.sleep.waits == [2.0]
    assert rig.monotonic.now == 1000.0 + 3.0 + 2.0 + GRAPH_SECONDS
    assert json.loads(response.get_body())["Stats"]["ExecutionTime"] == GRAPH_SECONDS


def test_a_queued_querys_execution_time_is_the_graph_calls_own() -> None:
    rig = make_edge([results(takes=GRAPH_SECONDS)])
    built = rig.runtime
    assert isinstance(built.queues, MemoryQueues)
    accepted = rig.edge.hunt(hunting_request({"Prefer": "respond-async"}), HuntingShape.DEFENDER)
    assert accepted.status_code == 202
    rig.monotonic.advance(40.0)  # time in the queue is no part of it
    (message,) = built.queues.take(built.queues.requests_name)
    built.worker.handle(message.text)
    operation = built.operations.get(json.loads(message.text)["id"])
    assert operation is not None and operation.answer is not None and operation.answer.status == 200
    assert json.loads(operation.answer.body)["Stats"]["ExecutionTime"] == GRAPH_SECONDS


# --- finding 8: a CPU block's end, computed once, is what every answer says -----------------------------------------

#: 2027-01-15T08:01:00Z: a minute into a 15-minute cycle (the block below ends within the cap).
START = 1_800_000_060.0
#: The time Graph's message names: 640 s after the slot's decision at START.
UNTIL, UNTIL_TEXT = START + 640, "2027-01-15T08:11:40Z"


def cpu_429(takes: float) -> Reply:
    return Reply(429, {"error": {"code": "TooManyRequests", "message": "Tenant CPU quota for advanced hunting "
                                 f"exceeded. Queries are blocked until {UNTIL_TEXT}."}},
                 headers={"Retry-After": "900"}, takes=takes)


def test_a_cpu_429s_retry_after_runs_from_the_answer_to_the_end_of_the_block_it_set() -> None:
    # A 40 s query ends with Graph's CPU 429 naming a time 640 s after the slot's decision: the block every instance
    # holds ends then, and the caller, answered 40 s after the decision, is told 600 s (not 640 from the decision).
    clock = FakeClock(START)
    rig = make_edge([cpu_429(takes=40.0)], clock=clock)
    response = rig.edge.hunt(hunting_request(), HuntingShape.DEFENDER)
    assert clock.now == START + 40
    assert response.status_code == 429 and response.headers["Retry-After"] == "600"
    assert rig.store.blocks("hunting") == [round(UNTIL * 1000)]
    held = rig.gateway.call(HUNT, CID)  # right after the answer: held for the same 600 s, nothing sent
    assert isinstance(held.last, Refused) and held.decision.retry_after == 600 and len(rig.transport.calls) == 1


def test_the_worker_reschedules_a_cpu_429_to_the_end_of_the_block_it_set() -> None:
    clock = FakeClock(START)
    rig = make_edge([cpu_429(takes=40.0)], clock=clock)
    built = rig.runtime
    assert isinstance(built.queues, MemoryQueues)
    assert rig.edge.hunt(hunting_request({"Prefer": "respond-async"}), HuntingShape.DEFENDER).status_code == 202
    (message,) = built.queues.take(built.queues.requests_name)
    built.worker.handle(message.text)
    (waiting,) = built.queues.messages[built.queues.waiting_name(Api.HUNTING)]
    assert rig.store.blocks("hunting") == [round(UNTIL * 1000)]
    assert waiting.visible_at == UNTIL  # back when the block ends, not before
