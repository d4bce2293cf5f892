"""The simulator's WSGI app: Defender's endpoints under /api and an admin API under /_sim/.

Contract (from the documentation): OData envelope; error body {"error": {"code", "message", "target"}};
file alerts take SHA-1 only (400 InvalidHashValue); file information takes a SHA-1 or a SHA-256 and 404s
(ResourceNotFound) for a file Defender does not know; create finds the event by (reportId, eventTime,
machineId) or 404s, and merges into an open alert with the same title on the same device; bearer tokens
checked for audience (403) and app roles (403); sliding-window limits per tenant + app + API answered with
429 + Retry-After. Paths, methods, roles and limits come from shared.defender.facts. Microsoft Graph's
runHuntingQuery on the same port, with Graph's audience and error bodies: localdev/simulator/hunting.py.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from werkzeug.wrappers import Request, Response

from localdev.servers import RECEIVED_AT_KEY
from localdev.simulator import hunting
from localdev.simulator.data import (
    file_entity,
    file_evidence,
    file_from_evidence,
    make_alert,
    new_alert_id,
    normalise_time,
    now_iso,
    seed_alerts,
    seed_events,
    seed_files,
    sha256_of,
)
from localdev.simulator.throttle import SlidingWindows
from localdev.tokens import LOCAL_TENANT_ID, read_token
from shared.defender.clouds import GLOBAL_GRAPH
from shared.defender.facts import (
    API_FACTS,
    CATEGORIES,
    CREATE_ALERT_PATH,
    CREATE_FIELDS,
    GRAPH_HUNTING_PATH,
    SEVERITIES,
    Api,
    file_alerts_path,
    file_info_path,
)
from shared.identifiers import SHA1_ANY_CASE, SHA256_ANY_CASE

COMMERCIAL_AUDIENCE = "https://api.securitycenter.microsoft.com"
_ID = "{id}"


def _route(path: str) -> re.Pattern[str]:
    """A documented path, with `{id}` standing for its one parameter, as a case-insensitive pattern (trailing / ok)."""
    head, marker, tail = path.partition(_ID)
    parameter = r"(?P<id>[^/]+)" if marker else ""
    return re.compile(f"^{re.escape(head)}{parameter}{re.escape(tail)}/?$", re.IGNORECASE)


FILE_ALERTS_PATH = _route(file_alerts_path(_ID))
CREATE_PATH = _route(CREATE_ALERT_PATH)
FILE_INFO_PATH = _route(file_info_path(_ID))
HUNTING_PATH = _route(GRAPH_HUNTING_PATH)
#: Each API's method and path, as Defender routes them.
ROUTES: dict[Api, tuple[str, re.Pattern[str]]] = {
    Api.FILE_ALERTS: (API_FACTS[Api.FILE_ALERTS].method, FILE_ALERTS_PATH),
    Api.CREATE_ALERT: (API_FACTS[Api.CREATE_ALERT].method, CREATE_PATH),
    Api.FILE_INFO: (API_FACTS[Api.FILE_INFO].method, FILE_INFO_PATH),
    Api.HUNTING: (API_FACTS[Api.HUNTING].method, HUNTING_PATH),
}
REQUIRED_ROLES = {api.value: facts.roles for api, facts in API_FACTS.items()}
ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"


@dataclass
class Fault:
    """An injected misbehaviour: `kind` is status | latency | malformed | drop; applies to `count` calls. A status
    fault with a `delay` answers after it (a hunting query that runs long, then 504)."""

    kind: str
    api: str = "*"
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class TenantData:
    """A customer tenant's own alerts, events and files (it starts with none: Defender's data is per tenant)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimState:
    """The home tenant's data (seeded), each other tenant's (TenantData), faults and the call log."""

    alerts: list[dict[str, Any]] = field(default_factory=seed_alerts)
    events: list[dict[str, Any]] = field(default_factory=seed_events)
    #: Files known besides those in alerts' evidence (seeded, or added through POST /_sim/files).
    files: list[dict[str, Any]] = field(default_factory=seed_files)
    faults: list[Fault] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    #: Requests a latency fault is holding now: they have arrived and are not answered yet (the call log has them
    #: only once answered), so a test can wait until a request is at Defender instead of sleeping.
    held: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: Every tenant but the home one (LOCAL_TENANT_ID), by tenant id.
    tenants: dict[str, TenantData] = field(default_factory=dict)
    #: Advanced hunting's CPU blocks per tenant, and the next generated event's report id.
    hunting: hunting.HuntingState = field(default_factory=hunting.HuntingState)

    def of(self, tenant: str | None) -> SimState | TenantData:
        """The data of `tenant` (None or the home tenant: the seeded data)."""
        if tenant is None or tenant == LOCAL_TENANT_ID:
            return self
        return self.tenants.setdefault(tenant, TenantData())


#: Where a request's caller (tenant|application of its token) is kept for the call log.
CALLER_KEY = "localdev.simulator.caller"
#: The kind of fault a call was given (None: none), for its entry in the call log.
FAULT_KEY = "simulator.fault"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or {})


def _ok(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, content_type=ODATA_JSON)


class Simulator:
    """WSGI app simulating api.securitycenter.microsoft.com for the gateway's APIs."""

    def __init__(self, audiences: tuple[str, ...] = (COMMERCIAL_AUDIENCE,),
                 base_url_for_context: str = "https://api.securitycenter.microsoft.com",
                 graph_audiences: tuple[str, ...] = (GLOBAL_GRAPH,)) -> None:
        self.audiences = audiences
        #: The audiences Graph's runHuntingQuery takes (its own, as Graph's host names it).
        self.graph_audiences = graph_audiences
        self.context_base = base_url_for_context
        self.state = SimState()
        self.windows = SlidingWindows()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/_sim/"):
            return self._admin(request)(environ, start_response)
        # Defender counts a call when it arrives: the moment the server read its request line, before this
        # process got round to it (a simulator that is slow to look must not shift calls between windows).
        started, arrived = environ.get(RECEIVED_AT_KEY) or (time.time(), time.monotonic())
        request.get_data()  # read (and cache) the body before any fault can close the connection
        api = self._api_of(request)
        response = self._serve(request, api, environ, arrived)
        if response is None:  # a dropped connection: logged first, so that a caller who saw it finds it logged
            self._log(request, api, 0, started, environ)
            self._drop(environ)
            return []
        self._log(request, api, response.status_code, started, environ)
        return response(environ, start_response)

    # -- Defender's API -------------------------------------------------------------------------
    @staticmethod
    def _api_of(request: Request) -> str | None:
        for api, (method, pattern) in ROUTES.items():
            if request.method == method and pattern.match(request.path):
                return api.value
        return None

    def _serve(self, request: Request, api: str | None, environ: dict[str, Any], arrived: float) -> Response | None:
        if api is None:
            return _error(404, "NotFound", f"No HTTP resource was found that matches the request URI "
                                           f"'{request.path}' and method {request.method}.")
        graph = api == Api.HUNTING
        caller_or_error = self._authorize_graph(request) if graph else self._authorize(request, api)
        if isinstance(caller_or_error, Response):
            return caller_or_error
        environ[CALLER_KEY] = caller_or_error
        fault = self._take_fault(api)
        if fault is not None:
            environ[FAULT_KEY] = fault.kind
            if fault.kind == "latency" or (fault.kind == "status" and fault.delay > 0):
                self._hold(fault.delay)
            if fault.kind != "latency":
                return self._faulted(fault, environ, request if graph else None)
        admitted, retry_after, window = self.windows.admit(caller_or_error, api, at=None if fault else arrived)
        if not admitted and window is not None:
            limit, seconds = window
            if graph:
                return hunting.calls_exceeded(request, limit, seconds, retry_after)
            return _error(429, "TooManyRequests",
                          f"API calls quota exceeded! Maximum calls allowed is {limit} per {seconds:g} second(s). "
                          f"Please try again after {retry_after} second(s).", {"Retry-After": str(retry_after)})
        tenant = caller_or_error.split("|", 1)[0]  # Defender's data is the token's tenant's
        if graph:
            return self._hunt(request, tenant)
        if api == Api.CREATE_ALERT:
            return self._create_alert(request, tenant)
        route = ROUTES[Api(api)][1].match(request.path)
        file_id = route["id"] if route else ""
        return self._file_alerts(file_id, tenant) if api == Api.FILE_ALERTS else self._file_info(file_id, tenant)

    def _hold(self, delay: float) -> None:
        with self.state.lock:
            self.state.held += 1
        try:
            time.sleep(delay)  # the injected latency itself
        finally:
            with self.state.lock:
                self.state.held -= 1

    def _authorize(self, request: Request, api: str) -> str | Response:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _error(401, "Unauthorized", "Authorization header is missing or is not a Bearer token.")
        try:
            claims = read_token(header[len("Bearer "):])
        except jwt.ExpiredSignatureError:
            return _error(401, "Unauthorized", "The access token has expired.")
        except jwt.InvalidTokenError:
            return _error(401, "Unauthorized", "The access token is invalid.")
        if claims.audience.rstrip("/") not in {a.rstrip("/") for a in self.audiences}:
            return _error(403, "Forbidden", f"Invalid audience '{claims.audience}'. Expected one of: "
                                            + ", ".join(self.audiences))
        if not set(REQUIRED_ROLES[api]) & set(claims.roles):
            return _error(403, "Forbidden", "Missing application roles. API required roles: "
                          + " or ".join(REQUIRED_ROLES[api]) + ". Application roles: "
                          + (", ".join(claims.roles) or "none"))
        return f"{claims.tenant_id}|{claims.app_id}"

    def _authorize_graph(self, request: Request) -> str | Response:
        """Graph's checks of the bearer token: 401 InvalidAuthenticationToken unless it is a valid token for Graph,
        403 Authorization_RequestDenied without ThreatHunting.Read.All; else the caller (tenant|application)."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[len("Bearer "):].strip():
            return hunting.graph_error(request, 401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = read_token(header[len("Bearer "):])
        except jwt.ExpiredSignatureError:
            return hunting.graph_error(request, 401, "InvalidAuthenticationToken",
                                       "Lifetime validation failed, the token is expired.")
        except jwt.InvalidTokenError:
            return hunting.graph_error(request, 401, "InvalidAuthenticationToken",
                                       "Access token validation failure.")
        if claims.audience.rstrip("/") not in {a.rstrip("/") for a in self.graph_audiences}:
            return hunting.graph_error(request, 401, "InvalidAuthenticationToken",
                                       "Access token validation failure. Invalid audience.")
        if not set(REQUIRED_ROLES[Api.HUNTING.value]) & set(claims.roles):
            return hunting.graph_error(request, 403, "Authorization_RequestDenied",
                                       "Insufficient privileges to complete the operation. Required application "
                                       "permission: " + " or ".join(REQUIRED_ROLES[Api.HUNTING.value]) + ".")
        return f"{claims.tenant_id}|{claims.app_id}"

    def _hunt(self, request: Request, tenant: str) -> Response:
        """A query of `tenant`: 429 while its CPU is exhausted, else Graph's answer over its events."""
        now = time.time()
        key = None if tenant == LOCAL_TENANT_ID else tenant
        with self.state.lock:
            block = hunting.cpu_block_of(self.state.hunting, key, now)
            events = list(self.state.of(tenant).events)
            max_result_bytes = self.state.hunting.max_result_bytes
        if block is not None:
            return hunting.cpu_exceeded(request, block)
        return hunting.run_query(request, events, now=now, max_result_bytes=max_result_bytes)

    def _take_fault(self, api: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.api in ("*", api) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.state.faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _drop(environ: dict[str, Any]) -> None:
        """Close the request's connection without an answer."""
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @staticmethod
    def _faulted(fault: Fault, environ: dict[str, Any], graph: Request | None = None) -> Response | None:
        """The fault's answer (None: the connection dropped); `graph`: the request of a Graph call, answered with
        Graph's error body (a 504 is Graph's query timeout)."""
        if fault.kind == "drop":
            return None  # __call__ logs the call, then drops the connection
        if fault.kind == "malformed":
            return Response("<html><body>502 Bad Gateway</body></html>", status=200, mimetype="text/html")
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        codes = {429: "TooManyRequests", 500: "InternalServerError", 400: "BadRequest", 401: "Unauthorized",
                 403: "Forbidden", 404: "NotFound"}
        if graph is not None:
            if fault.status == 504:
                return hunting.graph_error(graph, 504, "GatewayTimeout", hunting.TIMEOUT_MESSAGE, headers)
            return hunting.graph_error(graph, fault.status, codes.get(fault.status, "ServiceUnavailable"),
                                       f"Injected fault: {fault.status}.", headers)
        return _error(fault.status, codes.get(fault.status, "ServiceUnavailable"),
                      f"Injected fault: {fault.status}.", headers)

    def _file_alerts(self, file_id: str, tenant: str | None = None) -> Response:
        if not SHA1_ANY_CASE.fullmatch(file_id):
            return _error(400, "InvalidHashValue",
                          f"Hash value {file_id} is not valid: only SHA-1 file hashes are supported.")
        sha1 = file_id.lower()
        with self.state.lock:
            related = [alert for alert in self.state.of(tenant).alerts
                       if any((e.get("sha1") or "").lower() == sha1 for e in alert.get("evidence") or [])]
            return _ok({"@odata.context": f"{self.context_base}/api/$metadata#Alerts", "value": related})

    def _file_info(self, file_id: str, tenant: str | None = None) -> Response:
        if not (SHA1_ANY_CASE.fullmatch(file_id) or SHA256_ANY_CASE.fullmatch(file_id)):
            return _error(400, "InvalidHashValue",
                          f"Hash value {file_id} is not valid: only SHA-1 and SHA-256 file hashes are supported.")
        found = self._find_file(file_id.lower(), tenant)
        if found is None:
            return _error(404, "ResourceNotFound", f"File {file_id} was not found.")
        return _ok({"@odata.context": f"{self.context_base}/api/$metadata#Files/$entity", **found})

    def _find_file(self, file_hash: str, tenant: str | None = None) -> dict[str, Any] | None:
        """The file whose SHA-1 (40 hex digits) or SHA-256 (64) is `file_hash` (lower case): a known file, else
        one seen in an alert's evidence."""
        key = "sha1" if len(file_hash) == 40 else "sha256"
        with self.state.lock:
            data = self.state.of(tenant)
            for known in data.files:
                if (known.get(key) or "").lower() == file_hash:
                    return dict(known)
            sightings = [(alert, evidence) for alert in data.alerts for evidence in alert.get("evidence") or []
                         if (evidence.get(key) or "").lower() == file_hash and evidence.get("sha1")]
            return file_from_evidence(sightings) if sightings else None

    def known_files(self) -> list[dict[str, Any]]:
        """Every file Get file information finds: the known files, then each other SHA-1 in alerts' evidence."""
        with self.state.lock:
            files = [dict(known) for known in self.state.files]
            listed = {str(known.get("sha1") or "").lower() for known in files}
            seen: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
            for alert in self.state.alerts:
                for evidence in alert.get("evidence") or []:
                    sha1 = str(evidence.get("sha1") or "").lower()
                    if sha1 and sha1 not in listed:
                        seen.setdefault(sha1, []).append((alert, evidence))
        return files + [file_from_evidence(sightings) for sightings in seen.values()]

    def _create_alert(self, request: Request, tenant: str | None = None) -> Response:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            return _error(400, "InvalidRequestBody", "Request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "InvalidRequestBody", "Request body must be a JSON object.")
        for name in CREATE_FIELDS:
            if body.get(name) in (None, ""):
                return _error(400, "BadRequest", f"{name} argument is missing")
        if body["severity"] not in SEVERITIES:
            return _error(400, "InvalidRequestBody", f"Severity '{body['severity']}' is not valid.")
        if body["category"] not in CATEGORIES:
            return _error(400, "InvalidRequestBody", f"Category '{body['category']}' is not valid.")
        event_time = normalise_time(str(body["eventTime"]))
        if event_time is None:
            return _error(400, "InvalidRequestBody", "eventTime is not a valid UTC time.")
        with self.state.lock:
            data = self.state.of(tenant)
            event = next((e for e in data.events
                          if e["reportId"] == str(body["reportId"]) and normalise_time(e["eventTime"]) == event_time
                          and e["machineId"].lower() == str(body["machineId"]).lower()), None)
            if event is None:
                return _error(404, "ResourceNotFound", "Event with the given reportId, eventTime and machineId "
                                                       "was not found.")
            return _ok(self._upsert_alert(body, event, data.alerts))

    def _upsert_alert(self, body: dict[str, Any], event: dict[str, Any],
                      alerts: list[dict[str, Any]]) -> dict[str, Any]:
        machine_id = event["machineId"].lower()
        stamp = now_iso()
        for alert in alerts:
            if alert["machineId"] == machine_id and alert["title"] == body["title"] and alert["status"] != "Resolved":
                alert["lastEventTime"] = max(alert.get("lastEventTime") or "", event["eventTime"])
                alert["lastUpdateTime"] = stamp
                return dict(alert, **{"@odata.context": f"{self.context_base}/api/$metadata#Alerts/$entity"})
        alert = make_alert(
            id=new_alert_id(), severity=body["severity"], category=body["category"], title=body["title"],
            description=body["description"], status="New", investigationState="Queued",
            investigationId=int(time.time()) % 100000,
            detectionSource="CustomDetection", detectorId=None, incidentId=None, machineId=machine_id,
            computerDnsName=event.get("computerDnsName"), firstEventTime=event["eventTime"],
            lastEventTime=event["eventTime"], mitreTechniques=[], relatedUser=None,
            evidence=[file_evidence(event["sha1"], event.get("fileName", "unknown"), sha256=event.get("sha256"))]
            if event.get("sha1") else [],
        )
        alerts.append(alert)
        return dict(alert, **{"@odata.context": f"{self.context_base}/api/$metadata#Alerts/$entity"})

    def _log(self, request: Request, api: str | None, status: int, started: float, environ: dict[str, Any]) -> None:
        body = request.get_data(as_text=True) if request.method == "POST" else None
        with self.state.lock:
            self.state.calls.append({"method": request.method, "path": request.path, "api": api, "status": status,
                                     "time": started, "duration": time.time() - started, "body": body,
                                     "client_request_id": request.headers.get("client-request-id"),
                                     "caller": environ.get(CALLER_KEY), "fault": environ.get(FAULT_KEY)})

    # -- admin API --------------------------------------------------------------------------------
    def _admin(self, request: Request) -> Response:
        state = self.state
        route = (request.method, request.path.rstrip("/"))
        payload = request.get_json(force=True, silent=True) if request.method in ("POST", "PUT") else None
        with state.lock:
            if route == ("GET", "/_sim/calls"):
                return _ok({"calls": list(state.calls), "held": state.held})
            if route == ("DELETE", "/_sim/calls"):
                state.calls.clear()
                return _ok({"cleared": True})
            if route == ("POST", "/_sim/reset"):
                fresh = SimState()
                state.alerts, state.events, state.faults, state.calls = (fresh.alerts, fresh.events, [], [])
                state.files = fresh.files
                state.hunting = fresh.hunting
                state.tenants.clear()
                self.windows.reset()
                return _ok({"reset": True})
            if route == ("POST", "/_sim/faults") and isinstance(payload, dict):
                fault = Fault(**{k: payload[k] for k in ("kind", "api", "count", "status", "retry_after", "delay")
                                 if k in payload})
                if fault.kind not in ("status", "latency", "malformed", "drop"):
                    return _error(400, "BadRequest", "kind must be status, latency, malformed or drop")
                state.faults.append(fault)
                return _ok({"faults": len(state.faults)})
            if route == ("DELETE", "/_sim/faults"):
                state.faults.clear()
                return _ok({"faults": 0})
            tenant = request.args.get("tenant") or None  # whose data an admin call reads or adds to
            if route == ("GET", "/_sim/alerts"):
                return _ok({"value": list(state.of(tenant).alerts)})
            if route == ("POST", "/_sim/alerts") and isinstance(payload, dict):
                alert = make_alert(**payload)
                if "sha1" in payload:
                    alert.pop("sha1")
                    sha1 = str(payload["sha1"]).lower()
                    sha256 = str(alert.pop("sha256", None) or sha256_of(sha1)).lower()
                    alert["evidence"] = [file_evidence(sha1, "sample.exe", sha256=sha256)]
                state.of(tenant).alerts.append(alert)
                return _ok(alert, 201)
            if route == ("POST", "/_sim/events") and isinstance(payload, dict):
                missing = [k for k in ("reportId", "eventTime", "machineId") if not payload.get(k)]
                if missing:
                    return _error(400, "BadRequest", f"missing {', '.join(missing)}")
                state.of(tenant).events.append(dict(payload, reportId=str(payload["reportId"])))
                return _ok(payload, 201)
            if route == ("GET", "/_sim/files"):
                return _ok({"value": self.known_files()})
            if route == ("POST", "/_sim/files") and isinstance(payload, dict):
                return self._add_file(payload)
            if route == ("POST", "/_sim/hunting/cpu") and isinstance(payload, dict):
                try:
                    return _ok(hunting.set_cpu(state.hunting, None if tenant in (None, LOCAL_TENANT_ID) else tenant,
                                               payload, time.time()))
                except ValueError as error:
                    return _error(400, "BadRequest", str(error))
            if route == ("POST", "/_sim/hunting/size") and isinstance(payload, dict):
                size = payload.get("maxResultBytes", hunting.MAX_RESULT_BYTES)
                if not isinstance(size, int) or size < 1:
                    return _error(400, "BadRequest", "maxResultBytes must be a whole number, at least 1")
                state.hunting.max_result_bytes = size
                return _ok({"maxResultBytes": size})
            if route == ("POST", "/_sim/hunting/events") and isinstance(payload, dict):
                try:
                    rows = hunting.add_events(state.hunting, state.of(tenant).events, payload, time.time())
                except ValueError as error:
                    return _error(400, "BadRequest", str(error))
                return _ok({"added": len(rows), "results": rows}, 201)
            if route == ("POST", "/_sim/limits") and isinstance(payload, dict):
                self.windows.set_limits({api: [(int(c), float(s)) for c, s in windows]
                                         for api, windows in payload.items()})
                return _ok({"limits": payload})
        return _error(404, "NotFound", f"no admin route {request.method} {request.path}")

    def _add_file(self, payload: dict[str, Any]) -> Response:
        """POST /_sim/files: a file entity (documented properties only, an `@odata.context` is ignored; sha1
        required, sha256 optional) that Get file information finds by either hash. Replaces a file with its SHA-1."""
        sha1, sha256 = payload.get("sha1"), payload.get("sha256")
        if not isinstance(sha1, str) or not SHA1_ANY_CASE.fullmatch(sha1):
            return _error(400, "BadRequest", "sha1 must be 40 hex digits")
        if sha256 is not None and (not isinstance(sha256, str) or not SHA256_ANY_CASE.fullmatch(sha256)):
            return _error(400, "BadRequest", "sha256 must be 64 hex digits or null")
        try:
            entity = file_entity(sha1, sha256, **{k: v for k, v in payload.items()
                                                  if k not in ("sha1", "sha256", "@odata.context")})
        except ValueError as error:
            return _error(400, "BadRequest", str(error))
        with self.state.lock:
            self.state.files = [f for f in self.state.files if f["sha1"] != entity["sha1"]] + [entity]
        return _ok(entity, 201)
