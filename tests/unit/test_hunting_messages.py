"""A hunting query on the request queue: `RunHuntingQuery` with Graph's body and the answer's `shape` (Graph's by
default), checked like the HTTP input; the shape survives the round trip through a message and makes another
request of the same query."""

from __future__ import annotations

import json

import pytest

from shared.asynchronous.messages import InvalidMessageError, RequestMessage, encode, parse
from shared.asynchronous.operations import fingerprint
from shared.defender.client import DefenderRequest
from shared.validation.hunting import HuntingShape

QUERY = 'DeviceFileEvents | where SHA1 == "6532ec91d513acc05f43ee0aa3002599729fd3e1" | take 5'


def message(**fields: object) -> str:
    return json.dumps({"version": 1, "id": "hunt-1", "operation": "RunHuntingQuery", **fields})


def test_a_hunting_message_is_graphs_shape_by_default_and_keeps_its_shape() -> None:
    parsed = parse(message(body={"Query": QUERY, "Timespan": "P1D"}))
    assert parsed.request == DefenderRequest.hunting(QUERY, "P1D") and parsed.shape is HuntingShape.GRAPH
    defender = parse(message(body={"Query": QUERY}, shape="defender"))
    assert defender.shape is HuntingShape.DEFENDER
    again = parse(encode(RequestMessage("hunt-1", defender.request, shape=HuntingShape.DEFENDER)))
    assert again.request == defender.request and again.shape is HuntingShape.DEFENDER
    assert fingerprint(defender.request, HuntingShape.DEFENDER) != fingerprint(defender.request, HuntingShape.GRAPH)


@pytest.mark.parametrize(("fields", "named"), [
    ({"body": {"Query": QUERY, "Timespan": "P1D"}, "shape": "defender"}, "body.Timespan"),  # Defender's takes Query
    ({"body": {"Query": "  "}}, "body.Query"),
    ({"body": {"Query": QUERY, "Timespan": "yesterday"}}, "body.Timespan"),
    ({"body": {"Query": QUERY}, "shape": "mde"}, "shape"),
    ({"body": "DeviceEvents"}, "body"),
    ({"body": {"Query": QUERY}, "fileHash": "ab" * 20}, "fileHash"),
])
def test_a_bad_hunting_message_names_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidMessageError) as raised:
        parse(message(**fields))
    assert [error.field for error in raised.value.errors] == [named] and raised.value.message_id == "hunt-1"


def test_only_a_hunting_message_has_a_shape() -> None:
    with pytest.raises(InvalidMessageError) as raised:
        parse(json.dumps({"version": 1, "id": "m", "operation": "GetFileRelatedAlerts", "fileHash": "ab" * 20,
                          "shape": "graph"}))
    assert [error.field for error in raised.value.errors] == ["shape"]
