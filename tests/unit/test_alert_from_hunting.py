"""scripts/alert_from_hunting.py: the quickstart's step from a hunting answer to an alert's body."""

from __future__ import annotations

import io
import json

import pytest

from scripts import alert_from_hunting
from shared.defender.facts import CREATE_FIELDS

ROW = {"Timestamp": "2026-12-06T10:00:00.1234567Z", "ReportId": 7101, "DeviceId": "a" * 40, "FileName": "x.exe"}


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: object,
        *args: str) -> tuple[int, list[dict[str, str]], str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(answer)))
    code = alert_from_hunting.main(list(args))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("rows", ["Results", "results"])
def test_a_row_of_either_shape_becomes_a_complete_create_body(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rows: str) -> None:
    code, bodies, _ = run(monkeypatch, capsys, {rows: [ROW, {**ROW, "ReportId": 7103}]}, "--title", "t")
    assert code == 0
    assert bodies == [{"eventTime": ROW["Timestamp"], "reportId": "7101", "machineId": "a" * 40, "severity": "Low",
                       "category": "Malware", "title": "t", "description": "An event found by an advanced-hunting "
                       "query.", "recommendedAction": "Investigate the device and the file."}]
    assert set(bodies[0]) == set(CREATE_FIELDS)  # exactly the fields CreateAlertByReference takes


def test_max_bounds_the_bodies(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _, bodies, _ = run(monkeypatch, capsys, {"Results": [ROW] * 5}, "--max", "3")
    assert len(bodies) == 3


@pytest.mark.parametrize(("answer", "says"), [
    ({"Results": []}, "found no event"),
    ({"value": []}, "not a hunting answer"),
    ({"Results": [{"Timestamp": ROW["Timestamp"], "DeviceId": "a" * 40}]}, "row 0 has no ReportId"),
    ([1, 2], "not a hunting answer"),
])
def test_what_names_no_event_is_an_error_on_stderr_and_nothing_on_stdout(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: object, says: str) -> None:
    code, bodies, err = run(monkeypatch, capsys, answer)
    assert (code, bodies) == (1, [])
    assert says in err


def test_input_that_is_not_json_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("<html>"))
    assert alert_from_hunting.main([]) == 1
    assert "alert_from_hunting:" in capsys.readouterr().err
