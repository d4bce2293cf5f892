"""Advanced hunting in the OpenAPI document: the three home operations (Defender's path, Defender XDR's, Graph's),
their request and answer schemas, and the problems only hunting has. shared.http.openapi adds them to the document
(and their customer-tenant twins through shared.http.openapi_tenants).

Every fact comes from where the code defines it: the paths and limits (shared.defender.facts), the body's fields and
the Timespan grammar (shared.validation.hunting), the text rule (shared.http.openapi_schemas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from shared.answers.correlation import CORRELATION_HEADER
from shared.defender.facts import (
    API_FACTS,
    GATEWAY_GRAPH_HUNTING_PATH,
    HUNTING_CPU_CYCLE_SECONDS,
    HUNTING_MAX_QUERY_BYTES,
    HUNTING_MAX_QUERY_CHARACTERS,
    HUNTING_MAX_ROWS,
    HUNTING_QUERY_TIMEOUT_SECONDS,
    MDE_HUNTING_PATH,
    OPERATION_NAMES,
    XDR_HUNTING_PATH,
    Api,
)
from shared.http.openapi_blocks import JsonObject, array, bare, obj, prop, ref, response_headers
from shared.http.openapi_parameters import hunting_parameters
from shared.http.openapi_schemas import EVENT_TIME_PATTERN, TEXT_PATTERN
from shared.validation.hunting import HUNTING_FIELDS, ISO_DURATION, TIMESPAN_EXAMPLES, HuntingShape

#: The operationIds (the blueprints' function names): Defender's two hunting APIs by their own names, and Graph's.
RUN_ADVANCED_QUERY: Final = "RunAdvancedQuery"
RUN_ADVANCED_HUNTING_QUERY: Final = "RunAdvancedHuntingQuery"
RUN_HUNTING_QUERY: Final = OPERATION_NAMES[Api.HUNTING]
RUN_TENANT_ADVANCED_QUERY: Final = "RunTenantAdvancedQuery"
RUN_TENANT_ADVANCED_HUNTING_QUERY: Final = "RunTenantAdvancedHuntingQuery"
RUN_TENANT_HUNTING_QUERY: Final = "RunTenantHuntingQuery"

#: The document's paths (below its basePath /api), the gateway's routes.
ADVANCED_QUERY_PATH: Final = MDE_HUNTING_PATH.removeprefix("/api")
ADVANCED_HUNTING_PATH: Final = XDR_HUNTING_PATH.removeprefix("/api")
HUNTING_QUERY_PATH: Final = GATEWAY_GRAPH_HUNTING_PATH.removeprefix("/api")

#: Each home operation: its path, the shape it answers in, operationId, tenant twin's operationId, visibility.
HUNTING_OPERATIONS: Final[tuple[tuple[str, HuntingShape, str, str, str], ...]] = (
    (ADVANCED_QUERY_PATH, HuntingShape.DEFENDER, RUN_ADVANCED_QUERY, RUN_TENANT_ADVANCED_QUERY, "advanced"),
    (ADVANCED_HUNTING_PATH, HuntingShape.DEFENDER, RUN_ADVANCED_HUNTING_QUERY, RUN_TENANT_ADVANCED_HUNTING_QUERY,
     "internal"),
    (HUNTING_QUERY_PATH, HuntingShape.GRAPH, RUN_HUNTING_QUERY, RUN_TENANT_HUNTING_QUERY, "important"),
)

#: A UTC date-time as the validator reads it, with only the days the calendar has (the create's eventTime pattern
#: with Z alone, unanchored).
_DATE_TIME = EVENT_TIME_PATTERN.removeprefix("^").removesuffix("$")
#: Graph's Timespan as the validator takes it: a duration, or an interval of date-times and a duration.
TIMESPAN_PATTERN: Final = (f"^(?:{ISO_DURATION}|{_DATE_TIME}/(?:{_DATE_TIME}|{ISO_DURATION})|"
                           f"{ISO_DURATION}/{_DATE_TIME})$")
QUERY_EXAMPLE: Final = ("DeviceProcessEvents | where Timestamp > ago(7d) | project Timestamp, DeviceId, ReportId"
                        " | take 5")

_LIMITS = (f"Each query is one Microsoft Graph runHuntingQuery call within the tenant's shared hunting budget "
           f"(RATE_LIMIT_HUNTING, by default {API_FACTS[Api.HUNTING].limits.replace(',', ' and ')} calls/seconds); "
           f"Graph stops a query after {HUNTING_QUERY_TIMEOUT_SECONDS // 60} minutes and returns at most "
           f"{HUNTING_MAX_ROWS:,} rows of the last 30 days.")


# --- schemas --------------------------------------------------------------------------------------------------------

def _query() -> JsonObject:
    query = prop("Query", f"The KQL query: at most {HUNTING_MAX_QUERY_CHARACTERS} characters and "
                 f"{HUNTING_MAX_QUERY_BYTES} bytes as UTF-8 JSON (about {HUNTING_MAX_QUERY_BYTES // 4} characters of "
                 "4-byte text such as emoji: a queued query must fit a queue message), not only white space, "
                 "without control characters (tab, CR and LF are fine) or unpaired surrogates.", minLength=1,
                 maxLength=HUNTING_MAX_QUERY_CHARACTERS, pattern=TEXT_PATTERN, example=QUERY_EXAMPLE)
    query["x-ms-visibility"] = "important"
    return query


def _requests() -> JsonObject:
    timespan = prop("Timespan", "The time range to query (Graph's Timespan): an ISO 8601 duration (P7D, PT12H, "
                    "P1DT6H, P2W) or interval (<start>/<end>, <start>/<duration>, <duration>/<end>; start and end as "
                    "UTC date-times such as 2026-12-01T00:00:00Z). Absent: Graph's default.", pattern=TIMESPAN_PATTERN,
                    example=TIMESPAN_EXAMPLES[0])
    timespan["x-ms-visibility"] = "advanced"
    fields = {"Query": _query(), "Timespan": timespan}
    for shape in HuntingShape:  # a field added to the validator must be documented here first
        if set(HUNTING_FIELDS[shape]) - set(fields):
            raise ValueError(f"hunting fields not documented: {sorted(set(HUNTING_FIELDS[shape]) - set(fields))}")
    return {
        "HuntingRequest": bare(obj("Hunting Query", "Defender's hunting body: exactly Query (names matched in any "
                                   "case, as Defender reads them; two spellings of one name are refused).",
                                   {name: fields[name] for name in HUNTING_FIELDS[HuntingShape.DEFENDER]},
                                   required=["Query"], additionalProperties=False)),
        "GraphHuntingRequest": bare(obj("Hunting Query", "Graph's runHuntingQuery body: Query and an optional "
                                        "Timespan, nothing else (names matched in any case, as Graph reads them, "
                                        "and sent as Query and Timespan; two spellings of one name are refused).",
                                        {name: fields[name] for name in HUNTING_FIELDS[HuntingShape.GRAPH]},
                                        required=["Query"], additionalProperties=False)),
    }


def _row() -> JsonObject:
    return {"type": "object", "description": "One row: each projected column's name and value (a Timestamp as ISO "
                                             "8601 UTC with 7 fraction digits, a ReportId as a long, a DeviceId as "
                                             "40 hexadecimal characters).", "additionalProperties": True}


def _answers() -> JsonObject:
    defender_column = bare(obj("Column", "A column of the results.", {
        "Name": prop("Name", "The column's name, e.g. Timestamp."),
        "Type": prop("Type", "The column's type, e.g. DateTime, String, Int64."),
    }, required=["Name", "Type"]))
    graph_column = bare(obj("Column", "A column of the results.", {
        "name": prop("Name", "The column's name, e.g. Timestamp."),
        "type": prop("Type", "The column's type, e.g. DateTime, String, Int64."),
    }, required=["name", "type"]))
    statistics = bare(obj("Dataset Statistics", "The size of the results.", {
        "table_row_count": prop("Table Row Count", "Rows in Results.", "int64", minimum=0),
        "table_size": prop("Table Size", "Bytes of Results as JSON.", "int64", minimum=0),
    }, required=["table_row_count", "table_size"]))
    return {
        "HuntingResult": bare(obj("Hunting Result", "Defender's hunting answer, made from Graph's (Graph reports no "
                                  "resource usage, so Stats has no resource_usage).", {
            "Stats": obj("Stats", "What the gateway can fill honestly: how long the Graph call took (measured by the "
                         "gateway) and the size of the results.", {
                "ExecutionTime": prop("Execution Time", "Seconds the Graph call took, measured by the gateway.",
                                      "number", minimum=0),
                "dataset_statistics": array("Dataset Statistics", "The results' rows and bytes.", statistics),
            }, required=["ExecutionTime", "dataset_statistics"]),
            "Schema": array("Schema", "The columns of the results.", defender_column),
            "Results": array("Results", "The rows, as Graph returned them.", _row()),
        }, required=["Stats", "Schema", "Results"])),
        "GraphHuntingResult": bare(obj("Hunting Result", "Graph's runHuntingQuery answer, unchanged.", {
            "@odata.context": prop("OData Context", "OData context of Graph's answer."),
            "schema": array("Schema", "The columns of the results.", graph_column),
            "results": array("Results", "The rows.", _row()),
        }, required=["schema", "results"])),
    }


def hunting_definitions() -> JsonObject:
    return {**_requests(), **_answers()}


# --- operations -----------------------------------------------------------------------------------------------------

#: What hunting's own statuses mean (the others: as for the Defender operations).
HUNTING_ERRORS: Final[Mapping[int, str]] = {
    400: "Invalid input, named field by field in errors (nothing was spent), or Graph could not run the query "
         "(hunting-query-rejected: Graph's own message in detail and upstreamError).",
    429: "The tenant's shared hunting budget is spent (rate-limited), Graph throttled the calls (upstream-throttled), "
         f"or the tenant's hunting CPU quota is exhausted until the next {HUNTING_CPU_CYCLE_SECONDS // 60}-minute "
         "cycle (hunting-cpu-exhausted; every instance holds its queries): retry after Retry-After seconds.",
    504: f"The query ran longer than Graph allows ({HUNTING_QUERY_TIMEOUT_SECONDS // 60} minutes) or the gateway waits "
         "(hunting-query-timeout); never retried, as each run costs the tenant's CPU.",
}
HUNTING_STATUSES: Final = (400, 413, 415, 422, 429, 500, 502, 503, 504)

Responses = Callable[[JsonObject, Iterable[int], Mapping[int, str]], JsonObject]


def hunting_operations(responses: Responses, common: JsonObject) -> dict[str, JsonObject]:
    """The three home operations by path; `responses(success, statuses, described)` builds their answers, and
    `common` is what every keyed, long-running operation of the document has (`produces`, the long-running marks)."""
    found: dict[str, JsonObject] = {}
    for path, shape, operation_id, _, visibility in HUNTING_OPERATIONS:
        defender = shape is HuntingShape.DEFENDER
        product = {ADVANCED_QUERY_PATH: "Defender for Endpoint", ADVANCED_HUNTING_PATH: "Defender XDR"}.get(path)
        summary = "Run an advanced hunting query" + (f" ({product})" if product else "")
        description = (f"Runs a KQL advanced-hunting query as {product}'s hunting API does, with its body and its "
                       "answer (Stats, Schema, Results), served by Microsoft Graph's runHuntingQuery: a caller of "
                       "that API changes only its base URL. " if defender else
                       "Runs a KQL advanced-hunting query with Microsoft Graph's runHuntingQuery body (Query, optional "
                       "Timespan) and answer (schema, results). ") + _LIMITS
        success = {"description": "The results" + (", in Defender's shape." if defender else ", in Graph's shape."),
                   "schema": ref("HuntingResult" if defender else "GraphHuntingResult"),
                   "headers": response_headers(CORRELATION_HEADER, "Cache-Control", "RateLimit-Policy", "RateLimit")}
        found[path] = {"post": {
            "operationId": operation_id, "summary": summary, "description": description,
            "x-ms-visibility": visibility, "consumes": ["application/json"],
            "parameters": hunting_parameters("HuntingRequest" if defender else "GraphHuntingRequest"),
            "responses": responses(success, HUNTING_STATUSES, HUNTING_ERRORS), **common}}
    return found


#: The customer-tenant twins' operationIds, by the home operation's.
TENANT_TWINS: Final[Mapping[str, str]] = {home: tenant for _, _, home, tenant, _ in HUNTING_OPERATIONS}
