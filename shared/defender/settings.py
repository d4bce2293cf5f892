"""Where and how the gateway calls Defender: values read and checked by shared.settings, never the environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.defender.clouds import Cloud
from shared.defender.outbound import Target
from shared.defender.tenants import MultiTenant


@dataclass(frozen=True)
class DefenderSettings:
    """Where and how the gateway calls Defender for Endpoint."""

    cloud: Cloud
    base_url: str
    #: Where calls to `base_url` connect, as the allowlist judged it; checked again before every request.
    target: Target
    credential_kind: str
    managed_identity_client_id: str | None
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_retries: int
    max_retry_after: float
    #: MDE_TENANTS: the customer tenants beside the home one (None: the home tenant alone, as before).
    multi_tenant: MultiTenant | None = None
