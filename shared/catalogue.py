"""Every setting the gateway reads, in one catalogue: its name, its default and what it is for.

The single list the infrastructure tests check the Bicep templates against (both ways), the source of
docs/configuration.md's table, and what the local stack passes as app settings. shared.settings reads and checks
them (`setting` gives one, its default when unset); libraries take values, never the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.defender.clouds import CLOUDS
from shared.defender.facts import API_FACTS, Api


@dataclass(frozen=True)
class SettingSpec:
    """One app setting: its name, its default (None = unset) and what it is for."""

    name: str
    default: str | None
    description: str
    #: True when an Azure deployment must set it (the templates do).
    set_by_templates: bool = False


CATALOGUE: tuple[SettingSpec, ...] = (
    SettingSpec("GATEWAY_AUTH", "function-key",
                "`function-key`: callers present a function key. `entra`: App Service authentication (Entra ID) "
                "gates every call, and the gateway validates the caller's bearer token itself and requires the app "
                "role of the call (Alerts.Read, Alerts.Create, Hunting.Read, Operations.Read, Gateway.Operate).",
                True),
    SettingSpec("WEBSITE_AUTH_ENABLED", None,
                "Set by the platform (`True`) while App Service authentication is on. With `GATEWAY_AUTH=entra` the "
                "gateway serves only when it is (defence in depth: the gateway validates the bearer token itself, and "
                "the platform's X-MS-CLIENT-PRINCIPAL headers, where present, must name the same caller). Never set "
                "it by hand."),
    SettingSpec("GATEWAY_TOKEN_ISSUER", "",
                "With `GATEWAY_AUTH=entra`: the v2.0 issuer of the gateway's tenant "
                "(`https://login.microsoftonline.com/<tenant id>/v2.0`). The gateway validates every caller's bearer "
                "token itself against it: signed by a key its OpenID metadata publishes, this issuer, an accepted "
                "audience, unexpired.", True),
    SettingSpec("GATEWAY_TOKEN_AUDIENCES", "",
                "With `GATEWAY_AUTH=entra`: the token audiences accepted, comma-separated (the gateway app "
                "registration's client id, which v2.0 tokens carry, and its App ID URI).", True),
    SettingSpec("GATEWAY_ALLOWED_APPLICATIONS", "",
                "With `GATEWAY_AUTH=entra`: client ids (the token's appid/azp claim), comma-separated, that may call; "
                "empty: any holding the call's app role. The templates set the same list as the platform's allowed "
                "applications, and the gateway checks it again on the token's claims.", True),
    SettingSpec("GATEWAY_ALLOWED_PRINCIPALS", "",
                "With `GATEWAY_AUTH=entra`: object ids (the oid claim), comma-separated, that may call; empty: any "
                "holding the call's app role. Set like GATEWAY_ALLOWED_APPLICATIONS.", True),
    SettingSpec("MDE_CLOUD", "commercial",
                "Defender cloud: " + ", ".join(CLOUDS) + ". Chooses API host and token scope.", True),
    SettingSpec("MDE_BASE_URL", None,
                "Override of the API base URL: https on a documented Defender domain, or http on loopback "
                "(the local simulator). Anything else is refused at start-up."),
    SettingSpec("GRAPH_BASE_URL", None,
                "Override of Microsoft Graph's base URL (advanced hunting, runHuntingQuery); unset: the cloud's Graph "
                "(MDE_CLOUD). https on exactly MDE_CLOUD's Graph host (graph.microsoft.com; graph.microsoft.us for "
                "gcc-high, dod-graph.microsoft.us for dod), or http on loopback (the local simulator). The token is "
                "always for the cloud's Graph, so another cloud's Graph host is refused too. Anything else is refused "
                "at start-up."),
    SettingSpec("MDE_CREDENTIAL", "managed-identity",
                "`managed-identity` (Azure) or `default` (DefaultAzureCredential: local use against a real tenant).",
                True),
    SettingSpec("AZURE_CLIENT_ID", None,
                "Client id of a user-assigned managed identity; unset means system-assigned."),
    SettingSpec("MDE_TENANTS", "",
                "Many tenants (an MSSP): the customer tenants the gateway may call Defender in, comma-separated, each "
                "`<short name>=<tenant id>` or a bare tenant id. Empty: the home tenant alone. Needs "
                "MDE_MULTITENANT_CLIENT_ID and a user-assigned identity (AZURE_CLIENT_ID).", True),
    SettingSpec("MDE_MULTITENANT_CLIENT_ID", "",
                "With MDE_TENANTS: client id of the multi-tenant app registration whose federated credential is the "
                "gateway's user-assigned identity (consented and granted the Defender roles in each tenant).", True),
    SettingSpec("MDE_AUTHORITY_HOST", None,
                "With MDE_TENANTS: where tokens are exchanged; unset: the cloud's login endpoint. Only that, or an "
                "https loopback URL (the local token endpoint), is accepted."),
    SettingSpec("GATEWAY_TENANT_CALLERS", "",
                "With MDE_TENANTS and GATEWAY_AUTH=entra: which callers may act for which tenants, "
                "`<object id>=<tenant>+<tenant>;...` (tenants by short name or id, `*` for every customer tenant, "
                "`home` for the gateway's own). Anyone else gets 403 for a customer tenant; a caller listed here "
                "reaches the home tenant only if its entry names `home`, an unlisted one as before.", True),
    SettingSpec("MDE_CONNECT_TIMEOUT_SECONDS", "5", "TCP/TLS connect timeout for one call to Defender."),
    SettingSpec("MDE_READ_TIMEOUT_SECONDS", "30", "Read timeout for one call to Defender."),
    SettingSpec("HUNTING_TIMEOUT_SECONDS", "200",
                "Read timeout for one advanced-hunting call to Graph (Graph stops a query at 180 s). A synchronous "
                "call waits connect + this long too (not MDE_TOTAL_TIMEOUT_SECONDS), at most 220 s in all so that "
                "its answer leaves before Azure's 230 s HTTP cut; the asynchronous path waits this long."),
    SettingSpec("MDE_TOTAL_TIMEOUT_SECONDS", "100",
                "Upper bound for one gateway request including retries (at most 220 s: below Azure's 230 s HTTP cut); "
                "a synchronous hunting query has its own (HUNTING_TIMEOUT_SECONDS)."),
    SettingSpec("MDE_MAX_RETRIES", "3", "Retries of one call to Defender (GET: 429/502/503/504 and connection "
                "errors; POST: only when it surely did not reach Defender, or 429/503 with Retry-After)."),
    SettingSpec("MDE_MAX_RETRY_AFTER_SECONDS", "10",
                "A Retry-After longer than this is not waited out: the caller gets 429 with it at once."),
    SettingSpec("RATE_LIMIT_FILE_ALERTS", API_FACTS[Api.FILE_ALERTS].limits,
                "Windows for GET files/{sha1}/alerts as `calls/seconds`, comma-separated.", True),
    SettingSpec("RATE_LIMIT_CREATE_ALERT", API_FACTS[Api.CREATE_ALERT].limits,
                "Windows for POST alerts/CreateAlertByReference as `calls/seconds`, comma-separated.", True),
    SettingSpec("RATE_LIMIT_FILE_INFO", API_FACTS[Api.FILE_INFO].limits,
                "Windows for GET files/{id} (file information, which resolves a SHA-256 to its SHA-1) as "
                "`calls/seconds`, comma-separated.", True),
    SettingSpec("RATE_LIMIT_HUNTING", API_FACTS[Api.HUNTING].limits,
                "Windows for advanced hunting (Graph's runHuntingQuery) per tenant as `calls/seconds`, "
                "comma-separated; Graph allows at least 45 a minute, more for a large tenant. Graph counts every "
                "hunting client of the tenant: lower it when other apps hunt in the tenant too.", True),
    SettingSpec("RATE_LIMIT_MARGIN_SECONDS", "2",
                "Safety margin added to every window (clock skew between instances, calls in flight)."),
    SettingSpec("RATE_LIMIT_TABLE", "mdegatewayratelimits",
                "Table (created on first use) holding the shared rate-limit state.", True),
    SettingSpec("RATE_LIMIT_MAX_CONFLICT_RETRIES", "10",
                "Optimistic-concurrency (ETag 412) retries before a call is refused."),
    SettingSpec("RATE_LIMIT_NEW_STATE_SHARE", "0.5",
                "Share (above 0, at most 1) of each window that a rate-limit state created from nothing (first "
                "use, or after the table or entity was lost) admits until that window has passed once."),
    SettingSpec("FILE_ALERTS_CACHE_SECONDS", "60",
                "How long (0-3600 s) a successful file-alerts answer is shared: a repeated SHA-1 is answered from "
                "Table Storage without spending Defender quota. 0 turns the cache off.", True),
    SettingSpec("ANSWER_CACHE_TABLE", "mdegatewayanswers",
                "Table (created on first use) holding the shared file-alerts answers.", True),
    SettingSpec("FILE_HASH_TABLE", "mdegatewayfilehashes",
                "Table (created on first use) holding each SHA-256 that was resolved to its file's SHA-1, so a "
                "repeated SHA-256 costs no file-information call.", True),
    SettingSpec("HUNTING_SHARE_SECONDS", "0",
                "How long (0-3600 s) a successful hunting answer is shared: a query identical to one (same "
                "tenant, `Query` and `Timespan`, byte for byte) answered within that time is answered from Table "
                "Storage (ANSWER_CACHE_TABLE) without a Graph call, and concurrent identical queries in one instance "
                "share one call. 0 (the "
                "default) turns sharing off: hunting results change by the second, and a playbook that runs a query "
                "again expects a fresh answer.", True),
    SettingSpec("REQUESTS_QUEUE", "mde-gateway-requests",
                "Storage queue of asynchronous requests: queue input from automation, and the HTTP calls answered "
                "202. Requests the budget cannot take yet wait in `<name>-create-alert`, `<name>-file-alerts` and "
                "`<name>-file-info` (one per Defender API); every queue's poison queue is `<queue>-poison`, and the "
                "gateway puts failed requests, with their reason, in `<name>-poison`.", True),
    SettingSpec("OPERATIONS_TABLE", "mdegatewayoperations",
                "Table (created on first use) holding the status and final answer of every asynchronous operation.",
                True),
    SettingSpec("HISTORY_TABLE", "mdegatewayhistory",
                "Table (created on first use) holding the operator page's last hour, per minute: refusals and "
                "Defender's 429s per API and tenant, queue depths and the oldest pending age per API (kept 90 "
                "minutes)."),
    SettingSpec("OPERATIONS_RETENTION_HOURS", "24",
                "How long (1-720 h) an operation's record and answer stay readable at /api/operations/{id}, and an "
                "idempotency key or message id is remembered."),
    SettingSpec("GATEWAY_ASYNC_ON_THROTTLE", "false",
                "`true`: a synchronous call that the shared budget cannot admit now is queued and answered 202 "
                "(with Location) instead of 429."),
    SettingSpec("QUEUE_MAX_RETRIES", "5",
                "Retries (0-20, backing off up to 5 minutes) of a queued request after a transient failure (Defender "
                "5xx or unreachable, identity or storage down) before it fails. Throttling is never counted."),
    SettingSpec("MAINTENANCE_SCHEDULE", "0 */1 * * * *",
                "When the maintenance sweep runs (the timer's schedule, as the host reads it: six-field NCRONTAB, "
                "second minute hour day month weekday, or five-field without the seconds; not a TimeSpan, which the "
                "host runs only on an App Service plan): it deletes expired operations and finishes operations an "
                "instance left in flight when it died.", True),
    SettingSpec("RESULTS_CONTAINER", "mdegatewayresults",
                "Blob container (created on first use) of the gateway's storage account holding operation answers "
                "too large for a table entity (a large hunting result): each deleted with its operation, by the "
                "maintenance sweep.", True),
    SettingSpec("AzureWebJobsStorage", None,
                "Connection string of the storage account (local: Azurite). In Azure use the identity-based "
                "`AzureWebJobsStorage__*` settings instead; no account keys."),
    SettingSpec("AzureWebJobsStorage__tableServiceUri", None,
                "Identity-based storage: Table endpoint of the host's storage account.", True),
    SettingSpec("AzureWebJobsStorage__blobServiceUri", None,
                "Identity-based storage: Blob endpoint of the host's storage account (the host's own blobs, and the "
                "gateway's results too large for a table entity, in RESULTS_CONTAINER). Unset: the account's, from "
                "__accountName or the table endpoint.", True),
    SettingSpec("AzureWebJobsStorage__queueServiceUri", None,
                "Identity-based storage: Queue endpoint of the host's storage account (the queue trigger and the "
                "gateway's own queue writes).", True),
    SettingSpec("AzureWebJobsStorage__accountName", None,
                "Identity-based storage: account name (used when no tableServiceUri is set; public cloud only)."),
    SettingSpec("AzureWebJobsStorage__credential", None,
                "Identity-based storage: `managedidentity`.", True),
    SettingSpec("AzureWebJobsStorage__clientId", None,
                "Identity-based storage: client id of a user-assigned identity."),
    SettingSpec("APPLICATIONINSIGHTS_CONNECTION_STRING", None,
                "Application Insights to send the gateway's metrics and traces to (and the host's logs). Unset: no "
                "telemetry is sent (locally, `TELEMETRY_CONSOLE` prints it).", True),
    SettingSpec("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", None,
                "`Authorization=AAD` (system-assigned identity) or `ClientId=<client id>;Authorization=AAD`: send "
                "telemetry with the managed identity (the component accepts nothing else). Read by the host too.",
                True),
    SettingSpec("TELEMETRY_CONSOLE", "false",
                "`true`: print the gateway's metrics (every 10 s) and spans to the log (local use; Application "
                "Insights wins when its connection string is set)."),
)

CATALOGUE_BY_NAME: dict[str, SettingSpec] = {spec.name: spec for spec in CATALOGUE}


def setting(env: Mapping[str, str], name: str) -> str | None:
    """Read one catalogued setting (empty counts as unset), falling back to its default."""
    spec = CATALOGUE_BY_NAME[name]
    value = env.get(name, "").strip()
    return value or spec.default
