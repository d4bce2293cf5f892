"""Advanced hunting at the edge, in process: the body's checks (shared.validation.hunting), Defender's shape made
from Graph's (shared.answers.hunting), and the OpenAPI document saying exactly what the validator takes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.answers.answer import Answer
from shared.answers.hunting import cpu_exhausted_problem, defender_shape, in_shape, query_rejected_problem
from shared.defender.facts import HUNTING_MAX_QUERY_CHARACTERS
from shared.defender.outcomes import DefenderError
from shared.http import openapi
from shared.http.openapi_hunting import ADVANCED_QUERY_PATH, HUNTING_QUERY_PATH, TIMESPAN_PATTERN
from shared.http.settings import AuthMode
from shared.validation import InvalidInputError
from shared.validation.hunting import TIMESPAN_EXAMPLES, HuntingQuery, HuntingShape, is_timespan, validate_hunting
from tests.support.inputs import pattern_disagreements

QUERY = 'DeviceProcessEvents | where SHA1 == "6532ec91d513acc05f43ee0aa3002599729fd3e1" | take 10'
GRAPH_BODY = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
    "schema": [{"name": "Timestamp", "type": "DateTime"}, {"name": "ReportId", "type": "Int64"},
               {"name": "DeviceId", "type": "String"}, {"name": "FileName", "type": "String"}],
    "results": [{"Timestamp": "2026-12-06T10:00:00.1234567Z", "ReportId": 1234,
                 "DeviceId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07", "FileName": "Ärger.exe"},
                {"Timestamp": "2026-12-06T10:01:00.0000001Z", "ReportId": 9223372036854775807,
                 "DeviceId": "2e5bc9d7e413ddd7902c2932e418702b84d0cc07", "FileName": None}],
}


def refused(document: dict[str, Any], shape: HuntingShape) -> dict[str, str]:
    """The fields the validator names, with its messages."""
    with pytest.raises(InvalidInputError) as error:
        validate_hunting(document, shape)
    return {found.field: found.message for found in error.value.errors}


# --- the body -------------------------------------------------------------------------------------------------------

def test_a_query_is_taken_as_written() -> None:
    assert validate_hunting({"Query": QUERY}, HuntingShape.DEFENDER) == HuntingQuery(QUERY, None)
    tabbed = "DeviceEvents\r\n\t| take 1  "
    assert validate_hunting({"Query": tabbed, "Timespan": "P1DT6H"}, HuntingShape.GRAPH) == \
        HuntingQuery(tabbed, "P1DT6H")
    assert validate_hunting({"Query": QUERY}, HuntingShape.GRAPH) == HuntingQuery(QUERY, None)


@pytest.mark.parametrize("shape", list(HuntingShape))
@pytest.mark.parametrize(("document", "words"), [
    ({}, "is required"),
    ({"Query": None}, "must be a string"),
    ({"Query": 42}, "must be a string"),
    ({"Query": ["DeviceEvents"]}, "must be a string"),
    ({"Query": ""}, "must not be empty"),
    ({"Query": " \t\r\n\u3000"}, "must not be empty"),
    ({"Query": "x" * (HUNTING_MAX_QUERY_CHARACTERS + 1)}, f"at most {HUNTING_MAX_QUERY_CHARACTERS} characters"),
    ({"Query": "DeviceEvents\x00| take 1"}, "control characters"),
    ({"Query": "DeviceEvents \ud800"}, "unpaired surrogates"),
])
def test_a_bad_query_is_named(shape: HuntingShape, document: dict[str, Any], words: str) -> None:
    errors = refused(document, shape)
    assert list(errors) == ["body.Query"] and words in errors["body.Query"], errors


def test_the_longest_query_is_taken() -> None:
    longest = "x" * HUNTING_MAX_QUERY_CHARACTERS
    assert validate_hunting({"Query": longest}, HuntingShape.DEFENDER).query == longest


def test_unknown_fields_are_named_timespan_on_defenders_shape_too() -> None:
    assert set(refused({"Query": QUERY, "Timespan": "P7D"}, HuntingShape.DEFENDER)) == {"body.Timespan"}
    assert set(refused({"query": QUERY, "timespan": "P7D"}, HuntingShape.DEFENDER)) == {"body.timespan"}
    errors = refused({"Query": QUERY, "Timespan": "P7D", "Top": 5, "Querry": QUERY}, HuntingShape.GRAPH)
    assert set(errors) == {"body.Top", "body.Querry"} and "Did you mean 'Query'?" in errors["body.Querry"]


def test_names_are_matched_in_any_case_and_canonicalised() -> None:
    assert validate_hunting({"query": QUERY}, HuntingShape.DEFENDER) == HuntingQuery(QUERY, None)
    assert validate_hunting({"QUERY": QUERY, "timeSpan": "P7D"}, HuntingShape.GRAPH) == HuntingQuery(QUERY, "P7D")
    assert set(refused({"query": "  ", "TIMESPAN": "7 days"}, HuntingShape.GRAPH)) == {"body.Query", "body.Timespan"}


def test_two_spellings_of_one_name_are_refused_naming_it() -> None:
    errors = refused({"Query": QUERY, "query": QUERY}, HuntingShape.GRAPH)
    assert set(errors) == {"body.Query"} and "'Query', 'query'" in errors["body.Query"]
    errors = refused({"Query": QUERY, "Timespan": "P7D", "TIMESPAN": "P1D"}, HuntingShape.GRAPH)
    assert set(errors) == {"body.Timespan"}


@pytest.mark.parametrize("timespan", [
    *TIMESPAN_EXAMPLES, "PT0.5S", "P1Y2M3DT4H5M6.1234567S", "P1M", "PT1M",
    "2028-02-29T23:59:59.1234567Z/2028-03-01T00:00:00Z"])
def test_iso_8601_durations_and_intervals_are_timespans(timespan: str) -> None:
    assert is_timespan(timespan)
    assert validate_hunting({"Query": QUERY, "Timespan": timespan}, HuntingShape.GRAPH).timespan == timespan


@pytest.mark.parametrize("timespan", [
    None, 7, "", "7d", "P", "PT", "P1DT", "P1W2D", "p7d", "P7D ", " P7D", "P-1D", "P1.5D", "PT1.5H", "1 day",
    "2026-12-01T00:00:00Z", "2026-12-01/2026-12-02", "2026-12-01T00:00:00+01:00/P1D", "2026-02-30T00:00:00Z/P1D",
    "2026-12-01T24:00:00Z/P1D", "P1D/P2D", "2026-12-01T00:00:00Z/", "/P1D", "P7D/2026-12-01T00:00:00Z/P1D",
    "P\u0661D", "P1234567890D",
])
def test_a_bad_timespan_is_named(timespan: Any) -> None:
    errors = refused({"Query": QUERY, "Timespan": timespan}, HuntingShape.GRAPH)
    assert list(errors) == ["body.Timespan"] and "ISO 8601" in errors["body.Timespan"]


def test_every_bad_field_is_named_at_once() -> None:
    assert set(refused({"Query": "", "Timespan": "7d", "Extra": 1}, HuntingShape.GRAPH)) == {
        "body.Query", "body.Timespan", "body.Extra"}


# --- Defender's shape from Graph's ---------------------------------------------------------------------------------

def test_defenders_shape_renames_the_schema_keeps_the_rows_and_states_what_the_gateway_knows() -> None:
    body = json.dumps(GRAPH_BODY).encode()
    answer = json.loads(defender_shape(body, 1.234567891))
    assert list(answer) == ["Stats", "Schema", "Results"]
    assert answer["Schema"] == [{"Name": "Timestamp", "Type": "DateTime"}, {"Name": "ReportId", "Type": "Int64"},
                                {"Name": "DeviceId", "Type": "String"}, {"Name": "FileName", "Type": "String"}]
    assert answer["Results"] == GRAPH_BODY["results"]  # every value as Graph gave it, the 7 fraction digits too
    assert answer["Stats"] == {"ExecutionTime": 1.2346, "dataset_statistics": [
        {"table_row_count": 2, "table_size": len(json.dumps(GRAPH_BODY["results"]).encode())}]}
    assert "resource_usage" not in answer["Stats"]  # Graph reports none


def test_no_rows_are_no_rows() -> None:
    answer = json.loads(defender_shape(json.dumps({"schema": [], "results": []}).encode(), 0.0))
    assert answer == {"Stats": {"ExecutionTime": 0.0, "dataset_statistics": [{"table_row_count": 0,
                                                                              "table_size": 2}]},
                      "Schema": [], "Results": []}


def test_only_a_success_for_defenders_shape_is_converted() -> None:
    headers = {"Content-Type": "application/json", "X-Correlation-ID": "correlation-1"}
    success = Answer(200, headers, json.dumps(GRAPH_BODY).encode())
    assert in_shape(success, HuntingShape.GRAPH, 1.0) is success
    converted = in_shape(success, HuntingShape.DEFENDER, 1.0)
    assert converted.status == 200 and converted.headers == headers and b'"Results"' in converted.body
    problem = Answer(400, {"Content-Type": "application/problem+json"}, b'{"type": "x"}')
    assert in_shape(problem, HuntingShape.DEFENDER, 1.0) is problem


def test_the_hunting_problems_say_what_graph_said() -> None:
    error = DefenderError("BadRequest", "Query could not be parsed at 'wher' on line [1,14]")
    rejected = query_rejected_problem(error).body("correlation-1")
    assert rejected["status"] == 400 and rejected["type"].endswith(":hunting-query-rejected")
    assert "Query could not be parsed at 'wher' on line [1,14]" in rejected["detail"]
    assert rejected["upstreamError"]["code"] == "BadRequest"
    cpu = cpu_exhausted_problem(600, DefenderError("TooManyRequests", "Tenant CPU quota ... exceeded."))
    assert (cpu.status, cpu.retry_after, cpu.kind) == (429, 600, "hunting-cpu-exhausted")


# --- the document says what the validator takes -------------------------------------------------------------------

KEYED = openapi.document(AuthMode.FUNCTION_KEY)


def test_the_request_schemas_are_the_validators() -> None:
    defender = KEYED["definitions"]["HuntingRequest"]
    graph = KEYED["definitions"]["GraphHuntingRequest"]
    assert list(defender["properties"]) == ["Query"] and list(graph["properties"]) == ["Query", "Timespan"]
    for schema in (defender, graph):
        assert schema["required"] == ["Query"] and schema["additionalProperties"] is False
        assert schema["properties"]["Query"]["maxLength"] == HUNTING_MAX_QUERY_CHARACTERS
    assert graph["properties"]["Timespan"]["pattern"] == TIMESPAN_PATTERN
    example = {name: schema["example"] for name, schema in graph["properties"].items()}
    assert validate_hunting(example, HuntingShape.GRAPH)
    for schema in (defender, graph):  # names in any case, one spelling each (the validator's rule)
        assert "names matched in any case" in schema["description"] and "case-sensitive" not in schema["description"]
        assert validate_hunting({name.lower(): value for name, value in example.items()
                                 if name in schema["properties"]}, HuntingShape.GRAPH)


def test_each_path_asks_for_its_shapes_body_and_answers_in_it() -> None:
    for path, request, result in ((ADVANCED_QUERY_PATH, "HuntingRequest", "HuntingResult"),
                                  (HUNTING_QUERY_PATH, "GraphHuntingRequest", "GraphHuntingResult")):
        operation = KEYED["paths"][path]["post"]
        body = next(parameter for parameter in operation["parameters"] if parameter["in"] == "body")
        assert body["schema"] == {"$ref": f"#/definitions/{request}"}
        assert operation["responses"]["200"]["schema"] == {"$ref": f"#/definitions/{result}"}
        assert "hunting-query-rejected" in operation["responses"]["400"]["description"]
        assert "hunting-cpu-exhausted" in operation["responses"]["429"]["description"]
        assert "hunting-query-timeout" in operation["responses"]["504"]["description"]


_DURATION_TEXT = st.text(alphabet="PTYMWDHS0123456789.", min_size=1, max_size=14)
_DATE_TIME_TEXT = st.builds("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}Z".format, st.integers(0, 10000),
                            st.integers(0, 13), st.integers(0, 32), st.integers(0, 24), st.integers(0, 60),
                            st.integers(0, 60), st.sampled_from(["", ".1", ".1234567", ".12345678"]))


@settings(max_examples=500, derandomize=True, database=None)
@given(text=_DURATION_TEXT | st.tuples(_DATE_TIME_TEXT | _DURATION_TEXT, _DATE_TIME_TEXT | _DURATION_TEXT).map("/".join)
       | st.from_regex(TIMESPAN_PATTERN, fullmatch=True))
def test_the_timespan_pattern_is_exactly_the_validators(text: str) -> None:
    assert (re.fullmatch(TIMESPAN_PATTERN, text) is not None) == is_timespan(text), text


def test_the_query_pattern_refuses_exactly_what_the_validator_refuses() -> None:
    pattern = KEYED["definitions"]["HuntingRequest"]["properties"]["Query"]["pattern"]
    assert pattern_disagreements(pattern, lambda text: validate_hunting({"Query": text}, HuntingShape.DEFENDER)) == []


def _bodies(path: str) -> st.SearchStrategy[schemathesis.Case[Any]]:
    return schemathesis.openapi.from_dict(KEYED)[path]["POST"].as_strategy()


@settings(max_examples=100, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(case=_bodies(HUNTING_QUERY_PATH))
def test_bodies_generated_from_the_schema_pass_the_validator(case: schemathesis.Case[Any]) -> None:
    assert isinstance(case.body, dict)
    body: dict[str, Any] = case.body
    assert validate_hunting(body, HuntingShape.GRAPH) == HuntingQuery(body["Query"], body.get("Timespan"))
