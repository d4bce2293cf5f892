"""Who is calling, with Entra ID in front: the caller's bearer token, validated by the gateway itself, holding the
app role of the call.

App Service authentication (Easy Auth) validates the caller's bearer token, strips any X-MS-CLIENT-PRINCIPAL*
header the caller sent, forwards the token's claims as `X-MS-CLIENT-PRINCIPAL` (base64 of `{"auth_typ", "claims":
[{"typ", "val"}], "name_typ", "role_typ"}`) with the object id in `X-MS-CLIENT-PRINCIPAL-ID`, and passes the
`Authorization: Bearer` header through. The gateway does not rest on that alone (WEBSITE_AUTH_ENABLED says the
platform is on, not that this request went through it): it validates the token itself (shared.http.tokens), reads
the caller from the token's claims (oid, a GUID; appid/azp; roles), requires the platform's principal, where
present, to be the same caller, requires the app role of the call (`Role`, one per right: assignment is what
admits a caller), and narrows further by the allowed applications and principals.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from shared.answers.mapping import tenant_not_allowed_problem
from shared.answers.problems import Problem
from shared.defender.facts import Api
from shared.http.settings import HOME_TENANT, AuthMode, AuthSettings, Role, is_guid
from shared.http.tokens import IssuerKeys, KeysUnavailableError, SigningKeys, TokenRefusedError, validated_claims
from shared.validation import FieldError

CLIENT_PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
CLIENT_PRINCIPAL_ID_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
AUTHORIZATION_HEADER = "Authorization"
#: The object id claim: its long name after the platform's default claim mapping, or the token's own.
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
#: The calling application: `appid` in v1.0 tokens, `azp` in v2.0 tokens.
APPLICATION_ID_CLAIMS = ("appid", "azp")
#: A client principal is a few KiB at most; more is not the platform's.
MAX_PRINCIPAL_BYTES = 16 * 1024
#: The role each Defender operation needs.
ROLE_OF_API = MappingProxyType({Api.FILE_ALERTS: Role.ALERTS_READ, Api.FILE_INFO: Role.ALERTS_READ,
                                Api.CREATE_ALERT: Role.ALERTS_CREATE, Api.HUNTING: Role.HUNTING_READ})
#: /api/health: any of the gateway's roles (every caller the gateway serves may see whether it can).
ANY_ROLE = frozenset(Role)
#: How long a caller waits when the issuer's keys cannot be read.
KEYS_RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class Caller:
    """An Entra caller the gateway lets in."""

    #: The object id (oid claim, a GUID): whose operations these are.
    principal_id: str
    #: The client id of the calling application (appid / azp claim), when the token names one.
    application_id: str | None


class Refusal(StrEnum):
    """Why a caller is not let in."""

    #: No valid bearer token (or one the platform's principal contradicts).
    UNAUTHENTICATED = "unauthenticated"
    #: Authenticated, but without the app role of the call, or not an allowed application or principal.
    NOT_ALLOWED = "not-allowed"
    #: The issuer's signing keys cannot be read now: no token can be checked (503).
    KEYS_UNAVAILABLE = "keys-unavailable"


class CallerRefusedError(Exception):
    def __init__(self, refusal: Refusal, reason: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.reason = reason


class CallerCheck:
    """The caller check the edge runs on every request: with function keys no caller is named (""); with Entra ID
    the caller's object id, once its token and role are checked (CallerRefusedError). `keys`: where the issuer's
    signing keys come from (by default its published JWKS; the unit tests pass their own)."""

    def __init__(self, access: AuthSettings, keys: SigningKeys | None = None) -> None:
        self.access = access
        self.keys = keys if keys is not None or access.token is None else IssuerKeys(access.token)

    def caller(self, headers: Mapping[str, str], roles: Collection[Role]) -> str:
        if self.access.mode is not AuthMode.ENTRA:
            return ""
        assert self.keys is not None, "settings give Entra ID a token check"
        return entra_caller(headers, self.access, self.keys, roles).principal_id


def entra_caller(headers: Mapping[str, str], access: AuthSettings, keys: SigningKeys,
                 roles: Collection[Role]) -> Caller:
    """The caller the bearer token names, if its token is valid, it holds one of `roles` and the gateway lets it
    in; CallerRefusedError otherwise."""
    assert access.token is not None, "settings give Entra ID a token check"
    scheme, _, token = (_header(headers, AUTHORIZATION_HEADER) or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "no bearer token came with the request")
    try:
        claims = validated_claims(token.strip(), access.token, keys)
    except TokenRefusedError as error:
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, error.reason) from None
    except KeysUnavailableError:
        raise CallerRefusedError(Refusal.KEYS_UNAVAILABLE, "the token issuer's signing keys cannot be read") from None
    principal = str(claims["oid"]).lower()
    if not is_guid(principal):
        raise CallerRefusedError(Refusal.UNAUTHENTICATED, "the token's object id (oid) is not a GUID")
    _same_as_platform(headers, principal)
    application = next((str(claims[name]).lower() for name in APPLICATION_ID_CLAIMS if claims.get(name)), None)
    held = claims.get("roles")
    held_roles = {value for value in held if isinstance(value, str)} if isinstance(held, list) else set()
    if not held_roles & {role.value for role in roles}:
        needed = " or ".join(sorted(role.value for role in roles))
        raise CallerRefusedError(Refusal.NOT_ALLOWED, f"the token holds no app role this call needs ({needed})")
    if access.allowed_principals and principal not in access.allowed_principals:
        raise CallerRefusedError(Refusal.NOT_ALLOWED, "this principal (oid) is not in GATEWAY_ALLOWED_PRINCIPALS")
    if access.allowed_applications and application not in access.allowed_applications:
        raise CallerRefusedError(Refusal.NOT_ALLOWED,
                                 "this application (appid/azp) is not in GATEWAY_ALLOWED_APPLICATIONS")
    return Caller(principal, application)


def _same_as_platform(headers: Mapping[str, str], principal: str) -> None:
    """The platform's client principal, where it sent one, names the token's caller (defence in depth)."""
    raw = _header(headers, CLIENT_PRINCIPAL_HEADER)
    stated = _header(headers, CLIENT_PRINCIPAL_ID_HEADER)
    named = _first(_claims(raw), OBJECT_ID_CLAIMS) if raw else None
    if (raw and (named is None or named.strip().lower() != principal)) or \
            (stated is not None and stated.strip().lower() != principal):
        raise CallerRefusedError(Refusal.UNAUTHENTICATED,
                                 "the platform's client principal and the bearer token name different callers")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name) or headers.get(name.lower())


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
    """401 without a valid token, 403 for a caller without the role or not allowed, 503 while the issuer's keys
    cannot be read. Nothing was sent to Defender in any of them."""
    if error.refusal is Refusal.NOT_ALLOWED:
        return Problem(403, "caller-not-allowed", "Caller not allowed",
                       f"The caller's token is valid, but the gateway does not let it in: {error.reason}.")
    if error.refusal is Refusal.KEYS_UNAVAILABLE:
        return Problem(503, "token-keys-unavailable", "Token keys unavailable",
                       f"The gateway cannot check tokens now: {error.reason}. Nothing was sent to Defender; try "
                       "again later.", retry_after=KEYS_RETRY_AFTER_SECONDS)
    return Problem(401, "unauthenticated", "Authentication required",
                   "This gateway accepts only callers with an Entra ID bearer token for its audience: "
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
