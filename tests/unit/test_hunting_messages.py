"""A hunting query on the request queue: `RunHuntingQuery` with Graph's body and the answer's `shape` (Graph's by
default), checked like the HTTP input; the shape survives the round trip through a message and makes another
request of the same query."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.asynchronous.messages import InvalidMessageError, RequestMessage, encode, parse
from shared.asynchronous.operations import fingerprint
from shared.asynchronous.queue_names import MAX_MESSAGE_BYTES
from shared.defender.client import DefenderRequest
from shared.defender.facts import HUNTING_MAX_QUERY_BYTES, HUNTING_MAX_QUERY_CHARACTERS
from shared.validation import InvalidInputError
from shared.validation.hunting import HuntingShape, query_json_bytes, validate_hunting

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


def _largest(text: str) -> str:
    """`text` repeated to the longest query the validator takes, in a where-clause."""
    head, tail = 'DeviceFileEvents | where FileName != "', '" | take 5'
    count = min((HUNTING_MAX_QUERY_BYTES - query_json_bytes(head + tail)) // (query_json_bytes(text) - 2),  # quotes
                (HUNTING_MAX_QUERY_CHARACTERS - len(head + tail)) // len(text))
    return head + text * count + tail


@pytest.mark.parametrize("text", ["\U0001f600", "报", "отчёт_квартал.docx", '\\"\t', "x"])
def test_the_longest_valid_query_with_the_largest_envelope_fits_a_queue_message(text: str) -> None:
    """Review 27 #5: encoded in UTF-8 (not 6-byte escapes), and limited in bytes, any query the validator takes fits
    a queue message with the largest envelope (the longest id, reply queue and Timespan, a caller, tenant and trace)."""
    query = validate_hunting({"Query": _largest(text)}, HuntingShape.GRAPH).query
    timespan = "2026-12-01T00:00:00.1234567Z/P999999999Y999999999M999999999DT999999999H999999999M999999999.9999999S"
    request = DefenderRequest.hunting(query, timespan).for_tenant(str(uuid.UUID(int=1)))
    encoded = encode(RequestMessage("i" * 128, request, reply_queue="q" * 63, caller=str(uuid.UUID(int=2)),
                                    traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01", shape=HuntingShape.GRAPH))
    assert len(encoded.encode("utf-8")) <= MAX_MESSAGE_BYTES
    assert parse(encoded).request == request  # and it reads back as it went
    with pytest.raises(InvalidInputError) as refused:  # beyond either limit: refused naming the field
        validate_hunting({"Query": _largest(text) + text * 2}, HuntingShape.GRAPH)
    assert [error.field for error in refused.value.errors] == ["body.Query"]
    if query_json_bytes(text) - 2 > 2 * len(text):  # more than 2 bytes a character: the byte limit binds first
        assert "bytes as UTF-8 JSON" in refused.value.errors[0].message


def test_messages_are_utf8_not_ascii_escapes() -> None:
    request = DefenderRequest.hunting('DeviceFileEvents | where FileName == "отчёт.docx"')
    encoded = encode(RequestMessage("hunt-1", request))
    assert "отчёт.docx" in encoded and "\\u" not in encoded
