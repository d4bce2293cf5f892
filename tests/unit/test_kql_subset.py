"""The simulator's KQL subset (localdev/simulator/kql.py) and its runHuntingQuery answer
(localdev/simulator/hunting.py), in process: the query shapes it runs, the answers they give over known rows, and
the refusals Graph would give."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from localdev.simulator import hunting, kql
from localdev.simulator.data import (
    RECENT_EVENTS,
    SEED_EVENT,
    SEED_FILE_SHA1,
    generated_events,
    normalise_time,
    seed_events,
)

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
NOW_TICKS = kql.ticks_of(NOW)
SECOND = kql.TICKS_PER_SECOND
DAY = 86_400 * SECOND


def row(report_id: int, *, days_ago: float = 0, sha1: str = "a" * 40, device: str = "d" * 40, name: str = "ws-1",
        file_name: str = "evil.exe", action: str = "FileCreated") -> dict[str, Any]:
    return {"Timestamp": kql.format_ticks(NOW_TICKS - int(days_ago * DAY) + 1234567), "DeviceId": device,
            "DeviceName": name, "ActionType": action, "FileName": file_name, "FolderPath": "c:\\temp",
            "SHA1": sha1, "SHA256": "b" * 64, "InitiatingProcessFileName": "explorer.exe", "ReportId": report_id}


ROWS = [
    row(1, days_ago=1, name="WS-0042.contoso.com", file_name="Invoice.PS1"),
    row(2, days_ago=3, sha1="c" * 40, name="fs-01.contoso.com"),
    row(3, days_ago=10, device="e" * 40, name="laptop-7.fabrikam.com", file_name="setup.exe", action="FileModified"),
    row(4, days_ago=0.5, name="ws-0042.contoso.com", file_name="invoice.ps1"),
]


def answer(text: str, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return kql.run(kql.parse(text, NOW_TICKS), ROWS if rows is None else rows)


def ids(text: str) -> list[int]:
    return [int(r["ReportId"]) for r in answer(text)]


@pytest.mark.parametrize(("query", "expected"), [
    ("DeviceFileEvents", [1, 2, 3, 4]),
    (f'DeviceFileEvents | where SHA1 == "{"c" * 40}"', [2]),
    ('DeviceFileEvents | where DeviceName == "ws-0042.contoso.com"', [4]),  # == is case-sensitive
    ('DeviceFileEvents | where DeviceName =~ "ws-0042.contoso.com"', [1, 4]),
    ('DeviceFileEvents | where DeviceName != "ws-0042.contoso.com"', [1, 2, 3]),
    ('DeviceFileEvents | where DeviceName !~ "WS-0042.CONTOSO.COM"', [2, 3]),
    ('DeviceFileEvents | where DeviceName has "contoso"', [1, 2, 4]),
    ('DeviceFileEvents | where DeviceName has "CONTOSO"', [1, 2, 4]),  # has: any case
    ('DeviceFileEvents | where DeviceName has "conto"', []),  # has: whole terms only
    ('DeviceFileEvents | where DeviceName !has "contoso"', [3]),
    ('DeviceFileEvents | where DeviceName contains "conto"', [1, 2, 4]),
    ('DeviceFileEvents | where FileName startswith "inv"', [1, 4]),
    ('DeviceFileEvents | where FileName in ("setup.exe", "invoice.ps1")', [3, 4]),
    ('DeviceFileEvents | where FileName in~ ("INVOICE.ps1")', [1, 4]),
    ('DeviceFileEvents | where FileName !in ("setup.exe", "invoice.ps1")', [1, 2]),
    ("DeviceFileEvents | where ReportId == 3", [3]),
    ("DeviceFileEvents | where ReportId >= 2 and ReportId < 4", [2, 3]),
    ("DeviceFileEvents | where ReportId in (1, 4)", [1, 4]),
    ("DeviceFileEvents | where ReportId between (2 .. 3)", [2, 3]),
    ("DeviceFileEvents | where Timestamp > ago(2d)", [1, 4]),
    ("DeviceFileEvents | where Timestamp >= ago(12h)", [4]),
    ("DeviceFileEvents | where Timestamp < ago(7d)", [3]),
    ("DeviceFileEvents | where Timestamp <= now()", [1, 2, 3, 4]),
    ("DeviceFileEvents | where Timestamp between (datetime(2026-12-02) .. datetime(2026-12-05T23:59:59Z))", [1, 2]),
    ('DeviceFileEvents | where Timestamp > datetime("2026-12-05 00:00:00")', [1, 4]),
    ('DeviceFileEvents | where DeviceName has "contoso" and FileName =~ "invoice.ps1" and Timestamp > ago(7d)', [1, 4]),
    ('DeviceFileEvents | where DeviceName has "contoso" | where ReportId > 1', [2, 4]),
    ("DeviceFileEvents | order by Timestamp desc", [4, 1, 2, 3]),
    ("DeviceFileEvents | order by Timestamp", [4, 1, 2, 3]),  # descending unless asc, as in KQL
    ("DeviceFileEvents | sort by Timestamp asc", [3, 2, 1, 4]),
    ("DeviceFileEvents | order by ReportId asc | take 2", [1, 2]),
    ("DeviceFileEvents | order by ReportId desc | limit 1", [4]),
    ("DeviceFileEvents | take 0", []),
    ("DeviceFileEvents | order by ActionType asc, ReportId desc", [4, 2, 1, 3]),
    ("DeviceFileEvents | order by DeviceName asc", [1, 2, 3, 4]),  # ordinal: upper case first
    ("DeviceFileEvents | take 3 | order by ReportId desc", [3, 2, 1]),
    ("DeviceFileEvents\n| where ReportId > 1 // a comment\n| order by ReportId asc", [2, 3, 4]),
    ("  DeviceFileEvents | where FileName == @'Invoice.PS1'  ", [1]),
    ("DeviceFileEvents | where FileName == 'Invoice.PS1'", [1]),
])
def test_a_query_of_the_subset_answers_the_rows_it_names(query: str, expected: list[int]) -> None:
    assert ids(query) == expected


def test_the_third_playbooks_query_runs() -> None:
    """playbooks/Hunt-And-Alert-DefenderFile's query, as it fills it in for a SHA-1 (its hash in any case)."""
    query = ('DeviceFileEvents | where SHA1 =~ "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" and Timestamp > ago(7d) '
             "| project Timestamp, ReportId, DeviceId, DeviceName | order by Timestamp desc | take 10")
    assert [(r["ReportId"], r["DeviceName"]) for r in answer(query)] == [
        (4, "ws-0042.contoso.com"), (1, "WS-0042.contoso.com")]  # 2: another file; 3: ten days ago


def test_project_gives_those_columns_in_that_order_with_their_types() -> None:
    query = kql.parse("DeviceFileEvents | project ReportId, Timestamp, DeviceId | order by ReportId asc | take 1",
                      NOW_TICKS)
    assert [(name, kind.value) for name, kind in query.schema] == [
        ("ReportId", "Int64"), ("Timestamp", "DateTime"), ("DeviceId", "String")]
    assert kql.run(query, ROWS) == [{"ReportId": 1, "Timestamp": ROWS[0]["Timestamp"], "DeviceId": "d" * 40}]


def test_without_project_every_column_of_the_table_in_schema_order() -> None:
    query = kql.parse("DeviceProcessEvents | take 1", NOW_TICKS)
    assert [name for name, _ in query.schema] == [name for name, _ in kql.TABLES["DeviceProcessEvents"]]
    assert "ProcessCommandLine" in dict(query.schema)


@pytest.mark.parametrize(("query", "token", "where"), [
    ("DeviceFileEvents | summarize count() by DeviceId", "summarize", (1, 20)),
    ("DeviceFileEvents | where SHA1 == 'a' or SHA1 == 'b'", "or", (1, 38)),
    ("DeviceFileEvents | where", "<end of query>", (1, 25)),
    ("DeviceFileEvents | take", "<end of query>", (1, 24)),
    ("DeviceFileEvents | take 1.5", "1.5", (1, 25)),
    ("DeviceFileEvents |", "<end of query>", (1, 19)),
    ("DeviceFileEvents\n| where SHA1 = 'a'", "=", (2, 14)),
    ("DeviceFileEvents | where SHA1 == \"abc", "\"abc", (1, 34)),
    ("DeviceFileEvents | Where SHA1 == 'a'", "Where", (1, 20)),  # operators are case-sensitive
    ("DeviceFileEvents | where Timestamp > ago(7days)", "7days", (1, 42)),
    ("DeviceFileEvents | where Timestamp > ago(d)", "d", (1, 42)),
    ("DeviceFileEvents | where Timestamp > datetime(yesterday)", "datetime(yesterday)", (1, 38)),
    ("DeviceFileEvents | where Timestamp between (ago(1d), now())", ",", (1, 52)),
    ("DeviceFileEvents | project", "<end of query>", (1, 27)),
    ("DeviceFileEvents | order Timestamp", "Timestamp", (1, 26)),
    ("DeviceFileEvents take 1", "take", (1, 18)),
    ("let x = 1; DeviceFileEvents", "=", (1, 7)),
    ("DeviceFileEvents | where SHA1 == 'a' | take 1; DeviceEvents", ";", (1, 46)),
    ("| take 1", "|", (1, 1)),
])
def test_what_the_subset_cannot_parse_is_refused_where_it_stops(query: str, token: str,
                                                                  where: tuple[int, int]) -> None:
    with pytest.raises(kql.QuerySyntaxError) as refused:
        kql.parse(query, NOW_TICKS)
    assert str(refused.value) == f"Query could not be parsed at '{token}' on line [{where[0]},{where[1]}]"


@pytest.mark.parametrize(("query", "message"), [
    ("DeviceNetworkEvents | take 1", "Failed to resolve table or column expression named 'DeviceNetworkEvents'"),
    ("devicefileevents | take 1", "Failed to resolve table or column expression named 'devicefileevents'"),
    ("DeviceFileEvents | where Sha1 == 'a'", "'where' operator: Failed to resolve scalar expression named 'Sha1'"),
    ("DeviceFileEvents | where ProcessCommandLine has 'x'",
     "'where' operator: Failed to resolve scalar expression named 'ProcessCommandLine'"),
    ("DeviceFileEvents | project DeviceId | where SHA1 == 'a'",
     "'where' operator: Failed to resolve scalar expression named 'SHA1'"),
    ("DeviceFileEvents | project Nope", "'project' operator: Failed to resolve scalar expression named 'Nope'"),
    ("DeviceFileEvents | project DeviceId, SHA1, DeviceId",
     "'project' operator: the column 'DeviceId' is projected twice"),
    ("DeviceFileEvents | order by Nope", "'order by' operator: Failed to resolve scalar expression named 'Nope'"),
    ("DeviceFileEvents | where ReportId == '12'", "Cannot compare values of types long and string"),
    ("DeviceFileEvents | where SHA1 == 12", "Cannot compare values of types string and long"),
    ("DeviceFileEvents | where Timestamp > 12", "Cannot compare values of types datetime and long"),
    ("DeviceFileEvents | where Timestamp > '2026-12-01'", "Cannot compare values of types datetime and string"),
    ("DeviceFileEvents | where SHA1 > 'a'", "The operator '>' is not defined for values of type string"),
    ("DeviceFileEvents | where ReportId has 1", "The operator 'has' is not defined for values of type long"),
])
def test_a_query_naming_what_does_not_exist_is_a_semantic_error(query: str, message: str) -> None:
    with pytest.raises(kql.QuerySemanticError) as refused:
        kql.parse(query, NOW_TICKS)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(("timespan", "start", "end"), [
    ("P7D", NOW_TICKS - 7 * DAY, NOW_TICKS),
    ("PT12H", NOW_TICKS - DAY // 2, NOW_TICKS),
    ("P1DT6H", NOW_TICKS - DAY - DAY // 4, NOW_TICKS),
    ("P2W", NOW_TICKS - 14 * DAY, NOW_TICKS),
    ("PT90S", NOW_TICKS - 90 * SECOND, NOW_TICKS),
    ("2026-12-01T00:00:00Z/2026-12-02T00:00:00Z", NOW_TICKS - 5 * DAY - DAY // 2, NOW_TICKS - 4 * DAY - DAY // 2),
    ("2026-12-01T00:00:00Z/P1D", NOW_TICKS - 5 * DAY - DAY // 2, NOW_TICKS - 4 * DAY - DAY // 2),
    ("P1D/2026-12-02T00:00:00Z", NOW_TICKS - 5 * DAY - DAY // 2, NOW_TICKS - 4 * DAY - DAY // 2),
])
def test_timespan_is_a_duration_back_from_now_or_an_interval(timespan: str, start: int, end: int) -> None:
    assert kql.timespan_window(timespan, NOW_TICKS) == (start, end)


@pytest.mark.parametrize("timespan", ["7d", "P", "PT", "P1H", "yesterday", "2026-12-02/2026-12-01",
                                      "2026-12-01T00:00:00Z", "P1D/P2D", "", "/"])
def test_a_timespan_that_is_no_duration_or_interval_is_refused(timespan: str) -> None:
    with pytest.raises(ValueError, match=r"is not an ISO 8601 duration or interval|ends before it starts"):
        kql.timespan_window(timespan, NOW_TICKS)


def test_times_keep_seven_fraction_digits() -> None:
    ticks = kql.parse_datetime("2026-12-06T10:00:00.1234567Z")
    assert ticks is not None and kql.format_ticks(ticks) == "2026-12-06T10:00:00.1234567Z"
    assert kql.parse_datetime("2026-12-06T10:00:00.12345678Z") is None
    assert kql.parse_datetime("2026-02-30") is None


# -- the endpoint's answer over the simulator's events ---------------------------------------------
def request(body: Any) -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request(EnvironBuilder(method="POST", path="/v1.0/security/runHuntingQuery", data=data,
                                  content_type="application/json").get_environ())


def run(body: Any, events: list[dict[str, Any]] | None = None) -> tuple[int, dict[str, Any]]:
    response = hunting.run_query(request(body), seed_events(NOW) if events is None else events,
                                 now=NOW.timestamp())
    document: dict[str, Any] = json.loads(response.get_data())
    return response.status_code, document


def test_the_answer_is_graphs_shape_over_the_seed_events() -> None:
    status, document = run({"Query": f'DeviceFileEvents | where SHA1 == "{SEED_FILE_SHA1}" '
                                     "| project Timestamp, DeviceId, ReportId | order by Timestamp asc"})
    assert status == 200
    assert document["@odata.context"] == ("https://graph.microsoft.com/v1.0/$metadata"
                                          "#microsoft.graph.security.huntingQueryResults")
    assert document["schema"] == [{"name": "Timestamp", "type": "DateTime"}, {"name": "DeviceId", "type": "String"},
                                  {"name": "ReportId", "type": "Int64"}]
    recent = [e for e in RECENT_EVENTS if e["table"] == "DeviceFileEvents" and e["sha1"] == SEED_FILE_SHA1]
    assert [r["ReportId"] for r in document["results"]] == [int(e["reportId"]) for e in recent]
    assert [r["DeviceId"] for r in document["results"]] == [e["machineId"] for e in recent]
    for result, event in zip(document["results"], recent, strict=True):
        # within the second before its offset, seven fraction digits made from its report id
        assert result["Timestamp"] == kql.format_ticks(NOW_TICKS - (int(event["secondsAgo"]) + 1) * SECOND
                                                       + (int(event["reportId"]) * 7919) % 10**7)


def test_every_hunted_row_names_an_event_create_alert_by_reference_finds() -> None:
    events = seed_events(NOW)
    for table in kql.TABLES:
        status, document = run({"Query": f"{table} | project Timestamp, ReportId, DeviceId"}, events)
        assert status == 200 and document["results"]
        for result in document["results"]:
            assert any(e["reportId"] == str(result["ReportId"]) and e["machineId"] == result["DeviceId"]
                       and normalise_time(e["eventTime"]) == result["Timestamp"] for e in events)


def test_events_older_than_thirty_days_or_outside_the_timespan_are_not_answered() -> None:
    status, document = run({"Query": f"DeviceFileEvents | where ReportId == {SEED_EVENT['reportId']}"})
    assert (status, document["results"]) == (200, [])  # the 2018 seed event: beyond Graph's 30 days
    events = generated_events("f" * 40, 3, first_report_id=500, start=NOW, spacing_seconds=3600)
    assert [r["ReportId"] for r in run({"Query": "DeviceFileEvents", "Timespan": "PT90M"}, events)[1]["results"]] \
        == [500, 501]
    assert [r["ReportId"] for r in run({"Query": "DeviceFileEvents", "Timespan": "PT30M"}, events)[1]["results"]] \
        == [500]


def test_generated_events_are_the_same_for_the_same_call() -> None:
    first = generated_events("A" * 40, 4, first_report_id=9000, start=NOW, devices=2)
    assert first == generated_events("a" * 40, 4, first_report_id=9000, start=NOW, devices=2)
    assert len({e["machineId"] for e in first}) == 2
    assert [e["reportId"] for e in first] == ["9000", "9001", "9002", "9003"]
    assert all(normalise_time(e["eventTime"]) == e["eventTime"] for e in first)


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "Unable to read JSON request payload"),
    ([], "Unable to read JSON request payload"),
    ({}, "The 'Query' parameter is required"),
    ({"Query": "  "}, "The 'Query' parameter is required"),
    ({"Query": 5}, "The 'Query' parameter is required"),
    ({"Query": "DeviceEvents", "Timespan": 7}, "Invalid Timespan"),
    ({"Query": "DeviceEvents", "Timespan": "seven days"}, "Invalid Timespan"),
    ({"Query": "DeviceEvents", "Top": 5}, "Property 'top' does not exist"),
    ({"Query": "DeviceEvents | count"}, "Query could not be parsed at 'count' on line [1,16]"),
    ({"Query": "AlertInfo"}, "Failed to resolve table or column expression named 'AlertInfo'"),
])
def test_a_request_graph_cannot_run_is_a_400_bad_request_with_its_diagnosis(body: Any, message: str) -> None:
    status, document = run(body)
    assert status == 400
    assert document["error"]["code"] == "BadRequest"
    assert document["error"]["message"].startswith(message)
    assert set(document["error"]["innerError"]) == {"date", "request-id", "client-request-id"}


def test_the_cpu_block_ends_at_the_next_fifteen_minute_boundary() -> None:
    assert hunting.next_cycle(NOW.timestamp()) == NOW.timestamp() + 900
    assert hunting.next_cycle(NOW.timestamp() + 1) == NOW.timestamp() + 900
    assert hunting.next_cycle(NOW.timestamp() + 899.5) == NOW.timestamp() + 900
    state = hunting.HuntingState()
    assert hunting.set_cpu(state, None, {"exhaust": True}, NOW.timestamp() + 60) == {
        "exhausted": True, "until": "2026-12-06T12:15:00Z"}
    assert hunting.cpu_block_of(state, "other", NOW.timestamp() + 60) is None  # per tenant
    assert hunting.cpu_block_of(state, None, NOW.timestamp() + 899) is not None
    assert hunting.cpu_block_of(state, None, NOW.timestamp() + 900) is None
