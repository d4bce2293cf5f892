"""A fake managed-identity endpoint (App Service protocol: IDENTITY_ENDPOINT / IDENTITY_HEADER).

The gateway's real ManagedIdentityCredential talks to it exactly as it would in Azure:
`GET {endpoint}?api-version=2019-08-01&resource=...` with header `X-IDENTITY-HEADER`.
Admin: `POST /_identity/config` {"roles": [...], "fail": bool, "opaque": bool}, `GET /_identity/stats`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from localdev.tokens import ALL_ROLES, LOCAL_APP_ID, issue_token

IDENTITY_PATH = "/msi/token"


@dataclass
class IdentityState:
    secret: str
    roles: tuple[str, ...] = ALL_ROLES
    lifetime: int = 3600
    fail: bool = False
    #: Hand out tokens that are not JWTs (opaque, as an encrypted token is to its client): the gateway fails closed.
    opaque: bool = False
    issued: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")


class IdentityEndpoint:
    """WSGI app; `state` is shared with whoever started it."""

    def __init__(self, secret: str) -> None:
        self.state = IdentityState(secret)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        state = self.state
        if request.path == "/_identity/config" and request.method == "POST":
            config = request.get_json(force=True, silent=True) or {}
            with state.lock:
                if "roles" in config:
                    state.roles = tuple(config["roles"])
                if "fail" in config:
                    state.fail = bool(config["fail"])
                if "opaque" in config:
                    state.opaque = bool(config["opaque"])
                if "lifetime" in config:
                    state.lifetime = int(config["lifetime"])
                if config.get("reset_stats"):
                    state.issued.clear()
            return _json({"roles": list(state.roles), "fail": state.fail})
        if request.path == "/_identity/stats":
            with state.lock:
                return _json({"issued": list(state.issued)})
        if request.path != IDENTITY_PATH or request.method != "GET":
            return _json({"error": "not_found"}, 404)
        if request.headers.get("X-IDENTITY-HEADER") != state.secret:
            return _json({"statusCode": 400, "message": "X-IDENTITY-HEADER is missing or wrong"}, 400)
        resource = request.args.get("resource", "")
        if request.args.get("api-version") != "2019-08-01" or not resource:
            return _json({"statusCode": 400, "message": "api-version 2019-08-01 and resource are required"}, 400)
        if state.fail:
            return _json({"statusCode": 500, "message": "identity endpoint fault injected"}, 500)
        client_id = request.args.get("client_id") or LOCAL_APP_ID
        with state.lock:
            token, expires_on = issue_token(resource, roles=state.roles, app_id=client_id, lifetime=state.lifetime)
            token = "opaque-" + token.replace(".", "-") if state.opaque else token
            state.issued.append({"resource": resource, "client_id": client_id})
        return _json({"access_token": token, "expires_on": str(expires_on), "resource": resource,
                      "token_type": "Bearer", "client_id": client_id})
