"""Advanced hunting's answers: Defender's shape made from Graph's, and the problems only hunting has.

Graph's runHuntingQuery answers `{"@odata.context", "schema": [{"name", "type"}], "results": [...]}`; a caller of
Defender's hunting paths expects `{"Stats", "Schema": [{"Name", "Type"}], "Results": [...]}`. `Results` are
Graph's rows unchanged; `Stats` holds what the gateway can fill honestly: how long the Graph call took (measured by
the gateway) and the rows and bytes of the results. Defender's `resource_usage` is absent: Graph reports none.

Pure functions: no settings, no HTTP library.
"""

from __future__ import annotations

import json
import math
import time
from types import MappingProxyType
from typing import Any

from shared.answers.answer import Answer
from shared.answers.problems import Problem
from shared.defender.facts import (
    API_FACTS,
    GRAPH_APP_ID,
    HUNTING_CPU_CYCLE_SECONDS,
    HUNTING_QUERY_TIMEOUT_SECONDS,
    Api,
    Service,
)
from shared.defender.gateway import cpu_block_end
from shared.defender.outcomes import (
    DefenderError,
    Outcome,
    Rejected,
    Throttled,
    ThrottleKind,
    Unauthorized,
    Unavailable,
    hunting_timed_out,
)
from shared.defender.settings import DefenderSettings
from shared.validation.hunting import HuntingShape

#: Digits kept of Stats.ExecutionTime (seconds): a tenth of a millisecond, as Defender writes it.
_EXECUTION_TIME_DIGITS = 4


def _column(entry: Any) -> dict[str, Any]:
    found = entry if isinstance(entry, dict) else {}
    return {"Name": found.get("name"), "Type": found.get("type")}


def defender_shape(graph_body: bytes, seconds: float) -> bytes:
    """Defender's hunting answer from Graph's (`graph_body`, a JSON object with lists `schema` and `results`, as the
    outcome classification admits it): `Schema` renamed, `Results` unchanged, `Stats` from what the gateway knows
    (`seconds`: how long the Graph call took)."""
    document = json.loads(graph_body)
    results = document["results"]
    rendered = json.dumps(results)
    stats = {"ExecutionTime": round(max(0.0, seconds), _EXECUTION_TIME_DIGITS),
             "dataset_statistics": [{"table_row_count": len(results), "table_size": len(rendered.encode())}]}
    head = json.dumps({"Stats": stats, "Schema": [_column(entry) for entry in document["schema"]]})
    return f'{head[:-1]}, "Results": {rendered}}}'.encode()


def in_shape(answer: Answer, shape: HuntingShape, seconds: float) -> Answer:
    """`answer` as the caller asked for it: a 200 from Graph in Defender's shape for `HuntingShape.DEFENDER`; every
    other answer (a problem, Graph's shape) as it is."""
    if shape is HuntingShape.GRAPH or answer.status != 200:
        return answer
    return Answer(answer.status, answer.headers, defender_shape(answer.body, seconds))


# --- problems -------------------------------------------------------------------------------------------------------

def _graph_said(error: DefenderError | None) -> str:
    return f" Graph said: {error.code or '?'}: {error.message or '(no message)'}" if error else ""


def _upstream(error: DefenderError | None) -> MappingProxyType[str, object]:
    return MappingProxyType({"upstreamError": error.as_dict()} if error else {})


def query_rejected_problem(error: DefenderError | None) -> Problem:
    """400: Graph could not run the caller's query (its syntax, a table or column it does not know, a result over
    its size limit); Graph's message is the diagnosis of the caller's own query, so it is passed on."""
    message = (error.message if error and error.message else "(Graph gave no message)").rstrip()
    ended = message if message.endswith((".", "!", "?")) else message + "."
    return Problem(400, "hunting-query-rejected", "Graph rejected the query",
                   f"Microsoft Graph could not run the query: {ended} Nothing is retried; correct the query and "
                   "send it again.", extensions=_upstream(error))


def query_timeout_problem(graph_stopped: bool, defender: DefenderSettings) -> Problem:
    """504: the query ran too long, and which limit ended it: Graph's own (`graph_stopped`: its 504), or the gateway's
    read timeout (HUNTING_TIMEOUT_SECONDS; a synchronous call within its deadline, DefenderSettings.deadline_of).
    Never retried (a query costs the tenant's CPU allocation)."""
    minutes = HUNTING_QUERY_TIMEOUT_SECONDS // 60
    if graph_stopped:
        which = f"Microsoft Graph stopped the query: it ran longer than Graph allows ({minutes} minutes)."
    else:
        which = (f"The gateway stopped waiting for Graph's answer: HUNTING_TIMEOUT_SECONDS is "
                 f"{defender.hunting_timeout:g} s, and a synchronous call ends within "
                 f"{defender.deadline_of(Api.HUNTING):g} s so that its answer leaves before Azure's 230 s HTTP cut "
                 f"(Graph itself allows a query {minutes} minutes); the query may still be running at Graph.")
    return Problem(504, "hunting-query-timeout", "The query ran too long",
                   f"{which} Narrow it (a shorter Timespan or time filter, fewer tables, `take` or `project` early) "
                   "and send it again; the gateway does not retry it, as every run costs the tenant's CPU "
                   "allocation.")


def cpu_exhausted_problem(wait: int, error: DefenderError | None = None) -> Problem:
    """429: the tenant's CPU allocation for advanced hunting is spent; every instance holds hunting queries for this
    tenant for `wait` seconds (until the block Graph named ends), sending nothing to Graph meanwhile."""
    cycle = HUNTING_CPU_CYCLE_SECONDS // 60
    return Problem(429, "hunting-cpu-exhausted", "Hunting CPU quota exhausted",
                   f"The tenant's CPU quota for advanced hunting is exhausted: Graph blocks its queries until the next "
                   f"{cycle}-minute cycle. Every gateway instance holds hunting queries for this tenant for {wait} s "
                   f"(Retry-After) without sending them to Graph; with Prefer: respond-async the query waits in the "
                   f"queue instead.{_graph_said(error)}", extensions=_upstream(error), retry_after=wait)



def hunting_problem(outcome: Outcome, defender: DefenderSettings, tenant: str | None,
                    blocked_for: float | None = None) -> Problem | None:
    """Graph's answers that mean something of their own for a hunting query (None: the common mapping's): its 400 (the
    query), a query that ran too long, its 429s (the CPU's and the calls'), and its 401/403 (Graph's audience and
    ThreatHunting.Read.All, not Defender's). `blocked_for`: how long the shared block a CPU 429 set holds from the
    answer (Sent.blocked_for: its end computed once, where the gateway set it); None: the block's end as of now."""
    if isinstance(outcome, Rejected) and outcome.status == 400:
        return query_rejected_problem(outcome.error)
    if hunting_timed_out(outcome):
        return query_timeout_problem(isinstance(outcome, Unavailable) and outcome.status == 504, defender)
    if isinstance(outcome, Throttled) and outcome.kind is ThrottleKind.CPU:
        if blocked_for is None:  # no block of this answer's (a detail about an earlier answer): as of now
            now = time.time()
            blocked_for = cpu_block_end(now, outcome.until, outcome.retry_after) - now
        return cpu_exhausted_problem(max(1, math.ceil(blocked_for)), outcome.error)
    if isinstance(outcome, Unauthorized):
        role = API_FACTS[Api.HUNTING].roles[0]
        graph = defender.upstream(Service.GRAPH)
        where = (f"In the customer tenant {tenant}, the gateway's multi-tenant app" if tenant is not None else
                 "The gateway's identity")
        return Problem(502, "upstream-unauthorized" if outcome.status == 401 else "upstream-forbidden",
                       "Bad answer from Microsoft Graph",
                       f"Microsoft Graph refused the gateway's token ({outcome.status}). {where} needs the application "
                       f"permission {role} on Microsoft Graph (appId {GRAPH_APP_ID}; scripts/grant-defender-roles.sh, "
                       f"scripts/onboard-customer-tenant.sh), and the token audience must match the host: "
                       f"MDE_CLOUD={defender.cloud.name} asks for {graph.scope} and calls {graph.base_url}; check "
                       f"MDE_CLOUD / {graph.setting}.{_graph_said(outcome.error)}",
                       extensions=_upstream(outcome.error))
    return None
