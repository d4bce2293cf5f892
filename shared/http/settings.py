"""Who lets callers in: values read and checked by shared.settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from shared.defender.tenants import EVERY_TENANT as EVERY_TENANT
from shared.defender.tenants import HOME_TENANT as HOME_TENANT


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
