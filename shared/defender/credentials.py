"""The identity the gateway calls Defender with, and whose quota its token spends (the key of each tenant's budget)."""

from __future__ import annotations

import base64
import json
from typing import Any

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.defender.settings import DefenderSettings
from shared.defender.tenants import GUID, MultiTenant


def build_credential(settings: DefenderSettings) -> TokenCredential:
    """One credential per worker process: azure-identity caches the token inside it."""
    client_id = settings.managed_identity_client_id
    if settings.credential_kind == "default":
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def token_claims(access_token: str) -> dict[str, Any]:
    """The payload of a JWT access token, not verified (Defender verifies it); {} when it is not readable."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def principal_of(access_token: str, tenant: str | None = None, multi_tenant: MultiTenant | None = None) -> str:
    """`<tenant id>|<application id>`: whose Defender quota a call spends (Defender counts its limits per tenant and
    application), and so the key of the rate-limit state, the shared answers and the lookups in flight.

    The tenant is the one the call was routed to. For customer tenant `tenant` (an id of `multi_tenant`) both parts
    come from configuration: the tenant and the multi-tenant app (the same key the token's own claims give, so state
    that an earlier version wrote keeps its meaning). For the home tenant (None) they are those of the gateway's own
    identity's token, which no customer tenant may be.

    ValueError (fail closed, never a bucket that tenants share): the token names no tenant and application (not a
    readable JWT), or not the tenant the call was routed to, or the home tenant's token names a customer tenant.
    """
    claims = token_claims(access_token)
    token_tenant = str(claims.get("tid") or "").lower()
    application = str(claims.get("appid") or claims.get("azp") or claims.get("oid") or "").lower()
    if not GUID.fullmatch(token_tenant) or not application:
        raise ValueError("the token names no tenant (tid) and application (appid): it is not a readable JWT, and the "
                         "gateway keys each tenant's budget and answers by them")
    if tenant is None:
        if multi_tenant is not None and multi_tenant.find(token_tenant) is not None:
            raise ValueError("the token of the gateway's own identity names a customer tenant (MDE_TENANTS)")
        return f"{token_tenant}|{application}"
    routed = multi_tenant.find(tenant) if multi_tenant is not None else None
    if routed is None or multi_tenant is None:
        raise ValueError(f"tenant {tenant} is not one of MDE_TENANTS")
    if token_tenant != routed.id:
        raise ValueError(f"the token for tenant {routed.id} names another tenant")
    return f"{routed.id}|{multi_tenant.client_id}"
