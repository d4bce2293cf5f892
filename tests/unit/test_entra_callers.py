"""With Entra ID (GATEWAY_AUTH=entra) the gateway validates the caller's bearer token itself and requires the app role
of each call: the platform's client-principal headers alone let no one in, an empty allow-list does not mean
everyone, an object id must be a GUID, and health and the operator's routes run the same check."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import azure.functions as func
import jwt
import pytest
import requests

from localdev.functions_host import encode_principal
from localdev.signing import SigningKey
from shared.configuration import ConfigurationError
from shared.defender.facts import Api
from shared.http.settings import Role, token_check
from shared.http.tokens import METADATA_RETRY_SECONDS, IssuerKeys, KeysUnavailableError
from shared.settings import load_settings
from tests.support.inputs import VALID
from tests.support.rigs import GATEWAY_URL, UNIT_ENV, EdgeRig, bearer, make_edge, response_problem
from tests.support.scripted import alert_reply, alerts_reply

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
ENTRA_ENV = {"GATEWAY_AUTH": "entra", "WEBSITE_AUTH_ENABLED": "True"}
CALLER_OID = "5f9a1c2e-0000-4000-8000-00000000c0de"
CALLER_APP = "0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"
EVERY_ROLE = tuple(role.value for role in Role)
ROLE_OF = {Api.FILE_ALERTS: Role.ALERTS_READ.value, Api.CREATE_ALERT: Role.ALERTS_CREATE.value}


def token(roles: tuple[str, ...] = EVERY_ROLE, oid: str = CALLER_OID, **claims: Any) -> dict[str, str]:
    return bearer(oid, CALLER_APP, roles, **claims)


def principal_headers(oid: str = CALLER_OID, app: str = CALLER_APP) -> dict[str, str]:
    """What App Service authentication forwards for an app-only token of `app` (object id `oid`): what a caller
    could also send itself if nothing stood in front."""
    claims = {"http://schemas.microsoft.com/identity/claims/objectidentifier": oid, "appid": app,
              "aud": "api://gateway", "roles": Role.ALERTS_READ.value}
    return {"X-MS-CLIENT-PRINCIPAL": encode_principal(claims), "X-MS-CLIENT-PRINCIPAL-ID": oid}


def call(rig: EdgeRig, api: Api, headers: dict[str, str], **kwargs: Any) -> func.HttpResponse:
    if api is Api.FILE_ALERTS:
        return rig.get_alerts(kwargs.pop("sha1", SHA1), headers=headers)
    return rig.create(kwargs.pop("body", VALID), headers=headers)


def refused(response: func.HttpResponse, status: int, kind: str) -> dict[str, Any]:
    document = response_problem(response, status)
    assert document["type"] == f"urn:mde-alert-gateway:problem:{kind}", document
    return document


def nothing_spent(rig: EdgeRig) -> None:
    assert rig.transport.calls == [] and rig.store.writes == []


def unsigned(claims: dict[str, Any]) -> str:
    """A token with the same claims, signed with HS256 (algorithm confusion) instead of the issuer's RS256 key."""
    return jwt.encode(claims, "a-shared-secret-anyone-could-pick-32+", algorithm="HS256")


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_entra_mode_needs_a_bearer_token_it_validates_itself(api: Api) -> None:
    rig = make_edge([alerts_reply() if api is Api.FILE_ALERTS else alert_reply()], settings_env=ENTRA_ENV)
    now = int(time.time())
    other_key = SigningKey.generate()
    alg_none = jwt.encode({"oid": CALLER_OID, "roles": list(EVERY_ROLE)}, "", algorithm="none")
    valid_claims = json.loads(base64.urlsafe_b64decode(token()["Authorization"].split(".")[1] + "=="))
    for headers in (
            {},
            principal_headers(),  # the platform's headers alone: WEBSITE_AUTH_ENABLED is no proof they are its own
            {"Authorization": "Basic dXNlcjpwdw=="},
            {"Authorization": "Bearer not-a-jwt"},
            bearer(CALLER_OID, CALLER_APP, EVERY_ROLE, key=other_key),  # not the issuer's key
            {"Authorization": "Bearer " + unsigned(valid_claims)},
            {"Authorization": "Bearer " + alg_none},
            token(exp=now - 3600, iat=now - 7200, nbf=now - 7200),  # expired
            token(aud="api://someone-else"),
            token(iss="https://login.microsoftonline.com/11111111-1111-4111-8111-111111111111/v2.0"),
            token(oid=""),  # an empty oid is also the "no caller" of function keys
            token(oid="not-a-guid"),
            {**token(), **principal_headers(oid="11111111-1111-4111-8111-111111111111")}):  # the platform disagrees
        response = call(rig, api, headers)
        document = refused(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "Entra ID bearer token" in document["detail"]
        assert "eyJ" not in document["detail"]  # no token quoted back
    # Checked before the input: a bad request without a token is still 401.
    assert call(rig, api, {}, **({"sha1": "bad"} if api is Api.FILE_ALERTS else {"body": b"{"})).status_code == 401
    nothing_spent(rig)
    assert call(rig, api, {**token((ROLE_OF[api],)), **principal_headers()}).status_code == 200


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_a_caller_needs_the_app_role_of_the_call_even_with_empty_allow_lists(api: Api) -> None:
    rig = make_edge([alerts_reply() if api is Api.FILE_ALERTS else alert_reply()], settings_env=ENTRA_ENV)
    others = tuple(role for role in EVERY_ROLE if role != ROLE_OF[api])
    for roles in ((), others, ("Alert.ReadWrite.All",)):
        document = refused(call(rig, api, token(roles)), 403, "caller-not-allowed")
        assert ROLE_OF[api] in document["detail"]
    nothing_spent(rig)
    assert call(rig, api, token((ROLE_OF[api],))).status_code == 200


@pytest.mark.parametrize(("setting", "value"), [
    ("GATEWAY_ALLOWED_PRINCIPALS", "22222222-2222-4222-8222-222222222222"),
    ("GATEWAY_ALLOWED_APPLICATIONS", "33333333-3333-4333-8333-333333333333")])
def test_the_allow_lists_narrow_further(setting: str, value: str) -> None:
    rig = make_edge([alerts_reply()], settings_env={**ENTRA_ENV, setting: f"{value}, {CALLER_OID}, {CALLER_APP}"})
    assert rig.get_alerts(SHA1, headers=token()).status_code == 200
    rig = make_edge([], settings_env={**ENTRA_ENV, setting: value})
    document = refused(rig.get_alerts(SHA1, headers=token()), 403, "caller-not-allowed")
    assert setting in document["detail"]
    nothing_spent(rig)


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> func.HttpRequest:
    return func.HttpRequest(method, f"{GATEWAY_URL}{path}", headers=headers, body=body)


def test_health_runs_the_caller_check() -> None:
    rig = make_edge(settings_env=ENTRA_ENV)
    refused(rig.edge.health(request("GET", "/api/health", {})), 401, "unauthenticated")
    refused(rig.edge.health(request("GET", "/api/health", principal_headers())), 401, "unauthenticated")
    refused(rig.edge.health(request("GET", "/api/health", token(()))), 403, "caller-not-allowed")
    for role in Role:
        answer = rig.edge.health(request("GET", "/api/health", token((role.value,))))
        assert answer.status_code == 200 and json.loads(answer.get_body())["status"] == "healthy"


def test_the_operators_routes_need_gateway_operate() -> None:
    rig = make_edge(settings_env=ENTRA_ENV)
    def page(headers: dict[str, str]) -> func.HttpResponse:
        return rig.edge.operator_page(request("GET", "/api/operator", headers))

    def state(headers: dict[str, str]) -> func.HttpResponse:
        return rig.edge.operator_state(request("GET", "/api/operator/state", headers))

    def redrive(headers: dict[str, str]) -> func.HttpResponse:
        return rig.edge.operator_redrive(request("POST", "/api/operator/redrive",
                                                 {**headers, "Content-Type": "application/json"},
                                                 b'{"queue": "x", "id": "y"}'))

    views = (page, state, redrive)
    playbook = tuple(role for role in EVERY_ROLE if role != Role.OPERATE.value)
    for view in views:
        refused(view({}), 401, "unauthenticated")
        assert Role.OPERATE.value in refused(view(token(playbook)), 403, "caller-not-allowed")["detail"]
        assert view(token((Role.OPERATE.value,))).status_code not in (401, 403)


def test_reading_an_operation_needs_operations_read() -> None:
    rig = make_edge([alert_reply()], settings_env=ENTRA_ENV)
    accepted = rig.create(VALID, headers={**token((Role.ALERTS_CREATE.value,)), "Prefer": "respond-async"})
    assert accepted.status_code == 202
    operation_id = accepted.headers["Location"].rsplit("/", 1)[1]

    def read(headers: dict[str, str]) -> func.HttpResponse:
        return rig.edge.operation_status(request("GET", f"/api/operations/{operation_id}", headers), operation_id)

    refused(read(token((Role.ALERTS_CREATE.value,))), 403, "caller-not-allowed")
    assert read(token((Role.OPERATIONS_READ.value,))).status_code == 202
    assert read(token((Role.OPERATIONS_READ.value,), oid="22222222-2222-4222-8222-222222222222")).status_code == 404


def test_keys_that_cannot_be_read_are_503_and_spend_nothing() -> None:
    rig = make_edge([], settings_env=ENTRA_ENV)

    class Unreachable:
        def key_for(self, token: str) -> Any:
            raise KeysUnavailableError

    rig.edge.callers.keys = Unreachable()
    response = rig.get_alerts(SHA1, headers=token())
    refused(response, 503, "token-keys-unavailable")
    assert response.headers["Retry-After"] == "30"
    nothing_spent(rig)


def test_function_key_mode_names_no_caller_and_asks_for_no_token() -> None:
    rig = make_edge([alerts_reply()])
    assert rig.get_alerts(SHA1).status_code == 200
    assert rig.edge.callers.caller({}, {Role.OPERATE}) == ""


@pytest.mark.parametrize("unset", ["GATEWAY_TOKEN_ISSUER", "GATEWAY_TOKEN_AUDIENCES"])
def test_entra_mode_needs_the_issuer_and_audiences(unset: str) -> None:
    env = {**UNIT_ENV, **ENTRA_ENV}
    env.pop(unset)
    with pytest.raises(ConfigurationError) as raised:
        load_settings(env)
    assert [problem.setting for problem in raised.value.problems] == [unset]


@pytest.mark.parametrize("issuer", [
    "http://login.microsoftonline.com/a839b112-1253-6432-9bf6-94542403f21c/v2.0",
    "https://login.microsoftonline.com/a839b112-1253-6432-9bf6-94542403f21c",  # v1.0 metadata, another issuer
    "https://sts.windows.net/a839b112-1253-6432-9bf6-94542403f21c/",
    "https://login.microsoftonline.com/common/v2.0",  # any tenant's tokens
    "https://evil.example/a839b112-1253-6432-9bf6-94542403f21c/v2.0",
    "https://login.microsoftonline.com.evil.example/a839b112-1253-6432-9bf6-94542403f21c/v2.0",
])
def test_the_issuer_is_an_entra_tenants_v2_issuer(issuer: str) -> None:
    with pytest.raises(ConfigurationError):
        token_check(issuer, "api://gateway")
    assert token_check("https://login.microsoftonline.us/a839b112-1253-6432-9bf6-94542403f21c/v2.0/",
                       "a, b").audiences == {"a", "b"}
    assert token_check("https://127.0.0.1:8443/a839b112-1253-6432-9bf6-94542403f21c/v2.0", "a").metadata_url == \
        "https://127.0.0.1:8443/a839b112-1253-6432-9bf6-94542403f21c/v2.0/.well-known/openid-configuration"


class FakeMetadata:
    """The issuer's OpenID metadata endpoint as `requests.get` would reach it (no socket): a scripted answer."""

    def __init__(self, document: Any | None) -> None:
        self.document = document
        self.asked = 0

    def __call__(self, url: str, **_: Any) -> Any:
        self.asked += 1
        if self.document is None:
            raise requests.ConnectionError("issuer unreachable")
        answer = requests.Response()
        answer.status_code, answer._content = 200, json.dumps(self.document).encode()
        return answer


def test_unreadable_or_foreign_issuer_metadata_is_503_and_not_asked_for_on_every_call() -> None:
    check = token_check(UNIT_ENV["GATEWAY_TOKEN_ISSUER"], "api://gateway")
    now = [1000.0]
    unreachable = FakeMetadata(None)
    keys = IssuerKeys(check, get=unreachable, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(KeysUnavailableError):
            keys.key_for("a.b.c")
    assert unreachable.asked == 1  # callers heard 503 at once, without each waiting for the issuer
    now[0] += METADATA_RETRY_SECONDS
    with pytest.raises(KeysUnavailableError):
        keys.key_for("a.b.c")
    assert unreachable.asked == 2
    for document in ({"issuer": "https://login.microsoftonline.com/other/v2.0", "jwks_uri": "https://x.example/k"},
                     {"issuer": check.issuer, "jwks_uri": "http://plain.example/keys"}, ["not", "an", "object"]):
        with pytest.raises(KeysUnavailableError):  # another issuer's keys, or keys over plain http: none
            IssuerKeys(check, get=FakeMetadata(document)).key_for("a.b.c")


def test_an_issuer_key_set_with_no_usable_key_is_503_not_500() -> None:
    """The issuer's JWKS answered, but with no key PyJWT can use: no token can be checked now (503 with Retry-After,
    as for keys that cannot be read), not an error of the gateway's own (500)."""
    check = token_check(UNIT_ENV["GATEWAY_TOKEN_ISSUER"], "api://gateway")
    keys = IssuerKeys(check, get=FakeMetadata({"issuer": check.issuer, "jwks_uri": "https://issuer.example/keys"}))
    client = jwt.PyJWKClient("https://issuer.example/keys")
    client.fetch_data = lambda: {"keys": []}  # type: ignore[method-assign]  # what the issuer published: no key
    keys._client = client
    token = jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": "some-key"})
    with pytest.raises(KeysUnavailableError):
        keys.key_for(token)
