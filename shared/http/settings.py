"""Who lets callers in: values read and checked by shared.settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import SplitResult

from shared.configuration import ConfigurationError, shown_url, split_url
from shared.defender.clouds import PUBLIC_LOGIN, US_GOVERNMENT_LOGIN, is_loopback
from shared.defender.tenants import EVERY_TENANT as EVERY_TENANT
from shared.defender.tenants import HOME_TENANT as HOME_TENANT
from shared.identifiers import GUID


class AuthMode(StrEnum):
    """Who lets callers in: the Functions host's keys, or App Service authentication (Entra ID)."""

    FUNCTION_KEY = "function-key"
    ENTRA = "entra"


@dataclass(frozen=True)
class TenantCallers:
    """Which Entra callers (object ids) may act for which customer tenants (ids). The home tenant is every allowed
    caller's, as before, unless the caller is listed here: then only if its entry names `home` (a playbook confined
    to a customer does not act in the MSSP's own tenant)."""

    tenants_by_caller: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    def allows(self, caller: str, tenant_id: str | None) -> bool:
        """Whether `caller` may act for the customer tenant `tenant_id` (None: the home tenant)."""
        tenants = self.tenants_by_caller.get(caller.lower())
        if tenant_id is None:
            return tenants is None or HOME_TENANT in tenants
        return tenants is not None and (EVERY_TENANT in tenants or tenant_id in tenants)


class Role(StrEnum):
    """The gateway's app roles (on its app registration, infra/entra-auth.bicep): with Entra ID a caller's token
    must hold the role of what it asks for, one right each. Defined here once; the Bicep and the docs name them."""

    #: GET files/{hash}/alerts (the home tenant's and a customer tenant's).
    ALERTS_READ = "Alerts.Read"
    #: POST alerts/CreateAlertByReference.
    ALERTS_CREATE = "Alerts.Create"
    #: POST advancedqueries/run, advancedhunting/run and security/runHuntingQuery (advanced hunting through Graph).
    HUNTING_READ = "Hunting.Read"
    #: GET operations/{id} (its own operations only).
    OPERATIONS_READ = "Operations.Read"
    #: The operator page, its state and the re-drive (which also need the admin key).
    OPERATE = "Gateway.Operate"


#: Where an Entra ID v2.0 issuer may be: the clouds' login endpoints, or https on loopback (the local token endpoint).
ENTRA_LOGINS = (PUBLIC_LOGIN, US_GOVERNMENT_LOGIN)


def is_guid(value: str) -> bool:
    """A GUID in its canonical lower-case form (object ids, client ids, tenant ids)."""
    return bool(GUID.fullmatch(value))


@dataclass(frozen=True)
class TokenCheck:
    """What the gateway checks of a caller's bearer token itself (not only the platform): signed by a key the
    issuer publishes (its OpenID metadata's jwks_uri), from `issuer`, for one of `audiences`, unexpired."""

    #: The v2.0 issuer of the gateway's tenant: `<login endpoint>/<tenant id>/v2.0`.
    issuer: str
    #: The token audiences accepted (the gateway app's client id; its App ID URI).
    audiences: frozenset[str]

    @property
    def metadata_url(self) -> str:
        """Where the issuer publishes its OpenID metadata (OpenID Connect Discovery 1.0)."""
        return f"{self.issuer}/.well-known/openid-configuration"


def _is_issuer(parts: SplitResult) -> bool:
    origin = f"{parts.scheme}://{parts.netloc}"
    tenant, _, version = parts.path.strip("/").partition("/")
    return (parts.scheme == "https" and (origin in ENTRA_LOGINS or is_loopback(parts.hostname or ""))
            and not parts.query and not parts.fragment and not parts.username and is_guid(tenant)
            and version == "v2.0")


def token_check(issuer: str | None, audiences: str | None) -> TokenCheck:
    """GATEWAY_TOKEN_ISSUER and GATEWAY_TOKEN_AUDIENCES, checked: an issuer on an Entra login endpoint (or https
    loopback) with a tenant id, and at least one audience."""
    raw = (issuer or "").strip().rstrip("/")
    parts = split_url(raw)
    if parts is None or not _is_issuer(parts):
        raise ConfigurationError(
            "GATEWAY_TOKEN_ISSUER must be the v2.0 issuer of the gateway's tenant, "
            f"{PUBLIC_LOGIN}/<tenant id>/v2.0 (or {US_GOVERNMENT_LOGIN}/...; https loopback locally), "
            f"got {shown_url(raw)}.", setting="GATEWAY_TOKEN_ISSUER")
    accepted = frozenset(value.strip() for value in (audiences or "").split(",") if value.strip())
    if not accepted:
        raise ConfigurationError("GATEWAY_TOKEN_AUDIENCES must name the token audiences the gateway accepts (its "
                                 "app registration's client id, and its App ID URI).",
                                 setting="GATEWAY_TOKEN_AUDIENCES")
    return TokenCheck(raw, accepted)


@dataclass(frozen=True)
class AuthSettings:
    """Who lets callers in, and, with Entra ID, whom the gateway itself lets through: a bearer token it validates
    itself (`token`), holding the app role of the call (`Role`), and, narrowing further, the allowed applications
    and principals (the platform's lists, checked again on the token's claims)."""

    mode: AuthMode
    #: Client ids (appid / azp claim) that may call; empty: any holding the role.
    allowed_applications: frozenset[str] = frozenset()
    #: Object ids (oid claim) that may call; empty: any holding the role.
    allowed_principals: frozenset[str] = frozenset()
    #: With Entra ID: the bearer token's own check (issuer, audiences).
    token: TokenCheck | None = None
    #: With many tenants: which callers may act for which customer tenant (GATEWAY_TENANT_CALLERS).
    tenant_callers: TenantCallers = field(default_factory=TenantCallers)
