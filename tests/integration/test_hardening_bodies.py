"""Hostile request bodies and non-ASCII look-alikes, over HTTP through the local host: always a 4xx
problem+json (never a 500), and nothing reaches Defender (checked in the simulator's call log)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from localdev.simulator.data import SEED_EVENT, SEED_FILE_SHA1
from tests.support.inputs import VALID
from tests.support.servers import GatewayClient, SimulatorAdmin, assert_problem

MAX_REPORT_ID = 2**63 - 1
ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x0660 + digit) for digit in range(10)))
FULL_WIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + digit) for digit in range(10)))


def with_raw(name: str, json_text: str) -> bytes:
    """VALID with one field's value written as raw JSON text (for what json.dumps would never write)."""
    marker = "__raw_value__"
    return json.dumps({**VALID, name: marker}).replace(json.dumps(marker), json_text).encode()


def sent_body(sim: SimulatorAdmin) -> dict[str, Any]:
    calls = sim.calls("create_alert")
    assert len(calls) == 1
    body: dict[str, Any] = json.loads(calls[0]["body"])
    return body


# --- bodies the JSON parser used to turn into a 500 -------------------------------------------------

DEPTH = 10_000  # `{"a":` is 5 bytes: the deepest object nesting that stays under 64 KiB with VALID around it


@pytest.mark.parametrize(("body", "fragment"), [
    ("[" * 32_000 + "]" * 32_000, "nested too deeply"),
    ('{"a":' * DEPTH + "1" + "}" * DEPTH, "nested too deeply"),
    (with_raw("title", "[" * 30_000 + "]" * 30_000).decode(), "nested too deeply"),
    (with_raw("reportId", "9" * 5000).decode(), "integer"),
    (with_raw("unknownField", "-" + "1" * 5000).decode(), "integer"),
    (with_raw("reportId", "NaN").decode(), "NaN"),
    (with_raw("reportId", "Infinity").decode(), "Infinity"),
    (with_raw("reportId", "-Infinity").decode(), "-Infinity"),
])
def test_unparseable_bodies_are_400_not_500(gateway: GatewayClient, sim: SimulatorAdmin, body: str,
                                            fragment: str) -> None:
    assert len(body.encode()) <= 64 * 1024
    problem = assert_problem(gateway.create(body.encode()), 400, "body")
    assert fragment in problem["errors"][0]["message"]
    assert sim.calls() == []


def test_a_duplicate_key_is_named(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    text = json.dumps(VALID)[:-1] + ', "severity": "High"}'
    problem = assert_problem(gateway.create(text.encode()), 400, "body.severity")
    assert "appears more than once" in problem["errors"][0]["message"]
    assert sim.calls() == []


# --- non-ASCII digits and case folding ----------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("eventTime", SEED_EVENT["eventTime"][:4].translate(ARABIC_INDIC) + SEED_EVENT["eventTime"][4:]),
    ("eventTime", SEED_EVENT["eventTime"].translate(FULL_WIDTH)),
    ("eventTime", SEED_EVENT["eventTime"][:-9] + SEED_EVENT["eventTime"][-9:].translate(ARABIC_INDIC)),
    ("machineId", SEED_EVENT["machineId"].translate(ARABIC_INDIC)),
    ("machineId", "\u0661" + SEED_EVENT["machineId"][1:]),  # ARABIC-INDIC DIGIT ONE
    ("severity", "Low\u00a0"),  # str.strip() removes a no-break space
    ("severity", "\u2003High"),
    ("category", "Exploit\u3000"),
])
def test_non_ascii_look_alikes_are_refused(gateway: GatewayClient, sim: SimulatorAdmin, name: str, value: str) -> None:
    assert_problem(gateway.create({**VALID, name: value}), 400, f"body.{name}")
    assert sim.calls() == []


@pytest.mark.parametrize("sha1", [
    SEED_FILE_SHA1[:-1] + "1".translate(ARABIC_INDIC),
    SEED_FILE_SHA1.translate(FULL_WIDTH),
    SEED_FILE_SHA1 + "\u3000",
])
def test_non_ascii_sha1_in_the_route_is_refused(gateway: GatewayClient, sim: SimulatorAdmin, sha1: str) -> None:
    assert_problem(gateway.get_alerts(quote(sha1)), 400, "route.fileHash")
    assert sim.calls() == []


@pytest.mark.parametrize("offered", [
    "corr-12345678".translate(ARABIC_INDIC).encode(),
    "corr-12345678".translate(FULL_WIDTH).encode(),
    b"corr-12345678\xa0",  # a no-break space (latin-1), which str.strip() would remove
])
def test_non_ascii_correlation_id_is_replaced(gateway: GatewayClient, sim: SimulatorAdmin, offered: bytes) -> None:
    response = gateway.get_alerts(SEED_FILE_SHA1, headers={"X-Correlation-ID": offered})
    assert response.status_code == 200, response.text
    answered = response.headers["X-Correlation-ID"]
    assert str(uuid.UUID(answered)) == answered
    assert sim.calls("file_alerts")[0]["client_request_id"] == answered


# --- reportId: advanced hunting's ReportId, a 64-bit integer ----------------------------------------

@pytest.mark.parametrize("raw", [
    json.dumps("1" * 60_000),
    json.dumps("12\u0000"),
    json.dumps("123".translate(ARABIC_INDIC)),
    json.dumps("123".translate(FULL_WIDTH)),
    '"\\ud800"',
    json.dumps("1_000"),
    json.dumps("+12"),
    json.dumps(" "),
    json.dumps("\u001c20776"),  # str.strip() would remove this control character
    json.dumps(str(MAX_REPORT_ID + 1)),
    str(MAX_REPORT_ID + 1),
    "-1",
    "12.0",
], ids=lambda raw: raw[:24])
def test_report_id_must_be_a_64_bit_non_negative_integer(gateway: GatewayClient, sim: SimulatorAdmin, raw: str) -> None:
    problem = assert_problem(gateway.create(with_raw("reportId", raw)), 400, "body.reportId")
    message = problem["errors"][0]["message"]
    assert "non-empty" in message and "non-negative integer" in message and str(MAX_REPORT_ID) in message
    assert sim.calls() == []


@pytest.mark.parametrize(("value", "sent"), [
    (0, "0"),
    (MAX_REPORT_ID, str(MAX_REPORT_ID)),
    (str(MAX_REPORT_ID), str(MAX_REPORT_ID)),
    (" 20776\t", "20776"),
])
def test_report_id_edge_values_are_sent_as_digit_strings(gateway: GatewayClient, sim: SimulatorAdmin, value: Any,
                                                         sent: str) -> None:
    response = gateway.create({**VALID, "reportId": value})
    assert response.status_code in (200, 404), response.text  # 404: the simulator has no such event
    assert sent_body(sim)["reportId"] == sent


# --- free text: no NUL, no control characters but tab/CR/LF, no lone surrogates -------------------------

@pytest.mark.parametrize(("name", "raw"), [
    ("title", json.dumps("a\u0000b")),
    ("title", json.dumps("bell\u0007")),
    ("description", json.dumps("escape \u001b[31m red")),
    ("description", json.dumps("delete\u007f")),
    ("recommendedAction", json.dumps("next line\u0085")),
    ("recommendedAction", json.dumps("csi\u009b")),
    ("title", '"lone \\ud800 high"'),
    ("description", '"lone \\udfff low"'),
    ("recommendedAction", '"reversed \\udc00\\ud800 pair"'),
], ids=lambda value: value[:20])
def test_text_with_control_characters_or_lone_surrogates_is_refused(gateway: GatewayClient, sim: SimulatorAdmin,
                                                                    name: str, raw: str) -> None:
    problem = assert_problem(gateway.create(with_raw(name, raw)), 400, f"body.{name}")
    message = problem["errors"][0]["message"]
    assert "non-empty string" in message and "control characters" in message and "surrogates" in message
    assert sim.calls() == []


def test_text_keeps_tabs_line_breaks_and_non_ascii(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    text = {"title": "Ärger\tmit 🔥", "description": "line 1\r\nline 2\n", "recommendedAction": "isolate «host»"}
    response = gateway.create({**VALID, **text})
    assert response.status_code == 200, response.text
    assert {name: sent_body(sim)[name] for name in text} == text
