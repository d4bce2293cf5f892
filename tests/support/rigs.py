"""The app in process: its real edge, gateway, limiters and worker (runtime.compose) over a scripted Defender and
the in-memory stores, requests as the entry points get them, and the app's own function metadata.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import azure.functions as func
import requests
from azure.core.credentials import TokenCredential
from azure.data.tables import TableClient

from localdev.signing import SigningKey, caller_claims
from localdev.tokens import LOCAL_TENANT_ID
from shared import runtime
from shared.asynchronous.operations_memory import MemoryOperationStore
from shared.asynchronous.queues_memory import MemoryQueues
from shared.catalogue import CATALOGUE_BY_NAME
from shared.defender.client import DefenderClient, DefenderRequest
from shared.defender.facts import Api
from shared.defender.gateway import Gateway
from shared.defender.tenants import MultiTenant, Tenant, TenantCredentials
from shared.history.memory_store import MemoryHistoryStore
from shared.http.edge import HttpEdge
from shared.lookups.answer_cache import AnswerCache
from shared.lookups.hash_map import FileHashMap
from shared.lookups.hunting import HUNTING_KIND
from shared.ratelimit.factory import RateLimiters, build_rate_limiters
from shared.ratelimit.limiter import RateLimiter
from shared.runtime import Runtime
from shared.settings import POLICY_SETTINGS, Settings, load_settings
from shared.telemetry.recorder import Telemetry
from shared.validation import parse_json_object, validate_create_alert, validate_file_hash
from tests.support.scripted import (
    DEFENDER_URL,
    FakeClock,
    FakeMonotonic,
    FakeSleep,
    FakeTable,
    RecordingStore,
    ScriptedTransport,
    StaticCredential,
    Step,
)

#: App settings of the in-process layer: the commercial host, an unused storage connection string, and new
#: rate-limit states with their whole budget (the share has tests of its own).
UNIT_ENV: Mapping[str, str] = MappingProxyType({
    "MDE_BASE_URL": DEFENDER_URL,
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "RATE_LIMIT_NEW_STATE_SHARE": "1",
    "GATEWAY_TOKEN_ISSUER": f"https://login.microsoftonline.com/{LOCAL_TENANT_ID}/v2.0",
    "GATEWAY_TOKEN_AUDIENCES": "api://gateway",
})
#: The Entra issuer's signing key in the unit layer (the edge is given it instead of the issuer's JWKS endpoint).
UNIT_SIGNING_KEY = SigningKey.generate()


def bearer(object_id: str, app_id: str, roles: tuple[str, ...], *, key: SigningKey = UNIT_SIGNING_KEY,
           **claims: Any) -> dict[str, str]:
    """`Authorization: Bearer` with an app-only token of the unit layer's issuer for its audience (claims override)."""
    token_claims = {**caller_claims(UNIT_ENV["GATEWAY_TOKEN_ISSUER"], "api://gateway", object_id, app_id=app_id,
                                    roles=roles), **claims}
    return {"Authorization": "Bearer " + key.sign(token_claims)}


@dataclass
class EdgeRig:
    """Everything make_edge built, for a test to drive and inspect."""

    edge: HttpEdge
    gateway: Gateway
    client: DefenderClient
    session: requests.Session
    transport: ScriptedTransport
    store: RecordingStore
    limiters: RateLimiters
    settings: Settings
    credential: StaticCredential
    clock: FakeClock
    monotonic: FakeMonotonic
    sleep: FakeSleep
    #: What runtime.compose built over the scripted Defender and the in-memory stores (the worker among them).
    runtime: Runtime

    def limiter(self, api: Api) -> RateLimiter:
        return self.limiters.for_api(api)

    def get_alerts(self, file_hash: str, *, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
        """GET /api/files/{fileHash}/alerts through the edge, parsed as the entry point parses it."""
        return respond(self.edge, get_alerts_request(file_hash, headers=headers), Api.FILE_ALERTS)

    def create(self, body: Any, *, content_type: str | None = "application/json",
               headers: Mapping[str, str] | None = None) -> func.HttpResponse:
        """POST /api/alerts/CreateAlertByReference through the edge (`body`: bytes, str or a JSON document)."""
        return respond(self.edge, create_alert_request(body, content_type=content_type, headers=headers),
                       Api.CREATE_ALERT)


def make_edge(script: Iterable[Step] = (), *, settings_env: Mapping[str, str] | None = None,
              limits: Mapping[Api, str] | None = None, clock: FakeClock | None = None,
              store: RecordingStore | None = None, credential: StaticCredential | None = None,
              telemetry: Telemetry | None = None, cache_table: FakeTable | None = None,
              hash_table: FakeTable | None = None, hunting_table: FakeTable | None = None,
              tenant_credentials: Mapping[str, StaticCredential] | None = None,
              history: MemoryHistoryStore | None = None) -> EdgeRig:
    """The gateway's real edge, gateway, client and limiters over a scripted Defender, built from settings.

    `limits` sets RATE_LIMIT_* per API; `settings_env` overrides any app setting (MDE_TENANTS among them: then
    `tenant_credentials` hands out each customer tenant's token, by tenant id; HUNTING_SHARE_SECONDS above 0: the
    shared hunting answers over `hunting_table`, a new one when not given). Pass another rig's `store`
    (and `clock`) to get a second instance sharing its rate-limit state. The limiters' clock and the
    gateway's monotonic clock both move only with FakeSleep (the gateway's waits) and scripted `takes`.
    """
    env = dict(UNIT_ENV)
    env.update({POLICY_SETTINGS[api]: text for api, text in (limits or {}).items()})
    env.update(settings_env or {})
    settings = load_settings(env)
    clock = clock or FakeClock()
    monotonic = FakeMonotonic()
    sleep = FakeSleep(clock, monotonic)
    transport = ScriptedTransport(script, time_passes=sleep.pass_time)
    session = DefenderClient._new_session()  # the real session's set-up, with the transport mounted on it
    session.mount("https://", transport)
    session.mount("http://", transport)
    credential = credential or StaticCredential()
    multi = settings.defender.multi_tenant
    tenants = StaticTenantCredentials(multi, credential, tenant_credentials or {}) if multi is not None else None
    client = DefenderClient(settings.defender, credential, session, tenants=tenants)
    store = store if store is not None else RecordingStore()
    rate = settings.rate_limits
    limiters = build_rate_limiters(store, rate.policies.values(), margin_seconds=rate.margin_seconds,
                                   max_conflict_retries=rate.max_conflict_retries,
                                   new_state_share=rate.new_state_share, clock=clock, sync_clock=False)
    built = runtime.compose(settings, client, limiters, MemoryOperationStore(clock=clock),
                            MemoryQueues(settings.asynchronous, clock=clock), clock=clock, sleep=sleep,
                            monotonic=monotonic, telemetry=telemetry,
                            cache=AnswerCache(cast(TableClient, cache_table), 60, clock=clock) if cache_table else None,
                            hash_map=FileHashMap(cast(TableClient, hash_table)) if hash_table else None,
                            hunting_cache=_hunting_cache(settings, hunting_table, clock),
                            keys=UNIT_SIGNING_KEY, history=history if history is not None else MemoryHistoryStore())
    return EdgeRig(built.edge, built.gateway, client, session, transport, store, limiters, settings,
                   credential, clock, monotonic, sleep, built)


def _hunting_cache(settings: Settings, table: FakeTable | None, clock: FakeClock) -> AnswerCache | None:
    """The shared hunting answers as runtime.hunting_cache builds them, over a dict-backed table."""
    seconds = settings.answer_cache.hunting_share_seconds
    if not seconds:
        return None
    return AnswerCache(cast(TableClient, table if table is not None else FakeTable()), seconds, clock=clock,
                       kind=HUNTING_KIND)


class StaticTenantCredentials(TenantCredentials):
    """The customer tenants' credentials: a StaticCredential per tenant id in place of the federated exchange."""

    def __init__(self, multi_tenant: MultiTenant, identity: StaticCredential,
                 by_tenant: Mapping[str, StaticCredential]) -> None:
        super().__init__(multi_tenant, identity)
        self.by_tenant = by_tenant

    def credential(self, tenant: Tenant) -> TokenCredential:
        return self.by_tenant[tenant.id]


GATEWAY_URL = "https://mdegw.example.net"


def get_alerts_request(file_hash: str, *, headers: Mapping[str, str] | None = None) -> func.HttpRequest:
    """The func.HttpRequest the Functions host hands the file-alerts function (route files/{fileHash}/alerts)."""
    return func.HttpRequest("GET", f"{GATEWAY_URL}/api/files/{file_hash}/alerts", headers=dict(headers or {}),
                            route_params={"fileHash": file_hash}, body=b"")


def create_alert_request(body: Any, *, content_type: str | None = "application/json",
                         headers: Mapping[str, str] | None = None) -> func.HttpRequest:
    """The func.HttpRequest the Functions host hands the create-alert function."""
    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    all_headers = {**({"Content-Type": content_type} if content_type is not None else {}), **(headers or {})}
    return func.HttpRequest("POST", f"{GATEWAY_URL}/api/alerts/CreateAlertByReference", headers=all_headers,
                            body=data)


def respond(edge: HttpEdge, req: func.HttpRequest, api: Api) -> func.HttpResponse:
    """What the entry points answer (file_alerts_fn / create_alert_fn), with their parse steps:
    `edge.lookup_file_alerts` with validate_file_hash of the route parameter `fileHash`, or `edge.respond` with
    parse_json_object + validate_create_alert. tests/unit/test_edge.py checks the real entry points agree."""
    if api is Api.FILE_ALERTS:
        return edge.lookup_file_alerts(req, lambda: validate_file_hash(req.route_params.get("fileHash", "")))

    def parse_create_alert() -> DefenderRequest:
        return DefenderRequest.create_alert(validate_create_alert(
            parse_json_object(req.get_body(), req.headers.get("Content-Type"))))

    return edge.respond(req, api, parse_create_alert)


def response_problem(response: func.HttpResponse, status: int, *fields: str) -> dict[str, Any]:
    """The problem+json of an edge answer, checked for its shape; `fields` are the exact error fields if given."""
    assert response.status_code == status, response.get_body()
    assert response.mimetype == "application/problem+json"
    problem: dict[str, Any] = json.loads(response.get_body())
    assert {"type", "title", "status", "detail", "correlationId"} <= problem.keys(), problem
    assert problem["type"].startswith("urn:mde-alert-gateway:problem:")
    assert problem["status"] == status
    assert problem["correlationId"] == response.headers["X-Correlation-ID"]
    if fields:
        assert sorted(e["field"] for e in problem["errors"]) == sorted(fields), problem
    return problem


_FUNCTION_METADATA_SCRIPT = """
import json
import function_app
print(json.dumps({f.get_function_name(): json.loads(f.get_function_json()) for f in function_app.app.get_functions()}))
"""


def function_metadata(**settings: str) -> dict[str, dict[str, Any]]:
    """Each function's metadata (function.json: its bindings) as the host indexes function_app, imported in a child
    process with settings that make no request (Azurite's well-known account on loopback, a closed Defender port)
    and nothing else of this process's environment that the gateway reads."""
    root = Path(__file__).resolve().parents[2]
    env = {name: value for name, value in os.environ.items() if name not in CATALOGUE_BY_NAME
           and not name.startswith(("MDE_", "RATE_LIMIT_", "AzureWebJobsStorage", "IDENTITY_", "AZURE_", "GATEWAY_"))}
    env.update({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MDE_BASE_URL": "http://127.0.0.1:1",
                "PYTHONPATH": str(root), **settings})
    done = subprocess.run([sys.executable, "-c", _FUNCTION_METADATA_SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"importing function_app failed:\n{done.stderr}"
    metadata: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return metadata
