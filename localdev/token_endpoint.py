"""A local Entra ID token endpoint for many tenants: the exchange azure-identity's ClientAssertionCredential makes,
over TLS on loopback (azure-identity takes only an https authority), with a test certificate authority (trustme)
whose certificate the local host trusts through REQUESTS_CA_BUNDLE.

    POST /{tenant}/oauth2/v2.0/token   grant_type=client_credentials, client_id=<the multi-tenant app>,
                                       client_assertion_type=...jwt-bearer, client_assertion=<the identity's token
                                       for api://AzureADTokenExchange>, scope=<resource>/.default

It checks what Entra ID checks (the assertion is the trusted managed identity's, for the exchange audience, from
the app's federated credential; the app is consented in the tenant) and issues an app-only token of the tenant
(`tid`) with the Defender roles that tenant's administrator granted. A tenant that has not consented answers as
Entra ID does: `invalid_client`, AADSTS7000229.

It is also the issuer of the gateway's own callers' tokens, published as Entra ID publishes a tenant's keys:

    GET /{tenant}/v2.0/.well-known/openid-configuration   OpenID metadata: issuer {url}/{tenant}/v2.0, jwks_uri
    GET /{tenant}/discovery/v2.0/keys                     the JWKS: the endpoint's RS256 key (a fresh one per start)

and the tokens it signs with that key are app-only v2.0 access tokens for the gateway (`caller_token`, or
POST /_token/callers {"oid", "appid", "roles": [...], "aud", "tenant"?} for `make run`): what a playbook's managed
identity gets for the gateway's audience, with the app roles assigned to it.

Admin: POST /_token/tenants {"<tenant id>": ["Alert.Read.All", ...] or null (not consented)}; GET /_token/issued.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import trustme
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from localdev.servers import QuietHandler, RunningServer
from localdev.signing import SigningKey, caller_claims
from localdev.tokens import ALL_ROLES, LOCAL_TENANT_ID, issue_token, read_claims

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class TokenEndpoint:
    """The WSGI app. `client_id`: the multi-tenant app; `subjects`: the managed identities its federated credentials
    trust (the appid of the local identity endpoint's tokens); `audience`: the exchange audience."""

    client_id: str
    subjects: set[str]
    audience: str = "api://AzureADTokenExchange"
    #: Consented tenants and the Defender roles granted there.
    tenants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    issued: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The key the gateway's callers' tokens are signed with, published as each tenant's JWKS.
    signing_key: SigningKey = field(default_factory=SigningKey.generate)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        if request.path == "/_token/tenants" and request.method == "POST":
            payload = request.get_json(force=True, silent=True) or {}
            with self.lock:
                for tenant, roles in payload.items():
                    if roles is None:
                        self.tenants.pop(str(tenant).lower(), None)
                    else:
                        self.tenants[str(tenant).lower()] = tuple(roles)
            return _json({"tenants": {tenant: list(roles) for tenant, roles in self.tenants.items()}})
        if request.path == "/_token/subjects" and request.method == "POST":
            payload = request.get_json(force=True, silent=True) or []
            with self.lock:
                self.subjects.update(str(subject).lower() for subject in payload)
            return _json({"subjects": sorted(self.subjects)})
        if request.path == "/_token/issued" and request.method == "GET":
            with self.lock:
                return _json({"issued": list(self.issued)})
        if request.path == "/_token/callers" and request.method == "POST":
            payload = request.get_json(force=True, silent=True) or {}
            token = self.caller_token(request.host_url.rstrip("/"), str(payload.get("oid", "")),
                                      app_id=str(payload.get("appid", "")), roles=tuple(payload.get("roles") or ()),
                                      audience=str(payload.get("aud", "")),
                                      tenant=str(payload.get("tenant") or LOCAL_TENANT_ID))
            return _json({"token_type": "Bearer", "access_token": token})
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            base = f"{request.host_url.rstrip('/')}/{parts[0]}"
            return _json({"issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/v2.0/keys",
                          "token_endpoint": f"{base}/oauth2/v2.0/token", "response_types_supported": ["token"],
                          "id_token_signing_alg_values_supported": ["RS256"]})
        if request.method == "GET" and parts[1:] == ["discovery", "v2.0", "keys"]:
            return _json(self.signing_key.jwks())
        if request.method != "POST" or len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            return _json({"error": "not_found"}, 404)
        return self._token(parts[0].lower(), request.form)

    def caller_token(self, base_url: str, object_id: str, *, app_id: str, roles: tuple[str, ...], audience: str,
                     tenant: str = LOCAL_TENANT_ID, **claims: Any) -> str:
        """An app-only v2.0 access token of `tenant`'s issuer at `base_url` for the gateway (`audience`), signed
        with the key the issuer's JWKS publishes (`claims` override any claim)."""
        return self.signing_key.sign({**caller_claims(f"{base_url}/{tenant}/v2.0", audience, object_id,
                                                      app_id=app_id, roles=roles, tenant_id=tenant), **claims})

    def _token(self, tenant: str, form: Any) -> Response:
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != JWT_BEARER:
            return _error("unsupported_grant_type", "AADSTS70003: only client credentials with an assertion")
        if form.get("client_id") != self.client_id:
            return _error("unauthorized_client", f"AADSTS700016: Application with identifier "
                                                 f"'{form.get('client_id')}' was not found in the directory.")
        try:
            assertion = read_claims(str(form.get("client_assertion") or ""))
        except jwt.InvalidTokenError:
            return _error("invalid_client", "AADSTS700024: Client assertion is not valid.")
        if assertion.get("aud") != self.audience or str(assertion.get("appid")).lower() not in self.subjects:
            return _error("invalid_client", "AADSTS70021: No matching federated identity record found for presented "
                                            "assertion.")
        scope = str(form.get("scope") or "")
        if not scope.endswith("/.default"):
            return _error("invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
        with self.lock:
            roles = self.tenants.get(tenant)
            if roles is None:
                return _error("invalid_client", f"AADSTS7000229: The client application {self.client_id} is missing "
                                                f"service principal in the tenant {tenant}.")
            self.issued.append({"tenant": tenant, "scope": scope})
        token, _ = issue_token(scope.removesuffix("/.default"), roles=roles, tenant_id=tenant,
                               app_id=self.client_id)
        return _json({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")


def _error(error: str, description: str) -> Response:
    return _json({"error": error, "error_description": description, "error_codes": []}, 400)


@dataclass
class TlsServer:
    """The endpoint served over TLS, and the certificate authority to trust it with."""

    running: RunningServer
    ca_bundle: Path
    app: TokenEndpoint
    _directory: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.running.port}"

    def issuer(self, tenant: str = LOCAL_TENANT_ID) -> str:
        """The v2.0 issuer of `tenant` here (GATEWAY_TOKEN_ISSUER of a local host in Entra mode)."""
        return f"{self.url}/{tenant}/v2.0"

    def caller_token(self, object_id: str, *, app_id: str, roles: tuple[str, ...], audience: str,
                     **claims: Any) -> str:
        """A token of the home tenant's issuer here for a caller of the gateway (TokenEndpoint.caller_token)."""
        return self.app.caller_token(self.url, object_id, app_id=app_id, roles=roles, audience=audience, **claims)

    def stop(self) -> None:
        self.running.stop()
        self._directory.cleanup()


def serve_token_endpoint(app: TokenEndpoint, port: int = 0) -> TlsServer:
    """`app` on https://127.0.0.1:port (0: a free port), its certificate issued by a fresh test CA."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    directory = tempfile.TemporaryDirectory(prefix="mde-gateway-ca-")
    ca_bundle = Path(directory.name) / "local-ca.pem"
    authority.cert_pem.write_to_path(str(ca_bundle))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, name="tokens", daemon=True)
    thread.start()
    return TlsServer(RunningServer(server, thread), ca_bundle, app, directory)


__all__ = ["ALL_ROLES", "TlsServer", "TokenEndpoint", "serve_token_endpoint"]
