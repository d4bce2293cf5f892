"""Every validation rule, over HTTP through the local host: a clear problem+json naming the field,
and no call to Defender (checked in the simulator's call log)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localdev.simulator.data import SEED_EVENT, SEED_FILE_SHA1
from tests.support.inputs import VALID
from tests.support.servers import GatewayClient, SimulatorAdmin, assert_no_upstream_call, assert_problem


@pytest.mark.parametrize(("value", "says"), [
    ("d41d8cd98f00b204e9800998ecf8427e", "MD5"),
    ("ab" * 64, "SHA-512"),
    ("6532ec91d513acc05f43ee0aa3002599729fd3eZ", "40 or 64 hexadecimal"),
    ("6532ec91d513acc05f43ee0aa3002599729fd3", "40 or 64 hexadecimal"),
    ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", "40 or 64 hexadecimal"),
    ("not-a-hash", "40 or 64 hexadecimal"),
])
def test_neither_sha1_nor_sha256_is_refused_naming_the_hash_type(gateway: GatewayClient, sim: SimulatorAdmin,
                                                                  value: str, says: str) -> None:
    problem = assert_problem(gateway.get_alerts(value), 400, "route.fileHash")
    assert says in problem["errors"][0]["message"]
    if says in ("MD5", "SHA-512"):
        assert "SHA-1" in problem["errors"][0]["message"] and "SHA-256" in problem["errors"][0]["message"]
    assert_no_upstream_call(sim)


def test_upper_case_sha1_is_normalised(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    response = gateway.get_alerts(SEED_FILE_SHA1.upper())
    assert response.status_code == 200
    assert sim.calls("file_alerts")[0]["path"] == f"/api/files/{SEED_FILE_SHA1}/alerts"


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != name}


@pytest.mark.parametrize("name", list(VALID))
def test_each_missing_field_is_named(gateway: GatewayClient, sim: SimulatorAdmin, name: str) -> None:
    problem = assert_problem(gateway.create(without(name)), 400, f"body.{name}")
    assert problem["errors"][0]["message"] == "is required"
    assert_no_upstream_call(sim)


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("severity", "Critical", "one of Low, Medium, High"),
    ("severity", 3, "one of Low"),
    ("category", "Malwares", "one of General"),
    ("machineId", "1e5bc9d7e413ddd7902c2932e418702b84d0cc0", "40 hexadecimal"),
    ("machineId", "1e5bc9d7e413ddd7902c2932e418702b84d0cc0z", "40 hexadecimal"),
    ("eventTime", "2018-08-03 16:45:21", "ISO-8601 UTC"),
    ("eventTime", "2018-08-03T16:45:21.71151839Z", "up to 7 fractional digits"),
    ("eventTime", "2018-08-03T16:45:21.7115183+02:00", "zone Z"),
    ("eventTime", "2018-02-30T16:45:21Z", "ISO-8601"),
    ("eventTime", 1533314721, "ISO-8601"),
    ("reportId", "", "non-empty"),
    ("reportId", -5, "non-negative integer"),
    ("reportId", True, "non-empty"),
    ("title", "   ", "non-empty string"),
    ("description", None, "non-empty string"),
    ("recommendedAction", ["nothing"], "non-empty string"),
    ("title", "x" * 4097, "at most 4096"),
])
def test_bad_values_are_named(gateway: GatewayClient, sim: SimulatorAdmin, name: str, value: Any,
                              fragment: str) -> None:
    problem = assert_problem(gateway.create({**VALID, name: value}), 400, f"body.{name}")
    assert fragment in problem["errors"][0]["message"]
    assert_no_upstream_call(sim)


def test_unknown_field_is_refused_with_a_hint(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    body = without("recommendedAction") | {"recommendedActions": "nothing"}
    problem = assert_problem(gateway.create(body), 400, "body.recommendedActions", "body.recommendedAction")
    hint = next(e for e in problem["errors"] if e["field"] == "body.recommendedActions")["message"]
    assert "Did you mean 'recommendedAction'?" in hint
    assert_no_upstream_call(sim)


def test_all_errors_are_reported_at_once(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    body = {**VALID, "severity": "urgent", "category": "bad", "machineId": "x"}
    assert_problem(gateway.create(body), 400, "body.severity", "body.category", "body.machineId")
    assert_no_upstream_call(sim)


def test_body_over_64_kib_is_413(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    body = json.dumps({**VALID, "description": "x" * (64 * 1024)})
    assert_problem(gateway.create(body), 413)
    assert_no_upstream_call(sim)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_non_json_content_type_is_415(gateway: GatewayClient, sim: SimulatorAdmin, content_type: str) -> None:
    assert_problem(gateway.create(json.dumps(VALID), content_type=content_type), 415)
    assert_no_upstream_call(sim)


@pytest.mark.parametrize("body", ['{"machineId": ', "[1, 2]", '"text"', "\xff\xfe"])
def test_malformed_json_is_400(gateway: GatewayClient, sim: SimulatorAdmin, body: str) -> None:
    assert_problem(gateway.create(body.encode("latin-1")), 400, "body")
    assert_no_upstream_call(sim)


def test_values_are_sent_canonical_and_precise(gateway: GatewayClient, sim: SimulatorAdmin) -> None:
    body = {**VALID, "severity": "low", "category": "exploit", "reportId": 20776,
            "machineId": SEED_EVENT["machineId"].upper(), "eventTime": "2018-08-03t16:45:21.7115183z"}
    response = gateway.create(body, content_type="application/json; charset=utf-8")
    assert response.status_code == 200, response.text
    sent = json.loads(sim.calls("create_alert")[0]["body"])
    assert sent == {**VALID, "severity": "Low", "category": "Exploit", "reportId": "20776",
                    "eventTime": "2018-08-03T16:45:21.7115183Z"}
