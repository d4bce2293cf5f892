"""Defender for Endpoint facts the gateway relies on, defined once (checked in ../shared/reference/defender-api.md).

The local simulator stands in for Defender with the same facts, so a fact is changed here or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Service(StrEnum):
    """Who serves an API: Defender for Endpoint itself, or Microsoft Graph (another host and token audience)."""

    DEFENDER = "defender"
    GRAPH = "graph"

    @property
    def display_name(self) -> str:
        """How logs and answers name it: "Defender", or "Microsoft Graph"."""
        return "Microsoft Graph" if self is Service.GRAPH else "Defender"


class Api(StrEnum):
    """The Defender APIs behind the gateway. The value names the API in rate-limit state, logs and headers."""

    FILE_ALERTS = "file_alerts"
    CREATE_ALERT = "create_alert"
    #: Get file information: resolves a SHA-256 to the file's SHA-1 (file-alerts lookups take SHA-1 only).
    FILE_INFO = "file_info"
    #: Advanced hunting: a KQL query run by Microsoft Graph's runHuntingQuery (the successor of Defender's own
    #: hunting APIs, which Microsoft is retiring: MC1220762). Served to callers in Defender's shape and in Graph's.
    HUNTING = "hunting"


@dataclass(frozen=True)
class ApiFacts:
    """What Defender documents for one API."""

    method: str
    #: Any one of these application roles allows the call.
    roles: tuple[str, ...]
    #: The documented limits as `calls/seconds`, comma-separated (the rate-limit settings' default).
    limits: str
    #: Who serves it (its host and token audience come from the cloud's entry for that service).
    service: Service = Service.DEFENDER


API_FACTS: dict[Api, ApiFacts] = {
    Api.FILE_ALERTS: ApiFacts("GET", ("Alert.Read.All", "Alert.ReadWrite.All"), "100/60,1500/3600"),
    Api.CREATE_ALERT: ApiFacts("POST", ("Alert.ReadWrite.All",), "15/60"),
    Api.FILE_INFO: ApiFacts("GET", ("File.Read.All",), "100/60,1500/3600"),
    # Graph documents "at least 45 calls a minute per tenant" (more for a large tenant) and Defender's hunting API
    # 1,500 an hour; the setting RATE_LIMIT_HUNTING raises or lowers both.
    Api.HUNTING: ApiFacts("POST", ("ThreatHunting.Read.All",), "45/60,1500/3600", Service.GRAPH),
}

#: The operations the gateway offers, by Defender's own names: its HTTP functions', its queue messages' and its
#: operations' `operation` (file information is a step of a lookup, never an operation of its own).
OPERATION_NAMES: dict[Api, str] = {Api.FILE_ALERTS: "GetFileRelatedAlerts", Api.CREATE_ALERT: "CreateAlertByReference",
                                   Api.HUNTING: "RunHuntingQuery"}

CREATE_ALERT_PATH = "/api/alerts/CreateAlertByReference"


def file_alerts_path(sha1: str) -> str:
    return f"/api/files/{sha1}/alerts"


def file_info_path(file_hash: str) -> str:
    """Get file information: `file_hash` is a SHA-1 or a SHA-256; 404 when Defender does not know the file."""
    return f"/api/files/{file_hash}"


#: Graph's hunting call (the upstream request of Api.HUNTING), on the cloud's Graph host.
GRAPH_HUNTING_PATH = "/v1.0/security/runHuntingQuery"
#: What callers of the gateway send a hunting query to: Defender's own paths (MDE's, and Defender XDR's) answered in
#: Defender's shape (`Stats`, `Schema`, `Results`), and Graph's path answered in Graph's shape (`schema`, `results`).
MDE_HUNTING_PATH = "/api/advancedqueries/run"
XDR_HUNTING_PATH = "/api/advancedhunting/run"
GATEWAY_GRAPH_HUNTING_PATH = "/api/security/runHuntingQuery"
#: Microsoft Graph's service principal (appId), whose application permission ThreatHunting.Read.All the identity needs.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
#: Graph blocks a tenant's hunting queries at 100 % of its CPU allocation until the next cycle of this many seconds.
HUNTING_CPU_CYCLE_SECONDS = 15 * 60
#: Graph ends a query after 3 minutes; results hold at most 100,000 rows, of the last 30 days.
HUNTING_QUERY_TIMEOUT_SECONDS = 180
HUNTING_MAX_ROWS = 100_000
#: The longest `Query` the gateway takes (its documented limit: Graph documents none, a playbook's query is far
#: shorter).
HUNTING_MAX_QUERY_CHARACTERS = 30_000
#: The longest `Query` as JSON text in UTF-8 (its escapes included), in bytes: a queued hunting request (the query in
#: a queue message beside an envelope of well under 1 KiB) then always fits a queue message's 64 KiB, whatever the
#: script. It binds only for text of more than 2 bytes a character (30,000 characters of emoji would be 120,000
#: bytes): about 16,000 characters of 4-byte text, 21,000 of 3-byte (CJK).
HUNTING_MAX_QUERY_BYTES = 63 * 1024

#: The WindowsDefenderATP service principal, whose app roles the gateway's identity needs.
DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
#: Seconds a 429 without Retry-After holds an API (Defender documents none; a minute is its shortest window).
DEFAULT_THROTTLE_SECONDS = 60

SEVERITIES = ("Low", "Medium", "High")
CATEGORIES = (
    "General", "CommandAndControl", "Collection", "CredentialAccess", "DefenseEvasion", "Discovery",
    "Exfiltration", "Exploit", "Execution", "InitialAccess", "LateralMovement", "Malware", "Persistence",
    "PrivilegeEscalation", "Ransomware", "SuspiciousActivity",
)
#: The body of CreateAlertByReference: exactly these fields, all required, names case-sensitive.
CREATE_FIELDS = (
    "eventTime", "reportId", "machineId", "severity", "title", "description", "recommendedAction", "category",
)
