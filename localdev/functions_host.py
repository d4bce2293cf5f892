"""Serve the project's FunctionApp like the Functions host does (Core Tools can't be installed here).

Routes come from `function_app.app` itself (no second route table); requests become real
`func.HttpRequest` objects; function keys are enforced like Azure (`x-functions-key` header or
`code` query). Queue triggers run against Azurite with host.json's queue semantics (localdev.queue_host).
Run: `python -m localdev.functions_host --port 7071`.
"""

from __future__ import annotations

import argparse
import hmac
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from werkzeug.wrappers import Request, Response

from localdev.queue_host import QueueFunction, QueueOptions, resolve, start_listeners
from localdev.servers import quiet_server

ROOT = Path(__file__).resolve().parent.parent
ROUTE_PREFIX = "api"
#: The documented local default key; override with LOCAL_FUNCTION_KEY. Never used in Azure.
DEFAULT_LOCAL_KEY = "local-dev-function-key"

logger = logging.getLogger("localdev.functions_host")


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str
    handler: Callable[[func.HttpRequest], func.HttpResponse]


def _route_regex(template: str) -> re.Pattern[str]:
    """`files/{sha1}/alerts` -> a regex with named groups; `{name:constraint}` and `{name?}` are accepted."""
    parts: list[str] = []
    position = 0
    for match in re.finditer(r"\{(\w+)(?::[^}?]*)?(\?)?\}", template):
        parts.append(re.escape(template[position:match.start()]))
        parts.append(f"(?P<{match[1]}>[^/]+)" + ("?" if match[2] else ""))
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile(f"^/{ROUTE_PREFIX}/" + "".join(parts).strip("/") + "/?$", re.IGNORECASE)


def discover_routes(app: func.FunctionApp) -> list[Route]:
    """The HTTP functions of `app`. `get_functions()` may run only once per app object, so call this once."""
    return discover(app)[0]


def discover(app: func.FunctionApp) -> tuple[list[Route], list[QueueFunction]]:
    """The HTTP and the queue functions of `app` (call once per app object, like `discover_routes`)."""
    routes = []
    queue_functions = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        if trigger is not None and getattr(trigger, "type", None) == "queueTrigger":
            queue_functions.append(QueueFunction(function.get_function_name() or "function",
                                                 str(getattr(trigger, "queue_name", "")),
                                                 str(getattr(trigger, "connection", None) or "AzureWebJobsStorage"),
                                                 function.get_user_function()))
            continue
        if trigger is None or getattr(trigger, "type", None) != "httpTrigger":
            continue
        name = function.get_function_name() or "function"
        template = str(getattr(trigger, "route", None) or name)
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in (getattr(trigger, "methods", None) or []))
        level = getattr(trigger, "auth_level", func.AuthLevel.FUNCTION)
        routes.append(Route(name, _route_regex(template),
                            methods or frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}),
                            str(getattr(level, "value", level)).lower(), function.get_user_function()))
    return routes, queue_functions


class FunctionsHost:
    """WSGI app dispatching to the discovered functions."""

    def __init__(self, routes: list[Route], function_key: str, master_key: str) -> None:
        self.routes = routes
        self.function_key = function_key
        self.master_key = master_key

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _key_ok(self, request: Request, level: str) -> bool:
        if level == "anonymous":
            return True
        offered = request.headers.get("x-functions-key") or request.args.get("code") or ""
        keys = [self.master_key] if level == "admin" else [self.function_key, self.master_key]
        return any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys)

    def _dispatch(self, request: Request) -> Response:
        allowed: set[str] = set()
        for route in self.routes:
            match = route.pattern.match(request.path)
            if not match:
                continue
            if request.method.upper() not in route.methods:
                allowed |= route.methods
                continue
            if not self._key_ok(request, route.auth_level):
                return Response(status=401)  # what Azure answers: 401, empty body
            return self._invoke(route, request, {k: v for k, v in match.groupdict().items() if v is not None})
        if allowed:
            return Response(status=405, headers={"Allow": ", ".join(sorted(allowed))})
        return Response(status=404)

    @staticmethod
    def _invoke(route: Route, request: Request, route_params: dict[str, str]) -> Response:
        http_request = func.HttpRequest(
            method=request.method.upper(),
            url=request.url,
            headers=dict(request.headers.items()),
            params={k: v for k, v in request.args.items() if k != "code"},
            route_params=route_params,
            body=request.get_data(),
        )
        try:
            result = route.handler(http_request)
        except Exception:
            logger.exception("Function %s raised", route.name)
            return Response(status=500)
        headers = dict(result.headers.items())
        content_type = headers.pop("Content-Type", None) or headers.pop("content-type", None)
        if not content_type and result.mimetype:
            content_type = result.mimetype + (f"; charset={result.charset}" if result.charset else "")
        return Response(result.get_body(), status=result.status_code, headers=headers, content_type=content_type)


def load_local_settings(path: Path) -> None:
    """Like `func start`: Values from local.settings.json, without overriding the environment."""
    if not path.exists():
        return
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def build_host() -> tuple[FunctionsHost, list[QueueFunction]]:
    sys.path.insert(0, str(ROOT))
    function_app = importlib.import_module("function_app")
    key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_LOCAL_KEY
    master = os.environ.get("LOCAL_MASTER_KEY") or key + "-master"
    routes, queue_functions = discover(function_app.app)
    return FunctionsHost(routes, key, master), queue_functions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    load_local_settings(args.settings)
    from shared.settings import ConfigurationError  # after sys.path is set

    try:
        host, queue_functions = build_host()
    except ConfigurationError as error:
        print(f"Configuration error, not starting: {error}", file=sys.stderr)
        return 2
    for route in host.routes:
        print(f"  {route.name}: {'/'.join(sorted(route.methods))} {route.pattern.pattern} ({route.auth_level})",
              flush=True)
    options = QueueOptions.from_host_json(json.loads((ROOT / "host.json").read_text()))
    listeners = start_listeners(queue_functions, options)
    for listener in listeners:
        print(f"  {listener.function.name}: queue {resolve(listener.function.queue, os.environ)} "
              f"(batch {options.batch_size}, then {options.new_batch_threshold} more; poison after "
              f"{options.max_dequeue_count})", flush=True)
    server = quiet_server(host, args.port)
    print(f"Listening on http://127.0.0.1:{server.server_port}/{ROUTE_PREFIX}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for listener in listeners:
            listener.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
