"""Microsoft Graph's runHuntingQuery as the simulator serves it (`POST /v1.0/security/runHuntingQuery`).

Graph's side of the contract (docs/local-development.md): Graph's error body `{"error": {"code", "message",
"innerError": {"date", "request-id", "client-request-id"}}}`; a token for another audience is 401
InvalidAuthenticationToken, one without ThreatHunting.Read.All 403 Authorization_RequestDenied; the calls limit's 429
names its window ("API calls quota exceeded! maximum allowed 45 per 00:01:00") with Retry-After; an exhausted CPU
allocation is a 429 naming when the tenant's queries run again (the next 15-minute boundary), without Retry-After;
a query it cannot run is 400 BadRequest with KQL's diagnosis; the answer is `{"@odata.context", "schema": [{"name",
"type"}], "results": [...]}` over the events the simulator knows (the same list Create alert by reference finds
events in: an event hunted here is one it accepts), within `Timespan` (default 30 days, Graph's retention).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from localdev.simulator import kql
from localdev.simulator.data import generated_events, normalise_time
from shared.defender.clouds import GLOBAL_GRAPH
from shared.defender.facts import HUNTING_CPU_CYCLE_SECONDS, HUNTING_MAX_ROWS
from shared.identifiers import SHA1_ANY_CASE

ODATA_CONTEXT = "$metadata#microsoft.graph.security.huntingQueryResults"
#: Graph keeps 30 days of advanced hunting data: the window of a query without `Timespan`.
RETENTION_SECONDS = 30 * 86_400
#: What Graph answers a query that ran past its 3 minutes (504 GatewayTimeout).
TIMEOUT_MESSAGE = ("Query execution has exceeded the allowed execution time. Make the query more efficient, or "
                   "narrow its Timespan, and try again.")
CPU_MESSAGE = "Tenant CPU quota for advanced hunting exceeded. Queries are blocked until {until}."
CPU_MESSAGE_WITHOUT_TIME = "Tenant CPU quota for advanced hunting exceeded. Try again later."
#: The largest answer Graph gives (Defender documents 124 MB); a larger one is 400 with this message.
MAX_RESULT_BYTES = 124 * 1000 * 1000
SIZE_MESSAGE = ("Query execution has exceeded the allowed result size. Optimize your query by limiting the number of "
                "results and try again.")
#: The most events one POST /_sim/hunting/events adds.
MAX_GENERATED_EVENTS = HUNTING_MAX_ROWS
#: Graph's columns by the event fields they come from (the rest: ReportId, and the table's own defaults).
_COLUMN_OF_FIELD = {"DeviceName": "computerDnsName", "ActionType": "actionType", "FileName": "fileName",
                    "FolderPath": "folderPath", "SHA1": "sha1", "SHA256": "sha256",
                    "ProcessCommandLine": "processCommandLine",
                    "InitiatingProcessFileName": "initiatingProcessFileName"}
_DEFAULT_ACTION = {"DeviceProcessEvents": "ProcessCreated", "DeviceFileEvents": "FileCreated",
                   "DeviceEvents": "AntivirusDetection"}


@dataclass(frozen=True)
class CpuBlock:
    """A tenant's exhausted CPU allocation: its queries answer 429 until `until` (epoch seconds)."""

    until: float
    #: Whether the 429's message names `until` (Graph's usual message), and a Retry-After to send with it.
    names_time: bool = True
    retry_after: int | None = None


@dataclass
class HuntingState:
    """CPU blocks by tenant (None: the home tenant), the next report id POST /_sim/hunting/events gives, and the
    largest answer (POST /_sim/hunting/size lowers it, so a test can meet Graph's 400 for a result too large)."""

    cpu: dict[str | None, CpuBlock] = field(default_factory=dict)
    next_report_id: int = 100_000
    max_result_bytes: int = MAX_RESULT_BYTES


def graph_error(request: Request, status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
    """Graph's error answer (with its innerError: the request's date and ids)."""
    inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4()),
             "client-request-id": request.headers.get("client-request-id") or str(uuid.uuid4())}
    body = {"error": {"code": code, "message": message, "innerError": inner}}
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


def _window_text(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def calls_exceeded(request: Request, limit: int, seconds: float, retry_after: int) -> Response:
    """The 429 of Graph's calls limit, naming the window that refused."""
    return graph_error(request, 429, "TooManyRequests",
                       f"API calls quota exceeded! maximum allowed {limit} per {_window_text(seconds)}",
                       {"Retry-After": str(retry_after)})


def next_cycle(now: float) -> float:
    """The next 15-minute boundary (UTC) after `now`: when Graph gives an exhausted tenant its CPU again."""
    return (math.floor(now / HUNTING_CPU_CYCLE_SECONDS) + 1) * HUNTING_CPU_CYCLE_SECONDS


def cpu_exceeded(request: Request, block: CpuBlock) -> Response:
    until = datetime.fromtimestamp(block.until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = CPU_MESSAGE.format(until=until) if block.names_time else CPU_MESSAGE_WITHOUT_TIME
    headers = {"Retry-After": str(block.retry_after)} if block.retry_after is not None else {}
    return graph_error(request, 429, "TooManyRequests", message, headers)


def cpu_block_of(state: HuntingState, tenant: str | None, now: float) -> CpuBlock | None:
    """The tenant's CPU block while it lasts (a passed one is forgotten)."""
    block = state.cpu.get(tenant)
    if block is not None and block.until <= now:
        del state.cpu[tenant]
        return None
    return block


def hunting_row(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(table, row) of a known event as advanced hunting shows it; None for one it cannot show (no numeric report
    id or no precise time): Timestamp with 7 fraction digits, ReportId a long, DeviceId the machine id."""
    table = str(event.get("table") or "DeviceEvents")
    report_id, moment = str(event.get("reportId") or ""), normalise_time(str(event.get("eventTime") or ""))
    if table not in kql.TABLES or not report_id.isdigit() or moment is None:
        return None
    row: dict[str, Any] = {"Timestamp": moment, "DeviceId": str(event.get("machineId") or "").lower(),
                           "ReportId": int(report_id), "ActionType": _DEFAULT_ACTION[table]}
    row.update({column: str(event[name]) for column, name in _COLUMN_OF_FIELD.items() if event.get(name)})
    return table, {column: row.get(column, "") for column, _ in kql.TABLES[table]}


def _body_error(request: Request, message: str) -> Response:
    return graph_error(request, 400, "BadRequest", message)


def run_query(request: Request, events: list[dict[str, Any]], *, now: float | None = None,
              graph_base: str = GLOBAL_GRAPH, max_result_bytes: int = MAX_RESULT_BYTES) -> Response:
    """Graph's answer to the request's `{"Query", "Timespan"?}` over `events` (a copy of the tenant's events); a
    400 when the answer would be larger than `max_result_bytes`."""
    try:
        body = json.loads(request.get_data())
    except ValueError:
        return _body_error(request, "Unable to read JSON request payload. Please ensure Content-Type header is set "
                                    "and payload is of valid JSON format.")
    if not isinstance(body, dict):
        return _body_error(request, "Unable to read JSON request payload: the body must be a JSON object.")
    fields = {name.lower(): value for name, value in body.items()}  # OData reads parameter names in any case
    unknown = sorted(set(fields) - {"query", "timespan"})
    if unknown:
        return _body_error(request, f"Property '{unknown[0]}' does not exist on type 'runHuntingQuery' parameters.")
    query_text, timespan = fields.get("query"), fields.get("timespan")
    if not isinstance(query_text, str) or not query_text.strip():
        return _body_error(request, "The 'Query' parameter is required and must be a non-empty string.")
    if timespan is not None and not isinstance(timespan, str):
        return _body_error(request, "Invalid Timespan: it must be an ISO 8601 duration or interval string.")
    now_ticks = kql.ticks_of(datetime.fromtimestamp(time.time() if now is None else now, UTC))
    try:
        start, end = (kql.timespan_window(timespan, now_ticks) if isinstance(timespan, str)
                      else (now_ticks - RETENTION_SECONDS * kql.TICKS_PER_SECOND, now_ticks))
    except ValueError as error:
        return _body_error(request, f"Invalid Timespan: {error}.")
    try:
        query = kql.parse(query_text, now_ticks)
    except kql.KqlError as error:
        return _body_error(request, str(error))
    oldest = now_ticks - RETENTION_SECONDS * kql.TICKS_PER_SECOND
    rows = []
    for event in events:
        shown = hunting_row(event)
        if shown is None or shown[0] != query.table:
            continue
        ticks = kql.parse_datetime(shown[1]["Timestamp"])
        if ticks is not None and max(start, oldest) <= ticks <= end:
            rows.append(shown[1])
    results = kql.run(query, rows)[:HUNTING_MAX_ROWS]
    document = {"@odata.context": f"{graph_base}/v1.0/{ODATA_CONTEXT}",
                "schema": [{"name": name, "type": kind.value} for name, kind in query.schema],
                "results": results}
    encoded = json.dumps(document)
    if len(encoded.encode()) > max_result_bytes:
        return _body_error(request, SIZE_MESSAGE)
    return Response(encoded, status=200,
                    content_type="application/json; odata.metadata=minimal; odata.streaming=true; "
                                 "IEEE754Compatible=false; charset=utf-8")


# -- admin ---------------------------------------------------------------------------------------
def set_cpu(state: HuntingState, tenant: str | None, payload: dict[str, Any], now: float) -> dict[str, Any]:
    """POST /_sim/hunting/cpu: `{"exhaust": true}` blocks the tenant's queries until the next 15-minute boundary
    (`"until": "<ISO UTC>"` another time; `"namesTime": false` a message without it; `"retryAfter": n` a
    Retry-After too); `{"exhaust": false}` ends the block. ValueError for a payload it cannot read."""
    if not isinstance(payload.get("exhaust"), bool):
        raise ValueError("exhaust must be true or false")
    if not payload["exhaust"]:
        state.cpu.pop(tenant, None)
        return {"exhausted": False}
    until = next_cycle(now)
    if payload.get("until") is not None:
        ticks = kql.parse_datetime(str(payload["until"]))
        if ticks is None:
            raise ValueError("until must be an ISO 8601 UTC time")
        until = ticks / kql.TICKS_PER_SECOND
    retry_after = payload.get("retryAfter")
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        raise ValueError("retryAfter must be a whole number of seconds")
    state.cpu[tenant] = CpuBlock(until, bool(payload.get("namesTime", True)), retry_after)
    return {"exhausted": True, "until": datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def add_events(state: HuntingState, events: list[dict[str, Any]], payload: dict[str, Any],
               now: float) -> list[dict[str, Any]]:
    """POST /_sim/hunting/events: `{"sha1", "count"?: 1, "table"?: "DeviceFileEvents", "fileName"?, "devices"?,
    "timestamp"?: now, "spacingSeconds"?: 1, "actionType"?}` adds `count` generated events about the file to
    `events` (data.generated_events); returns them as hunting rows. ValueError for a payload it cannot read."""
    sha1 = payload.get("sha1")
    if not isinstance(sha1, str) or not SHA1_ANY_CASE.fullmatch(sha1):
        raise ValueError("sha1 must be 40 hex digits")
    count, spacing, devices = payload.get("count", 1), payload.get("spacingSeconds", 1), payload.get("devices")
    if not isinstance(count, int) or not 1 <= count <= MAX_GENERATED_EVENTS:
        raise ValueError(f"count must be a whole number from 1 to {MAX_GENERATED_EVENTS}")
    if not isinstance(spacing, int) or spacing < 1:
        raise ValueError("spacingSeconds must be a whole number of seconds, at least 1")
    if devices is not None and (not isinstance(devices, int) or devices < 1):
        raise ValueError("devices must be a whole number, at least 1")
    table = payload.get("table", "DeviceFileEvents")
    if table not in kql.TABLES:
        raise ValueError(f"table must be one of {', '.join(kql.TABLES)}")
    start = datetime.fromtimestamp(now, UTC)
    if payload.get("timestamp") is not None:
        ticks = kql.parse_datetime(str(payload["timestamp"]))
        if ticks is None:
            raise ValueError("timestamp must be an ISO 8601 UTC time")
        start = datetime.fromtimestamp(ticks // kql.TICKS_PER_SECOND, UTC)
    added = generated_events(sha1, count, first_report_id=state.next_report_id, start=start, spacing_seconds=spacing,
                             devices=devices, table=str(table), file_name=str(payload.get("fileName") or "sample.exe"),
                             action_type=payload.get("actionType"))
    state.next_report_id += count
    events.extend(added)
    return [row for event in added if (shown := hunting_row(event)) for row in (shown[1],)]
