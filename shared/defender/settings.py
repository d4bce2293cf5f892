"""Where and how the gateway calls Defender (and Microsoft Graph, for hunting): values read and checked by
shared.settings, never the environment."""

from __future__ import annotations

from dataclasses import dataclass

from shared.defender.clouds import Cloud
from shared.defender.facts import Api, Service
from shared.defender.outbound import Target
from shared.defender.tenants import MultiTenant

#: The longest a synchronous call may take, retries included: Azure's front end cuts an HTTP answer at 230 s (Flex
#: Consumption, whatever host.json's functionTimeout says; the local host's LOCAL_HTTP_RESPONSE_CAP_SECONDS too),
#: and 10 s are left for the connection, the token, the slot and the answer. MDE_TOTAL_TIMEOUT_SECONDS's maximum.
LONGEST_SYNCHRONOUS_SECONDS = 220.0


@dataclass(frozen=True)
class Upstream:
    """One service the gateway calls: its base URL, where that connects (as the allowlist judged it, checked again
    before every request), the token scope it takes, and the setting that names it (for messages)."""

    service: Service
    base_url: str
    target: Target
    scope: str
    setting: str


@dataclass(frozen=True)
class DefenderSettings:
    """Where and how the gateway calls Defender for Endpoint, and Microsoft Graph for advanced hunting."""

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
    #: GRAPH_BASE_URL (default: the cloud's Graph), and where it connects; its token is for the cloud's Graph scope.
    graph_base_url: str
    graph_target: Target
    #: HUNTING_TIMEOUT_SECONDS: the read timeout of one Graph hunting call (Graph stops a query at 180 s).
    hunting_timeout: float
    #: MDE_TENANTS: the customer tenants beside the home one (None: the home tenant alone, as before).
    multi_tenant: MultiTenant | None = None

    def upstream(self, service: Service) -> Upstream:
        """Defender's or Graph's base URL, target and token scope (the cloud's scope for either: an override of the
        base URL moves where the call goes, as the simulator does locally, never whose token it carries)."""
        if service is Service.GRAPH:
            return Upstream(service, self.graph_base_url, self.graph_target, self.cloud.graph_scope, "GRAPH_BASE_URL")
        return Upstream(service, self.base_url, self.target, self.cloud.scope, "MDE_BASE_URL")

    def read_timeout_of(self, api: Api) -> float:
        """The read timeout of one request to `api`: hunting waits for Graph's query, the others for Defender."""
        return self.hunting_timeout if api is Api.HUNTING else self.read_timeout

    def attempt_seconds_of(self, api: Api) -> float:
        """The longest one request to `api` can take (connect + read timeout): the one definition (the retry policy,
        the queue worker's lease and a shared query's joiners read it here)."""
        return self.connect_timeout + self.read_timeout_of(api)

    def deadline_of(self, api: Api) -> float:
        """The longest a synchronous call to `api` takes, retries included: MDE_TOTAL_TIMEOUT_SECONDS; for hunting at
        least one whole attempt (connect + HUNTING_TIMEOUT_SECONDS: a query Graph answers in its 3 minutes is
        answered, as Defender's hunting API answered within 200 s), never past LONGEST_SYNCHRONOUS_SECONDS."""
        if api is Api.HUNTING:
            return min(max(self.total_timeout, self.attempt_seconds_of(api)), LONGEST_SYNCHRONOUS_SECONDS)
        return self.total_timeout

