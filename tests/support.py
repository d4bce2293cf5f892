"""Helpers the tests share: admin clients of the local servers, an HTTP client of the gateway, request
bodies and assertions, a hand-driven clock. The one module tests import helpers from (besides fixtures).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.client import RemoteDisconnected
from pathlib import Path
from types import MappingProxyType
from typing import Any

import azure.functions as func
import requests
from azure.core.credentials import AccessToken as AzureAccessToken
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from localdev.simulator.data import SEED_EVENT
from localdev.stack import HostProcess
from shared import runtime
from shared.asynchronous.operations_memory import MemoryOperationStore
from shared.asynchronous.queues_memory import MemoryQueues
from shared.catalogue import CATALOGUE_BY_NAME
from shared.defender.client import DefenderClient, DefenderRequest
from shared.defender.facts import Api
from shared.defender.gateway import Gateway
from shared.http.edge import HttpEdge
from shared.ratelimit import Decision, RatePolicy, Reason, parse_windows
from shared.ratelimit.factory import RateLimiters, build_rate_limiters
from shared.ratelimit.limiter import RateLimiter
from shared.ratelimit.memory_store import MemoryStore
from shared.ratelimit.sliding_log import LogState
from shared.ratelimit.store import Snapshot, Tally
from shared.runtime import Runtime
from shared.settings import POLICY_SETTINGS, Settings, load_settings
from shared.validation import parse_json_object, validate_create_alert, validate_file_hash

FUNCTION_KEY = "test-function-key"
# Test limits high enough that only the rate-limit tests meet them.
GENEROUS_LIMITS: dict[str, list[list[float]]] = {"file_alerts": [[100000, 60]], "create_alert": [[100000, 60]]}


class SimulatorAdmin:
    """The simulator's /_sim/ admin API, over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url

    def reset(self, limits: dict[str, list[list[float]]] | None = GENEROUS_LIMITS) -> None:
        requests.post(f"{self.url}/_sim/reset", timeout=5).raise_for_status()
        if limits:
            requests.post(f"{self.url}/_sim/limits", json=limits, timeout=5).raise_for_status()

    def fault(self, kind: str, **options: Any) -> None:
        requests.post(f"{self.url}/_sim/faults", json={"kind": kind, **options}, timeout=5).raise_for_status()

    def calls(self, api: str | None = None) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = requests.get(f"{self.url}/_sim/calls", timeout=5).json()["calls"]
        return [c for c in calls if api is None or c["api"] == api]

    def wait_for_calls(self, count: int, api: str | None = None, *, timeout: float = 15) -> list[dict[str, Any]]:
        """The call log once it holds `count` calls: a delayed answer is logged when it is done, and must not
        land in the next test's log."""
        deadline = time.monotonic() + timeout
        while len(calls := self.calls(api)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return calls

    def add_alert(self, **fields: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_sim/alerts", json=fields, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def add_event(self, **fields: Any) -> None:
        requests.post(f"{self.url}/_sim/events", json=fields, timeout=5).raise_for_status()

    def add_file(self, **fields: Any) -> dict[str, Any]:
        """POST /_sim/files: a file entity (sha1 required) that Get file information finds by SHA-1 or SHA-256."""
        response = requests.post(f"{self.url}/_sim/files", json=fields, timeout=5)
        response.raise_for_status()
        return dict(response.json())


class IdentityAdmin:
    def __init__(self, url: str) -> None:
        self.url = url

    def configure(self, **config: Any) -> None:
        requests.post(f"{self.url}/_identity/config", json=config, timeout=5).raise_for_status()

    def issued(self) -> list[dict[str, str]]:
        return list(requests.get(f"{self.url}/_identity/stats", timeout=5).json()["issued"])


class GatewayClient:
    """An HTTP client for a running local host."""

    def __init__(self, host: HostProcess, key: str = FUNCTION_KEY) -> None:
        self.host = host
        self.url = host.url
        self.key = key

    def get_alerts(self, sha1: str, **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": self.key, **kwargs.pop("headers", {})}
        return requests.get(f"{self.url}/api/files/{sha1}/alerts", headers=headers, timeout=60, **kwargs)

    def create(self, body: Any, *, content_type: str = "application/json", **kwargs: Any) -> requests.Response:
        headers = {"x-functions-key": self.key, "Content-Type": content_type, **kwargs.pop("headers", {})}
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return requests.post(f"{self.url}/api/alerts/CreateAlertByReference", data=data, headers=headers,
                             timeout=60, **kwargs)

    def get(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        """GET an absolute URL of this host (a Location) or a path under it, with the function key."""
        url = path_or_url if path_or_url.startswith("http") else f"{self.url}{path_or_url}"
        headers = {"x-functions-key": self.key, **kwargs.pop("headers", {})}
        return requests.get(url, headers=headers, timeout=60, **kwargs)

    def wait_for_operation(self, location: str, *, timeout: float = 60, queued: bool = False) -> requests.Response:
        """Poll an operation until it is no longer 202 (the answer), or fail after `timeout` seconds.

        `queued`: the operation comes from a queue message, so it is 404 until the worker has taken it.
        """
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(location)
            if response.status_code != 202 and not (queued and response.status_code == 404):
                return response
            if time.monotonic() > deadline:
                raise AssertionError(f"operation {location} still pending after {timeout} s: {response.text}")
            time.sleep(0.2)


VALID = {"machineId": SEED_EVENT["machineId"], "severity": "Low", "title": "validation test",
         "description": "example alert", "recommendedAction": "nothing", "eventTime": SEED_EVENT["eventTime"],
         "reportId": SEED_EVENT["reportId"], "category": "Exploit"}


def assert_problem(response: requests.Response, status: int, *fields: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status
    assert response.headers["X-Correlation-ID"] == problem["correlationId"]
    if fields:
        assert sorted(e["field"] for e in problem["errors"]) == sorted(fields)
    return problem


def assert_no_upstream_call(sim: SimulatorAdmin) -> None:
    assert sim.calls() == []


class FakeClock:
    """A clock the test moves by hand (epoch seconds)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def policy(text: str, api: str = "file_alerts") -> RatePolicy:
    return RatePolicy(api, parse_windows(text))


# --- The fast in-process layer (tests/unit) -----------------------------------------------------------------
# The real DefenderClient, Gateway, RateLimiter and HttpEdge, with only what needs a network or a tenant
# replaced: Defender's answers come from a scripted requests transport adapter, the managed identity from a
# static credential, the table from MemoryStore, and waiting from a hand-driven clock. No socket is opened.

#: The commercial cloud's API host: the real client judges and checks it; the scripted transport never connects.
DEFENDER_HOST = "api.securitycenter.microsoft.com"
DEFENDER_URL = f"https://{DEFENDER_HOST}"
TENANT_ID = "8f2b1c9e-6d3a-4e5f-9a1b-2c3d4e5f6a7b"
APP_ID = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
#: What the gateway's rate-limit state is keyed by for StaticCredential's token.
PRINCIPAL = f"{TENANT_ID}|{APP_ID}"


@dataclass(frozen=True)
class Reply:
    """One scripted answer from Defender: status, headers and a JSON document (or raw `body` bytes).

    `takes` is how long (seconds) the answer takes to arrive, on the transport's fake clock.
    """

    status: int = 200
    document: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    takes: float = 0.0

    def content(self) -> bytes:
        if self.body is not None:
            return self.body
        return b"" if self.document is None else json.dumps(self.document).encode()


@dataclass(frozen=True)
class Fail:
    """One scripted transport failure: `error` is raised from the adapter, as requests' HTTPAdapter raises it.

    `takes` is how long the failure takes to happen: seconds, or "connect" / "read" for the timeout
    the client gave for that phase (a timeout takes exactly as long as it allows).
    """

    error: requests.RequestException
    takes: float | str = 0.0


Step = Reply | Fail | requests.RequestException


def _pool() -> HTTPSConnectionPool:
    return HTTPSConnectionPool(DEFENDER_HOST, 443)  # never used to connect: only named by the errors


def connect_timeout() -> Fail:
    """No connection within the connect timeout: surely not sent (requests.ConnectTimeout)."""
    reason = ConnectTimeoutError(HTTPSConnection(DEFENDER_HOST, 443),
                                 f"Connection to {DEFENDER_HOST} timed out. (connect timeout=5)")
    return Fail(requests.ConnectTimeout(MaxRetryError(_pool(), "/", reason)), takes="connect")


def connection_refused() -> Fail:
    """No connection could be made (refused, unresolvable): requests.ConnectionError over NewConnectionError."""
    connection = HTTPSConnection(DEFENDER_HOST, 443)
    reason = NewConnectionError(connection, f"{connection}: Failed to establish a new connection: "
                                            "[Errno 111] Connection refused")
    return Fail(requests.ConnectionError(MaxRetryError(_pool(), "/", reason)))


def read_timeout() -> Fail:
    """Sent, but no answer within the read timeout (requests.ReadTimeout): it may have reached Defender."""
    return Fail(requests.ReadTimeout(ReadTimeoutError(_pool(), None, "Read timed out. (read timeout=30)")),
                takes="read")


def dropped_connection() -> Fail:
    """The connection closed after the request went out (requests.ConnectionError over ProtocolError)."""
    error = ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))
    return Fail(requests.ConnectionError(error))


def alerts_reply(*alerts: Mapping[str, Any]) -> Reply:
    """GET files/{sha1}/alerts as Defender answers it: the OData envelope."""
    return Reply(200, {"@odata.context": f"{DEFENDER_URL}/api/$metadata#Alerts", "value": list(alerts)})


def alert_reply(alert_id: str = "da637294883018012288_1364969609", **fields: Any) -> Reply:
    """CreateAlertByReference's success: the alert."""
    return Reply(200, {"id": alert_id, "title": "unit test", "severity": "Low", **fields})


def error_reply(status: int, code: str = "BadRequest", message: str = "Something is wrong", *,
                target: str | None = "43ee0aa3-0b58-4f87-bd10-1f3a5c2e6b7d", retry_after: str | None = None) -> Reply:
    """An error answer in Defender's shape, `{"error": {code, message, target}}`, optionally with Retry-After."""
    error = {"code": code, "message": message, **({"target": target} if target else {})}
    return Reply(status, {"error": error}, headers={"Retry-After": retry_after} if retry_after else {})


@dataclass(frozen=True)
class TransportCall:
    """One request the transport got, with the keyword arguments requests passed along."""

    request: requests.PreparedRequest
    timeout: Any
    verify: bool | str
    proxies: Mapping[str, str]

    @property
    def method(self) -> str:
        return self.request.method or ""

    @property
    def url(self) -> str:
        return self.request.url or ""

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def body(self) -> bytes | None:
        body = self.request.body
        return body.encode() if isinstance(body, str) else body

    def json(self) -> Any:
        assert self.body is not None, "the request had no body"
        return json.loads(self.body)


class ScriptedTransport(BaseAdapter):
    """A requests transport adapter that answers from a script instead of the network.

    Mount it on a session for http:// and https://. Each request takes the next step: a Reply
    becomes a real requests.Response, a Fail (or a bare RequestException) is raised. Every request
    is recorded in `calls`. A request beyond the script raises AssertionError (which code above may
    turn into something else, so `assert_done()` checks it again). `time_passes` moves the fake
    clocks by each step's `takes`; `on_send` runs before each step (e.g. to take storage down).
    """

    def __init__(self, script: Iterable[Step] = (), *, time_passes: Callable[[float], None] | None = None) -> None:
        super().__init__()
        self._script: list[Step] = list(script)
        self._time_passes = time_passes
        self._lock = threading.Lock()
        self.calls: list[TransportCall] = []
        self.overruns = 0
        self.on_send: Callable[[requests.PreparedRequest], None] | None = None

    def add(self, *steps: Step) -> None:
        with self._lock:
            self._script.extend(steps)

    @property
    def prepared(self) -> list[requests.PreparedRequest]:
        """Every PreparedRequest the transport got, in order."""
        return [call.request for call in self.calls]

    @property
    def pending(self) -> int:
        """Steps not used yet."""
        return len(self._script)

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float, float] | tuple[float, None] | None = None, verify: bool | str = True,
             cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        with self._lock:
            self.calls.append(TransportCall(request, timeout, verify, dict(proxies or {})))
            if not self._script:
                self.overruns += 1
                raise AssertionError(f"ScriptedTransport: unscripted request #{len(self.calls)}: "
                                     f"{request.method} {request.url}")
            step = self._script.pop(0)
        if self.on_send is not None:
            self.on_send(request)
        if isinstance(step, requests.RequestException):
            step = Fail(step)
        self._pass(step.takes, timeout)
        if isinstance(step, Fail):
            if step.error.request is None:
                step.error.request = request
            raise step.error
        return self._response(request, step)

    def _pass(self, takes: float | str, timeout: Any) -> None:
        if isinstance(takes, str):
            assert takes in ("connect", "read"), takes
            connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            takes = float(connect if takes == "connect" else read)
        if takes and self._time_passes is not None:
            self._time_passes(takes)

    @staticmethod
    def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
        content = reply.content()
        headers = {"Content-Type": "application/json; charset=utf-8"} if reply.document is not None else {}
        response = requests.Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict({**headers, "Content-Length": str(len(content)), **reply.headers})
        response.encoding = get_encoding_from_headers(response.headers)
        try:
            response.reason = HTTPStatus(reply.status).phrase
        except ValueError:
            response.reason = ""
        response._content = content
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass

    def assert_done(self) -> None:
        """Every scripted step was used, and nothing beyond the script was asked for."""
        assert self.overruns == 0, f"{self.overruns} request(s) beyond the script"
        assert not self._script, f"{len(self._script)} scripted step(s) never requested"


def unsigned_jwt(claims: Mapping[str, Any]) -> str:
    """A JWT-shaped token (alg none, empty signature): only the gateway reads it, to name its principal."""
    def part(document: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class StaticCredential:
    """A TokenCredential that hands out one fixed token (or raises `error`), recording the scopes asked for.

    Stands in for the managed identity in the in-process layer only; the integration layer runs the real one.
    """

    def __init__(self, *, tenant: str = TENANT_ID, app: str = APP_ID, error: Exception | None = None) -> None:
        self.token = unsigned_jwt({"aud": DEFENDER_URL, "iss": f"https://sts.windows.net/{tenant}/",
                                   "tid": tenant, "appid": app, "roles": ["Alert.Read.All", "Alert.ReadWrite.All"]})
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AzureAccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AzureAccessToken(self.token, int(time.time()) + 3600)


class FakeMonotonic(FakeClock):
    """time.monotonic that the test (or FakeSleep) moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        super().__init__(now)


class FakeSleep:
    """time.sleep that costs no real time: records each wait and moves every given clock on by it."""

    def __init__(self, *clocks: FakeClock) -> None:
        self.clocks = clocks
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        self.waits.append(seconds)
        self.pass_time(seconds)

    def pass_time(self, seconds: float) -> None:
        """Time goes by without a wait of the code under test (e.g. a request in flight)."""
        for clock in self.clocks:
            clock.advance(seconds)


class RecordingStore(MemoryStore):
    """The real MemoryStore, also recording every successful write and running `after_read` hooks once each.

    `after_read` actions run right after a read returns: another instance's write slipped in between.
    """

    def __init__(self, name: str = "memory") -> None:
        super().__init__(name)
        self.writes: list[tuple[str, str, LogState]] = []
        self.reads = 0
        self.after_read: list[Callable[[], object]] = []

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        try:
            snapshot = super().read(key, api, tally)
            self.reads += 1
            return snapshot
        finally:
            while self.after_read:
                self.after_read.pop(0)()

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        written = super().write(key, api, state, etag, tally)
        if written is not None:
            self.writes.append((key, api, state))
        return written

    def blocks(self, api: str | None = None) -> list[int]:
        """The block ends (ms) of the writes that set or extended a block, in order."""
        ends: list[int] = []
        last: dict[tuple[str, str], int] = {}
        for key, written_api, state in self.writes:
            before = last.get((key, written_api), 0)
            last[(key, written_api)] = state.blocked_until_ms
            if state.blocked_until_ms > before and (api is None or written_api == api):
                ends.append(state.blocked_until_ms)
        return ends


#: App settings of the in-process layer: the commercial host, an unused storage connection string, and new
#: rate-limit states with their whole budget (the share has tests of its own).
UNIT_ENV: Mapping[str, str] = MappingProxyType({
    "MDE_BASE_URL": DEFENDER_URL,
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "RATE_LIMIT_NEW_STATE_SHARE": "1",
})


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
              store: RecordingStore | None = None, credential: StaticCredential | None = None) -> EdgeRig:
    """The gateway's real edge, gateway, client and limiters over a scripted Defender, built from settings.

    `limits` sets RATE_LIMIT_* per API; `settings_env` overrides any app setting. Pass another rig's `store`
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
    client = DefenderClient(settings.defender, credential, session)
    store = store if store is not None else RecordingStore()
    rate = settings.rate_limits
    limiters = build_rate_limiters(store, rate.policies.values(), margin_seconds=rate.margin_seconds,
                                   max_conflict_retries=rate.max_conflict_retries,
                                   new_state_share=rate.new_state_share, clock=clock, sync_clock=False)
    built = runtime.compose(settings, client, limiters, MemoryOperationStore(clock=clock),
                            MemoryQueues(settings.asynchronous, clock=clock), clock=clock, sleep=sleep,
                            monotonic=monotonic)
    return EdgeRig(built.edge, built.gateway, client, session, transport, store, limiters, settings,
                   credential, clock, monotonic, sleep, built)


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


def acquire_until_refused(limiters: list[RateLimiter], principal: str = "shared") -> list[Decision]:
    """One thread per limiter (an instance each) calls acquire at the same moment until its window refuses;
    every decision, in the order they were made."""
    decisions: list[Decision] = []
    lock = threading.Lock()
    start = threading.Barrier(len(limiters))

    def work(limiter: RateLimiter) -> None:
        start.wait(timeout=10)
        while True:
            decision = limiter.acquire(principal)
            with lock:
                decisions.append(decision)
            if decision.reason is Reason.RATE_LIMITED:
                return

    threads = [threading.Thread(target=work, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread never met a refusal"
    return decisions


class RequestQueue:
    """The gateway's request queue (and its poison queue, and reply queues) in Azurite, as a producer sees them."""

    def __init__(self, connection_string: str, name: str) -> None:
        from azure.storage.queue import QueueServiceClient

        self.service = QueueServiceClient.from_connection_string(connection_string)
        self.name = name

    def put(self, message: Mapping[str, Any] | str) -> None:
        client = self.service.get_queue_client(self.name)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        client.send_message(message if isinstance(message, str) else json.dumps(message))

    def drain(self, queue: str, *, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Take `count` JSON messages off `queue` (failing after `timeout` seconds)."""
        client = self.service.get_queue_client(queue)
        taken: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(taken) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{queue}: {len(taken)} of {count} messages after {timeout} s: {taken}")
            try:
                messages = list(client.receive_messages(max_messages=32, visibility_timeout=30))
            except ResourceNotFoundError:
                messages = []
            for message in messages:
                taken.append(json.loads(message.content))
                client.delete_message(message)
            if not messages:
                time.sleep(0.2)
        return taken

    def depth(self, queue: str) -> int:
        try:
            return self.service.get_queue_client(queue).get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0


def create_message(message_id: str, body: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "CreateAlertByReference", "body": dict(body or VALID),
            **extra}


def lookup_message(message_id: str, sha1: str, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "GetFileRelatedAlerts", "fileHash": sha1, **extra}


# --- the app as the Functions host indexes it -------------------------------------------------------------------

_FUNCTION_METADATA_SCRIPT = """
import json
import function_app
print(json.dumps({f.get_function_name(): json.loads(f.get_function_json()) for f in function_app.app.get_functions()}))
"""


def function_metadata(**settings: str) -> dict[str, dict[str, Any]]:
    """Each function's metadata (function.json: its bindings) as the host indexes function_app, imported in a child
    process with settings that make no request (Azurite's well-known account on loopback, a closed Defender port)
    and nothing else of this process's environment that the gateway reads."""
    root = Path(__file__).resolve().parent.parent
    env = {name: value for name, value in os.environ.items() if name not in CATALOGUE_BY_NAME
           and not name.startswith(("MDE_", "RATE_LIMIT_", "AzureWebJobsStorage", "IDENTITY_", "AZURE_", "GATEWAY_"))}
    env.update({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MDE_BASE_URL": "http://127.0.0.1:1",
                "PYTHONPATH": str(root), **settings})
    done = subprocess.run([sys.executable, "-c", _FUNCTION_METADATA_SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"importing function_app failed:\n{done.stderr}"
    metadata: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return metadata
