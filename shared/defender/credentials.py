"""The identity the gateway calls Defender with, and who that identity is (for the shared rate limit)."""

from __future__ import annotations

import base64
import json
from typing import Any

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.defender.settings import DefenderSettings


def build_credential(settings: DefenderSettings) -> TokenCredential:
    """One credential per worker process: azure-identity caches the token inside it."""
    client_id = settings.managed_identity_client_id
    if settings.credential_kind == "default":
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def token_claims(access_token: str) -> dict[str, Any]:
    """The payload of a JWT access token, not verified: used only to name the caller identity.

    Defender verifies the token; the gateway only needs to know which tenant + application
    it belongs to, because Defender counts its rate limits per tenant and application.
    """
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def principal_of(access_token: str) -> str:
    """`<tenant id>|<application id>` of the token, the unit Defender counts its limits by."""
    claims = token_claims(access_token)
    tenant = str(claims.get("tid") or "unknown-tenant")
    application = str(claims.get("appid") or claims.get("azp") or claims.get("oid") or "unknown-app")
    return f"{tenant}|{application}"
