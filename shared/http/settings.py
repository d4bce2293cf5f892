"""Who lets callers in: values read and checked by shared.settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class AuthMode(StrEnum):
    """Who lets callers in: the Functions host's keys, or App Service authentication (Entra ID)."""

    FUNCTION_KEY = "function-key"
    ENTRA = "entra"


#: GATEWAY_TENANT_CALLERS' word for "every listed tenant".
EVERY_TENANT = "*"


@dataclass(frozen=True)
class TenantCallers:
    """Which Entra callers (object ids) may act for which customer tenants (ids); the home tenant is every
    allowed caller's, as before."""

    tenants_by_caller: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    def allows(self, caller: str, tenant_id: str) -> bool:
        tenants = self.tenants_by_caller.get(caller.lower(), frozenset())
        return EVERY_TENANT in tenants or tenant_id in tenants


@dataclass(frozen=True)
class AuthSettings:
    """Who lets callers in, and, with Entra ID, whom the gateway itself lets through (defence in depth: the
    platform's allowed applications and principals, checked again on the caller's claims)."""

    mode: AuthMode
    #: Client ids (appid / azp claim) that may call; empty: any the platform let in.
    allowed_applications: frozenset[str] = frozenset()
    #: Object ids (oid claim) that may call; empty: any the platform let in.
    allowed_principals: frozenset[str] = frozenset()
    #: With many tenants: which callers may act for which customer tenant (GATEWAY_TENANT_CALLERS).
    tenant_callers: TenantCallers = field(default_factory=TenantCallers)
