"""Access tokens shaped like Entra ID's, signed with a local key that the simulator checks.

Only for local development and tests: the fake identity endpoint issues them, the simulator
verifies signature, audience, expiry and app roles the way Defender does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

# A development-only signing key shared by the local identity endpoint and the simulator.
LOCAL_SIGNING_KEY = "mde-alert-gateway-local-development-signing-key"
LOCAL_TENANT_ID = "a839b112-1253-6432-9bf6-94542403f21c"
LOCAL_APP_ID = "00000000-0000-0000-0000-00000000a11e"
#: Every app role the gateway's identity holds: the alert roles, File.Read.All (Get file information) and, on
#: Microsoft Graph, ThreatHunting.Read.All (advanced hunting).
ALL_ROLES = ("Alert.Read.All", "Alert.ReadWrite.All", "File.Read.All", "ThreatHunting.Read.All")


@dataclass(frozen=True)
class TokenClaims:
    audience: str
    tenant_id: str
    app_id: str
    roles: tuple[str, ...]
    expires_on: int


def issue_token(resource: str, *, roles: tuple[str, ...] = ALL_ROLES, tenant_id: str = LOCAL_TENANT_ID,
                app_id: str = LOCAL_APP_ID, object_id: str | None = None, lifetime: int = 3600) -> tuple[str, int]:
    """Return (token, expires_on epoch seconds): an app-only token of `app_id` (its service principal's object id
    `object_id`, by default the app id) for `resource`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": resource, "iss": f"https://sts.windows.net/{tenant_id}/", "iat": now, "nbf": now,
        "exp": now + lifetime, "tid": tenant_id, "appid": app_id, "oid": object_id or app_id, "idtyp": "app",
        "roles": list(roles),
    }
    return jwt.encode(claims, LOCAL_SIGNING_KEY, algorithm="HS256"), now + lifetime


def read_claims(token: str) -> dict[str, Any]:
    """Every claim of a token this module issued, once signature and expiry are verified (jwt.InvalidTokenError)."""
    claims: dict[str, Any] = jwt.decode(token, LOCAL_SIGNING_KEY, algorithms=["HS256"],
                                        options={"verify_aud": False})
    return claims


def read_token(token: str) -> TokenClaims:
    """Verify signature and expiry; raises jwt.InvalidTokenError. Audience is checked by the caller."""
    claims = jwt.decode(token, LOCAL_SIGNING_KEY, algorithms=["HS256"], options={"verify_aud": False})
    return TokenClaims(str(claims.get("aud", "")), str(claims.get("tid", "")), str(claims.get("appid", "")),
                       tuple(claims.get("roles") or ()), int(claims["exp"]))
