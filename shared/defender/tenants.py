"""Many tenants (an MSSP's gateway): the customer tenants it may call Defender in, and a token for each.

The gateway's user-assigned managed identity is a federated identity credential of a multi-tenant app registration
in its own tenant; each customer tenant's administrator consented to that app and granted it the Defender app
roles. For a customer tenant the gateway asks its identity for an assertion (audience `api://AzureADTokenExchange`,
or the US Government one) and exchanges it at the tenant's token endpoint for an app-only Defender token: no secret
anywhere. Defender counts its limits per tenant and application, so each tenant has a budget of its own (the
principal a token names is `<tenant>|<app>`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.identity import ClientAssertionCredential

from shared.identifiers import GUID

#: A short name for a tenant, used in routes and messages instead of its id.
TENANT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", re.ASCII)
#: What a tenant that has not consented answers: the app has no service principal there (7000229; 700016, "not
#: installed by the administrator of the tenant"), or no consent for it (650052, 65001).
CONSENT_ERRORS = ("AADSTS7000229", "AADSTS700016", "AADSTS650052", "AADSTS65001")
#: GATEWAY_TENANT_CALLERS' word for "every listed tenant", and the gateway's own (home) tenant's name.
EVERY_TENANT = "*"
HOME_TENANT = "home"


@dataclass(frozen=True)
class Tenant:
    id: str
    #: Its short name, or its id when it has none.
    name: str


@dataclass(frozen=True)
class MultiTenant:
    """The multi-tenant app registration and the customer tenants it was consented in."""

    client_id: str
    tenants: tuple[Tenant, ...]
    #: The cloud's login endpoint (`https://login.microsoftonline.com`), or a loopback one locally.
    authority: str
    #: The audience of the managed identity's assertion for the exchange.
    exchange_audience: str

    def find(self, id_or_name: str) -> Tenant | None:
        """The listed tenant with this id or short name (any case), else None."""
        wanted = id_or_name.strip().lower()
        return next((tenant for tenant in self.tenants if wanted in (tenant.id, tenant.name)), None)

    def consent_url(self, tenant: Tenant, scope: str) -> str:
        """Where the tenant's administrator grants the app its permissions (Microsoft identity platform's admin
        consent, for `scope`: the Defender API's `.default`, or Microsoft Graph's for advanced hunting, whichever
        token the tenant refused). The app needs a redirect URI for it (docs/many-tenants.md);
        scripts/onboard-customer-tenant.sh does the same with the Azure CLI."""
        return f"{self.authority}/{tenant.id}/v2.0/adminconsent?client_id={self.client_id}&scope={scope}"


def parse_tenants(raw: str) -> tuple[Tenant, ...]:
    """`name=tenant-id` or `tenant-id` entries, comma-separated; ValueError says what is wrong."""
    tenants: list[Tenant] = []
    for entry in (part.strip() for part in raw.split(",") if part.strip()):
        name, _, tenant_id = entry.rpartition("=")
        tenant_id, name = tenant_id.strip().lower(), name.strip().lower()
        if not GUID.fullmatch(tenant_id):
            raise ValueError(f"{entry!r} does not end in a tenant id (a GUID)")
        if name and not TENANT_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a short name (1-32 lowercase letters, digits and inner hyphens)")
        tenant = Tenant(tenant_id, name or tenant_id)
        if any({tenant.id, tenant.name} & {other.id, other.name} for other in tenants):
            raise ValueError(f"{entry!r} repeats a tenant or a name")
        tenants.append(tenant)
    return tuple(tenants)


class TenantCredentials:
    """One ClientAssertionCredential per customer tenant (each caches its tokens), all asserting with `identity`."""

    def __init__(self, multi_tenant: MultiTenant, identity: TokenCredential) -> None:
        self.multi_tenant = multi_tenant
        self._identity = identity
        self._credentials: dict[str, TokenCredential] = {}
        self._lock = threading.Lock()

    def _assertion(self) -> str:
        return self._identity.get_token(self.multi_tenant.exchange_audience + "/.default").token

    def credential(self, tenant: Tenant) -> TokenCredential:
        with self._lock:
            found = self._credentials.get(tenant.id)
            if found is None:
                found = self._credentials[tenant.id] = ClientAssertionCredential(
                    tenant.id, self.multi_tenant.client_id, self._assertion, authority=self.multi_tenant.authority)
            return found
