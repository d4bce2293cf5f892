"""Serve the project's FunctionApp like the Functions host does (Core Tools can't be installed here).

Routes come from `function_app.app` itself (no second route table); requests become real
`func.HttpRequest` objects and answers go through the Python library's own HTTP converter, so what
a client sees is what Azure sends. Where the real host (azure-functions-host), the Python worker
or the queue extension behave in a way a test could tell apart, this host does the same:

- a method the route does not list is 404, like an unknown route (the host has no 405);
- a header or query parameter sent twice reaches the function once, its values joined with ","
  (ASP.NET Core's `StringValues.ToString()`, empty values skipped); header names in lower case, names
  with an underscore kept; a query parameter with an empty value is dropped;
- the body reaches the function only when the request has `Content-Length` above 0 (a chunked body
  does not: the host does not stream to out-of-process workers);
- `code` stays in the query the function sees; an `x-functions-key` header, when present at all,
  wins over it; the first value of either is the key;
- JSON answers carry no `charset` (the library adds one to `text/*` only);
- host.json's `functionTimeout` ends an invocation that runs longer: 500 with an empty body, a queue
  message retried (the real host then also restarts the Python worker, failing whatever else ran on
  it; this host lets the thread run on unobserved instead);
- the platform cuts an HTTP response at 230 s whatever `functionTimeout` says (Azure Load Balancer's idle
  timeout): 502 with an empty body, the function running on without a caller (LOCAL_HTTP_RESPONSE_CAP_SECONDS,
  a local-host-only setting, lowers the cap for tests);
- routes sit under host.json's `extensions.http.routePrefix` (default "api"; "" puts them at the root);
- the worker's side runs in localdev.workers: on Python 3.13 and later `azure-functions-runtime` itself indexes
  the app and converts the bindings (as in Azure), on 3.11 and 3.12 an emulation; every sync function of the
  instance, HTTP, queue and timer, runs on the worker's one pool of PYTHON_THREADPOOL_THREAD_COUNT threads;
- a `%NAME%` binding expression that names no app setting puts that function alone in error, named
  in the log; the host serves the others (localdev.queue_host);
- the master key is random unless LOCAL_MASTER_KEY names one;
- with WEBSITE_AUTH_ENABLED=True (the platform sets it while App Service authentication is on) the
  host plays that authentication in front of every function, as `PlatformAuthentication` says (tokens of
  GATEWAY_TOKEN_ISSUER, checked against the keys its OpenID metadata publishes);
- auth level `admin` takes the master key alone (`x-functions-key` or `code`), `function` a function key or the
  master key, as Azure's host does;
- an exception while function_app is imported leaves the host up with no function (every route 404),
  the reason in its log, as the Python worker's failed indexing does;
- a function is called by keyword, and one that declares `context` gets the invocation context, its trace
  context the host's activity for the request (a child of the caller's `traceparent`); a `context` annotated with
  another type fails the indexing, so the app has no function (localdev.invocation).

Queue triggers run against Azurite with host.json's queue semantics (localdev.queue_host).
Run: `python -m localdev.functions_host --port 7071`.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import logging
import os
import re
import secrets
import sys
import uuid
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from werkzeug.wrappers import Request, Response

from localdev.invocation import request_activity
from localdev.queue_host import QueueFunction, QueueOptions, host_timespan, start_listeners
from localdev.servers import QuietHandler, quiet_server
from localdev.timer_host import TimerFunction, start_timers
from localdev.worker_pool import format_timespan, thread_count
from localdev.workers import EmulatedWorker, HttpCall, IndexedFunction, IndexingError, Worker, choose_worker
from shared.http.settings import TokenCheck
from shared.http.tokens import IssuerKeys, KeysUnavailableError, TokenRefusedError, validated_claims

ROOT = Path(__file__).resolve().parent.parent
#: host.json's `extensions.http.routePrefix` when it names none.
DEFAULT_ROUTE_PREFIX = "api"
#: The platform cuts an HTTP response at 230 s whatever functionTimeout says (Azure Load Balancer's idle timeout;
#: the caller gets 502, the function runs on).
HTTP_RESPONSE_CAP = 230.0
#: A local-host-only setting: a lower cap, so a test sees the platform's answer without waiting 230 s.
HTTP_CAP_SETTING = "LOCAL_HTTP_RESPONSE_CAP_SECONDS"
#: The documented local default key; override with LOCAL_FUNCTION_KEY. Never used in Azure.
DEFAULT_LOCAL_KEY = "local-dev-function-key"
#: How the host hands a repeated request header to the worker: `StringValues.ToString()` joins with ",".
HEADER_JOIN = ","
#: The Functions host's default functionTimeout on Flex Consumption when host.json names none (30 min).
DEFAULT_FUNCTION_TIMEOUT = 30 * 60.0
#: Where the request handler leaves the headers as they came (WSGI's environ merges and drops some).
RAW_HEADERS_KEY = "localdev.raw_headers"

logger = logging.getLogger("localdev.functions_host")


def encode_principal(claims: Mapping[str, str], *, auth_type: str = "aad") -> str:
    """The X-MS-CLIENT-PRINCIPAL value the platform sends for these claims (the local host plays the platform)."""
    document = {"auth_typ": auth_type, "claims": [{"typ": typ, "val": val} for typ, val in claims.items()],
                "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
    return base64.b64encode(json.dumps(document).encode()).decode()


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str
    function: IndexedFunction  # what the worker runs for it (localdev.workers)


def _route_regex(template: str, prefix: str = DEFAULT_ROUTE_PREFIX) -> re.Pattern[str]:
    """`files/{sha1}/alerts` -> a regex with named groups; `{name:constraint}` and `{name?}` are accepted."""
    parts: list[str] = []
    position = 0
    for match in re.finditer(r"\{(\w+)(?::[^}?]*)?(\?)?\}", template):
        parts.append(re.escape(template[position:match.start()]))
        parts.append(f"(?P<{match[1]}>[^/]+)" + ("?" if match[2] else ""))
        position = match.end()
    parts.append(re.escape(template[position:]))
    path = "/".join(part for part in (prefix.strip("/"), "".join(parts).strip("/")) if part)
    return re.compile(f"^/{path}/?$", re.IGNORECASE)


def route_prefix(host_json: Mapping[str, Any]) -> str:
    """host.json's `extensions.http.routePrefix` ("api" when absent; "" allowed: the routes at the root)."""
    prefix = host_json.get("extensions", {}).get("http", {}).get("routePrefix")
    return DEFAULT_ROUTE_PREFIX if prefix is None else str(prefix).strip("/")


@dataclass(frozen=True)
class Functions:
    """What the host indexed, by trigger."""

    routes: list[Route]
    queues: list[QueueFunction]
    timers: list[TimerFunction]


def discover_routes(app: func.FunctionApp) -> list[Route]:
    """The HTTP functions of `app`. `get_functions()` may run only once per app object, so call this once."""
    return discover(app).routes


def discover(app: func.FunctionApp, prefix: str = DEFAULT_ROUTE_PREFIX) -> Functions:
    """The HTTP, queue and timer functions of `app` as the emulated worker indexes them (call once per app object).
    FunctionLoadError: a function the worker would not index (the indexing fails as a whole)."""
    return host_functions(EmulatedWorker.index_app(app), prefix)


def host_functions(indexed: list[IndexedFunction], prefix: str = DEFAULT_ROUTE_PREFIX) -> Functions:
    """The host's side of the worker's metadata: routes, queue listeners and timers, read from each function's
    trigger binding as the host reads it."""
    routes = []
    queue_functions = []
    timers = []
    for function in indexed:
        trigger = function.trigger
        kind = trigger.get("type")
        if kind == "queueTrigger":
            queue_functions.append(QueueFunction(function, str(trigger.get("queueName", "")),
                                                 str(trigger.get("connection") or "AzureWebJobsStorage")))
        elif kind == "timerTrigger":
            timers.append(TimerFunction(function, str(trigger.get("schedule", "")), bool(trigger.get("runOnStartup"))))
        elif kind == "httpTrigger":
            methods = frozenset(str(m).upper() for m in (trigger.get("methods") or []))
            routes.append(Route(function.name, _route_regex(str(trigger.get("route") or function.name), prefix),
                                methods or frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}),
                                str(trigger.get("authLevel") or "function").lower(), function))
    return Functions(routes, queue_functions, timers)


#: The token audience the local platform authentication accepts unless LOCAL_AUTH_AUDIENCE names another.
DEFAULT_LOCAL_AUDIENCE = "api://mde-alert-gateway-local"
#: What the platform adds for an authenticated caller; a caller's own headers of these names never get through.
PRINCIPAL_HEADER_PREFIXES = ("x-ms-client-principal", "x-ms-token-")


class PlatformAuthentication:
    """App Service authentication (Entra ID provider, `Return401`) as the platform runs it before the host.

    A request needs `Authorization: Bearer <token>` for one of `audiences` from `issuer` (its openIdIssuer), signed
    by a key the issuer's OpenID metadata publishes (the local token endpoint's JWKS, read with PyJWT's
    PyJWKClient) and unexpired. Whatever X-MS-CLIENT-PRINCIPAL* or X-MS-TOKEN-* headers the caller sent are dropped;
    an authenticated caller's token claims go on as X-MS-CLIENT-PRINCIPAL (base64 JSON, the object id under its long
    claim name, as the platform maps it), its object id as -ID, its app id as -NAME, and `aad` as -IDP; the
    Authorization header goes on too, as the platform passes it. No authorization policy is applied (allowed
    applications or principals, app roles): the gateway's own check is what tests see.
    """

    def __init__(self, issuer: str, audiences: frozenset[str]) -> None:
        self.check = TokenCheck(issuer.rstrip("/"), audiences)
        self.keys = IssuerKeys(self.check)

    def admit(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]] | Response:
        kept = [(name, value) for name, value in headers if not name.lower().startswith(PRINCIPAL_HEADER_PREFIXES)]
        scheme, _, token = next((value for name, value in kept if name.lower() == "authorization"), "").partition(" ")
        try:
            claims = validated_claims(token.strip(), self.check, self.keys) if scheme.lower() == "bearer" else None
        except (TokenRefusedError, KeysUnavailableError):
            claims = None
        if claims is None:
            return Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="local"'})
        object_id, app_id = str(claims.get("oid", "")), str(claims.get("appid") or claims.get("azp") or "")
        mapped = {("http://schemas.microsoft.com/identity/claims/objectidentifier" if name == "oid" else name):
                  str(value) for name, value in claims.items() if not isinstance(value, list)}
        return [*kept, ("X-MS-CLIENT-PRINCIPAL", encode_principal(mapped)), ("X-MS-CLIENT-PRINCIPAL-ID", object_id),
                ("X-MS-CLIENT-PRINCIPAL-NAME", app_id), ("X-MS-CLIENT-PRINCIPAL-IDP", "aad")]


class FunctionsHost:
    """WSGI app dispatching to the discovered functions."""

    def __init__(self, routes: list[Route], function_key: str, master_key: str, *,
                 worker: Worker | None = None, function_timeout: float = DEFAULT_FUNCTION_TIMEOUT,
                 http_cap: float = HTTP_RESPONSE_CAP, authentication: PlatformAuthentication | None = None) -> None:
        self.routes = routes
        self.function_key = function_key
        self.master_key = master_key
        self.worker: Worker = worker or EmulatedWorker(os.environ)
        self.function_timeout = function_timeout
        self.http_cap = http_cap
        self.authentication = authentication

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._dispatch(request, environ.get(RAW_HEADERS_KEY))(environ, start_response)

    def _key_ok(self, request: Request, raw_headers: list[tuple[str, str]], level: str) -> bool:
        if level == "anonymous":
            return True
        sent = [value for name, value in raw_headers if name.lower() == "x-functions-key"]
        offered = sent[0] if sent else request.args.get("code", "")
        keys = [self.master_key] if level == "admin" else [self.function_key, self.master_key]
        return any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys)

    def _dispatch(self, request: Request, raw_headers: list[tuple[str, str]] | None) -> Response:
        raw_headers = raw_headers if raw_headers is not None else list(request.headers.items())
        if self.authentication is not None:
            admitted = self.authentication.admit(raw_headers)
            if isinstance(admitted, Response):
                return admitted
            raw_headers = admitted
        for route in self.routes:
            match = route.pattern.match(request.path)
            if not match or request.method.upper() not in route.methods:
                continue  # a route that does not take this method does not match it: 404 below, as in Azure
            if not self._key_ok(request, raw_headers, route.auth_level):
                return Response(status=401)  # what Azure answers: 401, empty body
            return self._invoke(route, request, raw_headers,
                                {k: v for k, v in match.groupdict().items() if v is not None})
        return Response(status=404)

    def _invoke(self, route: Route, request: Request, raw_headers: list[tuple[str, str]],
                route_params: dict[str, str]) -> Response:
        length = request.content_length or 0
        call = HttpCall(method=request.method.upper(), url=request.url, headers=joined(raw_headers, lower_case=True),
                        params=joined(list(request.args.items(multi=True)), drop_empty=True),
                        route_params=route_params, body=request.get_data() if length > 0 else b"")
        activity = request_activity(request.headers.get("traceparent"), request.headers.get("tracestate"))
        invocation = self.worker.start(route.function, call, activity)
        try:
            answer = invocation.result(min(self.function_timeout, self.http_cap))
        except FutureTimeoutError:
            if self.http_cap < self.function_timeout:  # the platform's cut: the function runs on, unanswered
                logger.warning("Functions.%s: no response within %g s: the platform answers 502", route.name,
                               self.http_cap)
                return Response(status=502)
            logger.error("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating "
                         "cancellation.", format_timespan(self.function_timeout), route.name, uuid.uuid4())
            return Response(status=500)
        except Exception:
            logger.exception("Executed 'Functions.%s' (Failed)", route.name)
            return Response(status=500)
        return Response(answer.body, status=answer.status, headers=answer.headers)


def joined(pairs: list[tuple[str, str]], *, lower_case: bool = False, drop_empty: bool = False) -> dict[str, str]:
    """Headers or query parameters as the host hands them to the worker: one entry per name, the non-empty values
    of a repeated name joined with "," (`StringValues.ToString()`). Headers: names in lower case. Query: a name
    whose value is empty is dropped."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name.lower() if lower_case else name, []).append(value)
    result = {name: HEADER_JOIN.join(v for v in found if v) for name, found in values.items()}
    return {name: value for name, value in result.items() if value or not drop_empty}


def load_local_settings(path: Path) -> None:
    """Like `func start`: Values from local.settings.json, without overriding the environment."""
    if not path.exists():
        return
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def function_timeout(host_json: Mapping[str, Any]) -> float:
    """host.json's `functionTimeout` in seconds ("-1": none, i.e. unbounded)."""
    raw = host_json.get("functionTimeout")
    if raw in (None, ""):
        return DEFAULT_FUNCTION_TIMEOUT
    if str(raw).strip() == "-1":
        return float("inf")
    return host_timespan(str(raw), DEFAULT_FUNCTION_TIMEOUT)


def http_cap(env: Mapping[str, str]) -> float:
    """The platform's cap on an HTTP response (LOCAL_HTTP_RESPONSE_CAP_SECONDS lowers it for tests)."""
    raw = env.get(HTTP_CAP_SETTING)
    return min(HTTP_RESPONSE_CAP, float(raw)) if raw else HTTP_RESPONSE_CAP


def build_host(host_json: Mapping[str, Any], app_directory: Path = ROOT) -> tuple[FunctionsHost, Functions]:
    worker = choose_worker(os.environ)
    try:
        functions = host_functions(worker.index(app_directory), route_prefix(host_json))
    except IndexingError:  # as the worker's failed indexing: the host runs on with no function
        logger.exception("Worker failed to index functions: the host runs with no function (every route is 404)")
        functions = Functions([], [], [])
    key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_LOCAL_KEY
    master = os.environ.get("LOCAL_MASTER_KEY") or secrets.token_urlsafe(32)
    authentication = None
    if (os.environ.get("WEBSITE_AUTH_ENABLED") or "").lower() == "true":
        audience = os.environ.get("LOCAL_AUTH_AUDIENCE") or DEFAULT_LOCAL_AUDIENCE
        # The platform's openIdIssuer: the same issuer the Bicep gives the gateway (GATEWAY_TOKEN_ISSUER).
        authentication = PlatformAuthentication(os.environ.get("GATEWAY_TOKEN_ISSUER") or "", frozenset({audience}))
    return FunctionsHost(functions.routes, key, master, worker=worker, function_timeout=function_timeout(host_json),
                         http_cap=http_cap(os.environ), authentication=authentication), functions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json")
    parser.add_argument("--host-json", type=Path, default=ROOT / "host.json",
                        help="the host.json to follow (tests point it at a variant)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    # The worker's own log (logger "azure.functions": azure-functions-runtime names each invocation it runs) reaches
    # the host's log as the Python worker forwards it in Azure; the Azure SDKs' chatter below WARNING does not.
    logging.getLogger("azure.functions").setLevel(logging.getLogger().level)
    load_local_settings(args.settings)
    host_json = json.loads(args.host_json.read_text())
    host, functions = build_host(host_json)
    print(f"Worker: {host.worker.name} indexed the app and runs its functions (Python {sys.version.split()[0]}; "
          f"{thread_count(os.environ)} threads)", flush=True)
    for route in host.routes:
        print(f"  {route.name}: {'/'.join(sorted(route.methods))} {route.pattern.pattern} ({route.auth_level})",
              flush=True)
    options = QueueOptions.from_host_json(host_json)
    listeners = start_listeners(functions.queues, options, function_timeout=host.function_timeout,
                                worker=host.worker)
    for listener in listeners:
        print(f"  {listener.function.name}: queue {listener.queue_name} (batch {options.batch_size}, then "
              f"{options.new_batch_threshold} more; poison after {options.max_dequeue_count}; lease "
              f"{listener.lease_seconds:g} s)", flush=True)
    timers = start_timers(functions.timers, os.environ, function_timeout=host.function_timeout,
                          worker=host.worker)
    for timer in timers:
        print(f"  {timer.function.name}: timer {timer.schedule}", flush=True)
    server = quiet_server(host, args.port, request_handler=RawHeadersHandler)
    print(f"Listening on http://127.0.0.1:{server.server_port}/{route_prefix(host_json)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for listener in listeners:
            listener.stop()
        for timer in timers:
            timer.stop()
        server.server_close()
    return 0


class RawHeadersHandler(QuietHandler):
    """Keeps every request header line as sent (WSGI merges repeats and drops names with `_`)."""

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        environ[RAW_HEADERS_KEY] = [(name, value.replace("\r\n", "")) for name, value in self.headers.items()]
        return environ


if __name__ == "__main__":
    sys.exit(main())
