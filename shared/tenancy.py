"""The many-tenants settings (MDE_TENANTS, MDE_MULTITENANT_CLIENT_ID, MDE_AUTHORITY_HOST, GATEWAY_TENANT_CALLERS),
read and checked with the others by shared.settings: a bad list stops the gateway as any bad setting does."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from shared.catalogue import setting
from shared.configuration import ConfigurationError, showable, shown, shown_url, split_url
from shared.defender.clouds import Cloud, is_loopback
from shared.defender.tenants import MultiTenant, parse_tenants
from shared.http.settings import EVERY_TENANT, HOME_TENANT, TenantCallers
from shared.identifiers import GUID


def load_multi_tenant(env: Mapping[str, str], cloud: Cloud) -> MultiTenant | None:
    """None without MDE_TENANTS (the home tenant alone); ConfigurationError naming the bad setting."""
    raw = setting(env, "MDE_TENANTS") or ""
    try:
        tenants = parse_tenants(raw)
    except ValueError as error:  # its message repeats the entry: only when the list may be shown
        reason = (f"MDE_TENANTS: {error}." if showable(raw) else "MDE_TENANTS must list `<short name>=<tenant id>` "
                  f"or tenant ids, comma-separated, got {shown(raw)}.")
        raise ConfigurationError(reason, setting="MDE_TENANTS") from None
    if not tenants:
        return None
    client_id = (setting(env, "MDE_MULTITENANT_CLIENT_ID") or "").lower()
    if not GUID.fullmatch(client_id):
        raise ConfigurationError("MDE_MULTITENANT_CLIENT_ID must be the client id (a GUID) of the multi-tenant app "
                                 "registration the gateway's identity is a federated credential of.",
                                 setting="MDE_MULTITENANT_CLIENT_ID")
    if not setting(env, "AZURE_CLIENT_ID") or (setting(env, "MDE_CREDENTIAL") or "").lower() != "managed-identity":
        raise ConfigurationError("MDE_TENANTS needs a user-assigned managed identity (AZURE_CLIENT_ID, "
                                 "MDE_CREDENTIAL=managed-identity): only it can be a federated credential.",
                                 setting="AZURE_CLIENT_ID")
    authority = _authority(setting(env, "MDE_AUTHORITY_HOST"), cloud)
    return MultiTenant(client_id, tenants, authority, cloud.exchange_audience)


def _authority(raw: str | None, cloud: Cloud) -> str:
    """The cloud's login endpoint, or an https loopback one (the local token endpoint): the identity's assertion
    goes nowhere else."""
    if not raw or raw.rstrip("/") == cloud.login:
        return cloud.login
    parts = split_url(raw)
    if (parts is None or parts.scheme != "https" or not is_loopback(parts.hostname or "") or parts.path.strip("/")
            or parts.query or parts.username):
        raise ConfigurationError(f"MDE_AUTHORITY_HOST must be {cloud.login} (the cloud's login endpoint) or an "
                                 f"https loopback URL (local use), got {shown_url(raw)}.",
                                 setting="MDE_AUTHORITY_HOST")
    return raw.rstrip("/")


def load_tenant_callers(env: Mapping[str, str], multi_tenant: MultiTenant | None) -> TenantCallers:
    """GATEWAY_TENANT_CALLERS: `<object id>=<tenant>+<tenant>;...` (a tenant by id or short name, `*` for every customer
    tenant, `home` for the gateway's own)."""
    raw = setting(env, "GATEWAY_TENANT_CALLERS") or ""
    mapping: dict[str, frozenset[str]] = {}
    for entry in (part.strip() for part in raw.split(";") if part.strip()):
        caller, _, tenants = entry.partition("=")
        caller = caller.strip().lower()
        if not GUID.fullmatch(caller) or not tenants.strip():
            raise ConfigurationError(f"GATEWAY_TENANT_CALLERS: {shown(entry)} is not `<object id>=<tenant>+<tenant>`.",
                                     setting="GATEWAY_TENANT_CALLERS")
        ids = set(mapping.get(caller, frozenset()))  # a caller named twice gets both entries' tenants
        for name in (name.strip().lower() for name in tenants.split("+") if name.strip()):
            found = multi_tenant.find(name) if multi_tenant else None
            if name not in (EVERY_TENANT, HOME_TENANT) and found is None:
                raise ConfigurationError(f"GATEWAY_TENANT_CALLERS names {shown(name)}, which MDE_TENANTS does not "
                                         "list.", setting="GATEWAY_TENANT_CALLERS")
            ids.add(found.id if found else name)
        mapping[caller] = frozenset(ids)
    return TenantCallers(MappingProxyType(mapping))
