"""Who lets callers in: values read and checked by shared.settings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AuthMode(StrEnum):
    """Who lets callers in: the Functions host's keys, or App Service authentication (Entra ID)."""

    FUNCTION_KEY = "function-key"
    ENTRA = "entra"


@dataclass(frozen=True)
class AuthSettings:
    """Who lets callers in, and, with Entra ID, whom the gateway itself lets through (defence in depth: the
    platform's allowed applications and principals, checked again on the caller's claims)."""

    mode: AuthMode
    #: Client ids (appid / azp claim) that may call; empty: any the platform let in.
    allowed_applications: frozenset[str] = frozenset()
    #: Object ids (oid claim) that may call; empty: any the platform let in.
    allowed_principals: frozenset[str] = frozenset()
