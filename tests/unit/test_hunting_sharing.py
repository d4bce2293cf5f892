"""HUNTING_SHARE_SECONDS: identical hunting queries (same principal, same `Query` and `Timespan`, byte for byte) within
that many seconds share one Graph call through the answer cache; 0 (the default) sends every query. In process: the
cache over a dict-backed table, the sending scripted."""

from __future__ import annotations

from typing import cast

from azure.data.tables import TableClient

from shared.defender.client import AccessToken, DefenderRequest
from shared.defender.facts import Api
from shared.defender.gateway import CallResult, Identity, Sent
from shared.defender.outcomes import Outcome, Rejected, Success
from shared.lookups.answer_cache import AnswerCache
from shared.lookups.file_alerts import Deferred
from shared.lookups.hunting import HUNTING_KIND, HuntingLookups, Ran, Shared, query_key
from shared.ratelimit.decision import Decision, Reason
from shared.settings import load_settings
from tests.support.rigs import UNIT_ENV, make_edge
from tests.support.scripted import FakeClock, FakeTable

SHARE_SECONDS = 30
GRAPH_BODY = b'{"schema": [{"name": "ReportId", "type": "Int64"}], "results": [{"ReportId": 1}]}'
SUCCESS = Success(GRAPH_BODY)
HOME = Identity(AccessToken("token"), "home-tenant|gateway-app")
CUSTOMER = Identity(AccessToken("token"), "customer-tenant|gateway-app")


def hunting(query: str, timespan: str | None = None) -> DefenderRequest:
    body = {"Query": query, **({"Timespan": timespan} if timespan is not None else {})}
    return DefenderRequest(Api.HUNTING, "/v1.0/security/runHuntingQuery", body)


class Graph:
    """The sending: each request recorded, answered with `outcome`."""

    def __init__(self, outcome: Outcome = SUCCESS) -> None:
        self.outcome = outcome
        self.sent: list[DefenderRequest] = []

    def __call__(self, request: DefenderRequest) -> CallResult | Deferred[None]:
        self.sent.append(request)
        decision = Decision("hunting", True, Reason.ADMITTED, 0, (), 0.0)
        return CallResult(Sent(self.outcome, decision), 1, self.outcome)


def lookups(clock: FakeClock, *, share: bool = True) -> tuple[HuntingLookups, FakeTable]:
    table = FakeTable()
    cache = AnswerCache(cast(TableClient, table), SHARE_SECONDS, clock=clock, kind=HUNTING_KIND) if share else None
    return HuntingLookups(make_edge().gateway, cache), table


def test_sharing_is_off_by_default_and_every_query_goes_to_graph() -> None:
    assert load_settings(UNIT_ENV).answer_cache.hunting_share_seconds == 0
    hunts, table = lookups(FakeClock(), share=False)
    graph = Graph()
    first, second = (hunts.run(hunting("DeviceEvents | take 1"), HOME, graph) for _ in range(2))
    assert isinstance(first, Ran) and isinstance(second, Ran) and len(graph.sent) == 2
    assert table.entities == {}


def test_an_identical_query_within_the_time_is_answered_without_a_graph_call() -> None:
    clock = FakeClock()
    hunts, _ = lookups(clock)
    graph = Graph()
    query = hunting("DeviceProcessEvents | where SHA1 == \"ab\" | take 5", "P1D")
    assert isinstance(hunts.run(query, HOME, graph), Ran)
    clock.advance(SHARE_SECONDS - 1)
    shared = hunts.run(query, HOME, graph)
    assert isinstance(shared, Shared) and shared.answer.body == GRAPH_BODY and shared.answer.age == SHARE_SECONDS - 1
    assert len(graph.sent) == 1
    clock.advance(1)  # the time is up: asked again
    assert isinstance(hunts.run(query, HOME, graph), Ran) and len(graph.sent) == 2


def test_only_the_same_query_timespan_and_principal_share() -> None:
    hunts, _ = lookups(FakeClock())
    graph = Graph()
    hunts.run(hunting("DeviceEvents | take 1", "P1D"), HOME, graph)
    others = [(hunting("DeviceEvents | take 1", "P2D"), HOME),  # another timespan
              (hunting("DeviceEvents | take 1"), HOME),  # none
              (hunting("DeviceEvents  | take 1", "P1D"), HOME),  # not byte for byte
              (hunting("DeviceEvents | take 1", "P1D"), CUSTOMER)]  # another tenant
    for request, identity in others:
        assert isinstance(hunts.run(request, identity, graph), Ran)
    assert len(graph.sent) == 1 + len(others)
    assert len({query_key(request) for request, _ in others[:3]}) == 3


def test_a_query_graph_rejected_is_never_shared() -> None:
    hunts, table = lookups(FakeClock())
    graph = Graph(Rejected(400))
    for _ in range(2):
        assert isinstance(hunts.run(hunting("Nonsense |"), HOME, graph), Ran)
    assert len(graph.sent) == 2 and table.entities == {}
