"""Who is calling, with Entra ID in front: the platform's client principal, checked again by the gateway.

App Service authentication (Easy Auth) validates the caller's bearer token, strips any
X-MS-CLIENT-PRINCIPAL* header the caller sent, and forwards the token's claims as
`X-MS-CLIENT-PRINCIPAL` (base64 of `{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}`)
with the object id in `X-MS-CLIENT-PRINCIPAL-ID`. Those headers mean something only while that
authentication is on, which settings check at start-up (WEBSITE_AUTH_ENABLED); here the caller is
read from the claims, and the allowed applications and principals are checked again (defence in
depth: a portal change to the platform's policy alone does not open the gateway).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from shared.answers.mapping import tenant_not_allowed_problem
from shared.answers.problems import Problem
from shared.http.settings import HOME_TENANT, AuthMode, AuthSettings
from shared.validation import FieldError

CLIENT_PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
CLIENT_PRINCIPAL_ID_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
#: The object id claim: its long name after the platform's default claim mapping, or the token's own.
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
#: The calling application: `appid` in v1.0 tokens, `azp` in v2.0 tokens.
APPLICATION_ID_CLAIMS = ("appid", "azp")
#: A client principal is a few KiB at most; more is not the platform's.
MAX_PRINCIPAL_BYTES = 16 * 1024


@dataclass(frozen=True)
class Caller:
    """An Entra caller the gateway lets in."""

    #: The object id (oid claim): whose operations these are.
    principal_id: str
    #: The client id of the calling application (appid / azp claim), when the token names one.
    application_id: str | None


class Refusal(StrEnum):
    """Why a caller is not let in."""

    #: No (readable) client principal: the request did not come through the platform's authentication.
    UNAUTHENTICATED = "unauthenticated"
    #: Authenticated, but not an allowed application or principal.
    NOT_ALLOWED = "not-allowed"


class CallerRefusedError(Exception):
    def __init__(self, refusal: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.reason = reason


def entra_caller(headers: Mapping[str, str], access: AuthSettings) -> Caller:
    """The caller the platform authenticated, if the gateway lets it in; CallerRefusedError otherwise."""
    claims = _claims(headers.get(CLIENT_PRINCIPAL_HEADER) or headers.get(CLIENT_PRINCIPAL_HEADER.lower()))
    principal = _first(claims, OBJECT_ID_CLAIMS)
    if principal is None:
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "the client principal names no object id (oid)")
    principal = principal.lower()
    stated = headers.get(CLIENT_PRINCIPAL_ID_HEADER) or headers.get(CLIENT_PRINCIPAL_ID_HEADER.lower())
    if stated is not None and stated.strip().lower() != principal:
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "the client principal's id and claims disagree")
    application = _first(claims, APPLICATION_ID_CLAIMS)
    application = application.lower() if application else None
    if access.allowed_principals and principal not in access.allowed_principals:
        raise CallerRefusedError(Refusal.NOT_ALLOWED, "this principal (oid) is not in GATEWAY_ALLOWED_PRINCIPALS")
    if access.allowed_applications and application not in access.allowed_applications:
        raise CallerRefusedError(Refusal.NOT_ALLOWED,
                                 "this application (appid/azp) is not in GATEWAY_ALLOWED_APPLICATIONS")
    return Caller(principal, application)


def encode_principal(claims: Mapping[str, str], *, auth_type: str = "aad") -> str:
    """The X-MS-CLIENT-PRINCIPAL value the platform sends for these claims (for the local host and tests)."""
    document = {"auth_typ": auth_type, "claims": [{"typ": typ, "val": val} for typ, val in claims.items()],
                "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
                "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
    return base64.b64encode(json.dumps(document).encode()).decode()


def _claims(raw: str | None) -> dict[str, list[str]]:
    if not raw:
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "no client principal came with the request")
    if len(raw) > MAX_PRINCIPAL_BYTES:
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "the client principal is too large")
    try:
        document = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "the client principal is not base64 JSON") from None
    entries = document.get("claims") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "the client principal has no claims")
    claims: dict[str, list[str]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("typ"), str) and isinstance(entry.get("val"), str):
            claims.setdefault(entry["typ"], []).append(entry["val"])
    return claims


def _first(claims: Mapping[str, list[str]], types: tuple[str, ...]) -> str | None:
    for typ in types:
        values = claims.get(typ)
        if values:
            return values[0]
    return None


def caller_problem(error: CallerRefusedError) -> Problem:
    """401 for a request that did not come through the platform's authentication, 403 for a caller not allowed."""
    if error.refusal is Refusal.NOT_ALLOWED:
        return Problem(403, "caller-not-allowed", "Caller not allowed",
                       f"The platform authenticated the caller, but the gateway does not let it in: {error.reason}.")
    return Problem(401, "unauthenticated", "Authentication required",
                   "This gateway accepts only callers signed in through Entra ID (App Service authentication): "
                   f"{error.reason}.", headers=MappingProxyType({"WWW-Authenticate": "Bearer"}))


class TenantRefusedError(Exception):
    """A customer tenant the gateway does not serve (404), or that this caller may not act for (403)."""

    def __init__(self, tenant: str, *, listed: bool) -> None:
        super().__init__(tenant)
        self.tenant = tenant
        #: False: the gateway serves no such tenant; True: it does, but not for this caller.
        self.listed = listed


def may_act(access: AuthSettings, caller: str, tenant: str | None) -> bool:
    """Whether `caller` may act for `tenant` (an id; None: the home tenant): with Entra ID as GATEWAY_TENANT_CALLERS
    says; with function keys every key holder may."""
    return access.mode is not AuthMode.ENTRA or access.tenant_callers.allows(caller, tenant)


def check_tenant(access: AuthSettings, caller: str, tenant: str | None, named: str | None = None) -> None:
    """TenantRefusedError (403) unless `caller` may act for `tenant` (may_act); the answer names it as `named` (what
    the caller asked for), else by its id or `home`."""
    if not may_act(access, caller, tenant):
        raise TenantRefusedError(named or tenant or HOME_TENANT, listed=True)


def tenant_problem(error: TenantRefusedError) -> Problem:
    """Before anything is spent: a tenant not in MDE_TENANTS is 404, one the caller may not use 403."""
    if not error.listed:
        return Problem(404, "tenant-not-found", "Tenant not found",
                       f"The gateway serves no customer tenant {error.tenant!r} (MDE_TENANTS lists the tenants, by "
                       "id or short name). Nothing was sent to Defender.", errors=(FieldError("route.tenant",
                                                                                             "is not a tenant of "
                                                                                             "this gateway"),))
    return tenant_not_allowed_problem(error.tenant)
