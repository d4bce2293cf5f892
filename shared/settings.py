"""The one Settings object, built from the catalogue's settings (shared.catalogue) and checked at start-up.

The catalogue is the single list the infrastructure tests check the Bicep templates against (both
ways), and the source of docs/configuration.md's table. `load_settings` reads and checks all of
it once; a bad value stops start-up with a ConfigurationError naming the setting. Libraries below
take the values, never the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TypeVar

from shared.asynchronous.queue_names import MAX_REQUESTS_QUEUE_LENGTH, QUEUE_NAME
from shared.asynchronous.schedule import CronExpression, parse_schedule
from shared.asynchronous.settings import CONTAINER_NAME, AsyncSettings
from shared.catalogue import setting
from shared.configuration import ConfigurationError, SettingProblem, showable, shown, shown_url, split_url
from shared.defender.base_url import judge_base_url, judge_graph_base_url
from shared.defender.clouds import CLOUDS
from shared.defender.facts import HUNTING_QUERY_TIMEOUT_SECONDS, Api
from shared.defender.settings import LONGEST_SYNCHRONOUS_SECONDS, DefenderSettings
from shared.http.settings import AuthMode, AuthSettings, token_check
from shared.identifiers import GUID
from shared.lookups.settings import AnswerCacheSettings
from shared.ratelimit import (
    MAX_CONFLICT_RETRIES,
    MAX_MARGIN_SECONDS,
    TABLE_NAME,
    RatePolicy,
    parse_windows,
)
from shared.tables.settings import StorageSettings, sibling_endpoint
from shared.telemetry.settings import TelemetrySettings
from shared.tenancy import load_multi_tenant, load_tenant_callers


def _number(env: Mapping[str, str], name: str, *, minimum: float, maximum: float, unit: str = "",
            above: bool = False) -> float:
    """A number setting from `minimum` (or, with `above`, greater than it) to `maximum`; NaN is never in range."""
    raw = setting(env, name) or ""
    try:
        value: float | None = float(raw)
    except ValueError:
        value = None
    if value is not None and (minimum < value if above else minimum <= value) and value <= maximum:
        return value
    of = f" of {unit}" if unit else ""
    if above:
        reason = f"must be a number{of} greater than {minimum:g} and at most {maximum:g}"
    elif value is None:
        reason = f"must be a number{of}"
    else:
        reason = f"must be between {minimum:g} and {maximum:g}"
    raise ConfigurationError(f"{name} {reason}, got {shown(raw)}.", setting=name)


def _whole(env: Mapping[str, str], name: str, *, minimum: int, maximum: int, unit: str = "") -> int:
    """A whole-number setting from `minimum` to `maximum`: ASCII digits only (no sign, point, exponent or space), at
    most as many as `maximum` has."""
    raw = setting(env, name) or ""
    if not re.fullmatch(f"[0-9]{{1,{len(str(maximum))}}}", raw, re.ASCII) or not minimum <= int(raw) <= maximum:
        of = f" of {unit}" if unit else ""
        raise ConfigurationError(f"{name} must be a whole number{of} from {minimum} to {maximum}, got {shown(raw)}.",
                                 setting=name)
    return int(raw)


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = (setting(env, name) or "").lower()
    if raw not in ("true", "false"):
        raise ConfigurationError(f"{name} must be true or false, got {shown(raw)}.", setting=name)
    return raw == "true"


#: The longest HUNTING_TIMEOUT_SECONDS: Graph's 3 minutes and room to spare (the asynchronous path waits it out).
MAX_HUNTING_TIMEOUT_SECONDS = 2 * HUNTING_QUERY_TIMEOUT_SECONDS


def load_defender_settings(env: Mapping[str, str]) -> DefenderSettings:
    """Read and check the Defender settings; raises ConfigurationError with a clear message."""
    cloud_name = (setting(env, "MDE_CLOUD") or "").lower()
    cloud = CLOUDS.get(cloud_name)
    if cloud is None:
        raise ConfigurationError(f"MDE_CLOUD must be one of {', '.join(CLOUDS)}, got {shown(cloud_name)}.",
                                 setting="MDE_CLOUD")
    base_url = setting(env, "MDE_BASE_URL") or cloud.base_url
    target = judge_base_url(base_url)
    graph_base_url = setting(env, "GRAPH_BASE_URL") or cloud.graph
    graph_target = judge_graph_base_url(graph_base_url, cloud)
    credential_kind = (setting(env, "MDE_CREDENTIAL") or "").lower()
    if credential_kind not in ("managed-identity", "default"):
        raise ConfigurationError(f"MDE_CREDENTIAL must be managed-identity or default, got {shown(credential_kind)}.",
                                 setting="MDE_CREDENTIAL")
    total = _number(env, "MDE_TOTAL_TIMEOUT_SECONDS", minimum=1, maximum=LONGEST_SYNCHRONOUS_SECONDS)
    connect = _number(env, "MDE_CONNECT_TIMEOUT_SECONDS", minimum=0.1, maximum=60)
    read = _number(env, "MDE_READ_TIMEOUT_SECONDS", minimum=0.1, maximum=200)
    if connect + read > total:
        raise ConfigurationError("MDE_CONNECT_TIMEOUT_SECONDS + MDE_READ_TIMEOUT_SECONDS must not exceed "
                                 "MDE_TOTAL_TIMEOUT_SECONDS.", setting="MDE_CONNECT_TIMEOUT_SECONDS")
    return DefenderSettings(
        cloud=cloud,
        base_url=base_url.rstrip("/"),
        target=target,
        credential_kind=credential_kind,
        managed_identity_client_id=setting(env, "AZURE_CLIENT_ID"),
        connect_timeout=connect,
        read_timeout=read,
        total_timeout=total,
        max_retries=_whole(env, "MDE_MAX_RETRIES", minimum=0, maximum=10),
        max_retry_after=_number(env, "MDE_MAX_RETRY_AFTER_SECONDS", minimum=0, maximum=120),
        graph_base_url=graph_base_url.rstrip("/"),
        graph_target=graph_target,
        hunting_timeout=_number(env, "HUNTING_TIMEOUT_SECONDS", minimum=1, maximum=MAX_HUNTING_TIMEOUT_SECONDS,
                                unit="seconds"),
        multi_tenant=load_multi_tenant(env, cloud),
    )


#: Which setting holds the windows of which Defender API.
POLICY_SETTINGS: Mapping[Api, str] = MappingProxyType({
    Api.FILE_ALERTS: "RATE_LIMIT_FILE_ALERTS",
    Api.CREATE_ALERT: "RATE_LIMIT_CREATE_ALERT",
    Api.FILE_INFO: "RATE_LIMIT_FILE_INFO",
    Api.HUNTING: "RATE_LIMIT_HUNTING",
})


@dataclass(frozen=True)
class RateLimitSettings:
    """The shared rate limit: a policy per API, and how the limiters keep it."""

    policies: Mapping[Api, RatePolicy]
    margin_seconds: float
    table_name: str
    max_conflict_retries: int
    new_state_share: float


def load_rate_limit_settings(env: Mapping[str, str]) -> RateLimitSettings:
    """Read and check the RATE_LIMIT_* settings; raises ConfigurationError naming the bad one."""
    policies: dict[Api, RatePolicy] = {}
    for api, name in POLICY_SETTINGS.items():
        try:
            policies[api] = RatePolicy(api, parse_windows(setting(env, name) or ""))
        except ValueError as error:  # its message repeats the value: only when that may be shown
            raw = setting(env, name) or ""
            reason = (f"{name} {error}." if showable(raw) else f"{name} must list windows like `100/60,1500/3600` "
                      f"(calls/seconds, comma-separated), got {shown(raw)}.")
            raise ConfigurationError(reason, setting=name) from None

    margin = _number(env, "RATE_LIMIT_MARGIN_SECONDS", minimum=0, maximum=MAX_MARGIN_SECONDS, unit="seconds")
    table = _table_name(env, "RATE_LIMIT_TABLE")
    retries = _whole(env, "RATE_LIMIT_MAX_CONFLICT_RETRIES", minimum=0, maximum=MAX_CONFLICT_RETRIES)
    share = _number(env, "RATE_LIMIT_NEW_STATE_SHARE", minimum=0, maximum=1, above=True)
    return RateLimitSettings(policies=MappingProxyType(policies), margin_seconds=margin, table_name=table,
                             max_conflict_retries=retries, new_state_share=share)


#: Every table the gateway keeps, each for one kind of record (names are case-insensitive in Table Storage).
TABLE_SETTINGS = ("RATE_LIMIT_TABLE", "ANSWER_CACHE_TABLE", "OPERATIONS_TABLE", "FILE_HASH_TABLE", "HISTORY_TABLE")


def check_distinct_tables(env: Mapping[str, str]) -> None:
    """Each table setting names a table of its own; ConfigurationError names every one that repeats an earlier one."""
    seen: dict[str, str] = {}
    problems = []
    for name in TABLE_SETTINGS:
        table = (setting(env, name) or "").lower()
        if table in seen:
            problems.append(SettingProblem(name, f"{name} must differ from {seen[table]}: each table holds one kind "
                                                 "of record."))
        seen.setdefault(table, name)
    if problems:
        raise ConfigurationError.of(problems)


def _table_name(env: Mapping[str, str], name: str) -> str:
    table = setting(env, name) or ""
    if not TABLE_NAME.fullmatch(table):
        raise ConfigurationError(f"{name} must be a table name (a letter, then 2-62 letters or digits), "
                                 f"got {shown(table)}.", setting=name)
    return table


_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}", re.ASCII)


def load_storage_settings(env: Mapping[str, str]) -> StorageSettings:
    """`AzureWebJobsStorage` if set, otherwise the identity-based `AzureWebJobsStorage__*` settings."""
    connection_string = setting(env, "AzureWebJobsStorage")
    if connection_string:
        from azure.data.tables import TableClient  # the SDK's own parser: what the clients will make of it

        try:
            TableClient.from_connection_string(connection_string, "check")  # no request is made
        except ValueError:  # its message is not repeated: a connection string holds the account key
            raise ConfigurationError("AzureWebJobsStorage is not a usable connection string (the Table client cannot "
                                     "parse it).", setting="AzureWebJobsStorage") from None
        return StorageSettings(connection_string, None, None, None)
    account = setting(env, "AzureWebJobsStorage__accountName")
    if account and not _ACCOUNT_NAME.fullmatch(account):
        raise ConfigurationError(
            f"AzureWebJobsStorage__accountName must be 3-24 lowercase letters or digits, got {shown(account)}.",
            setting="AzureWebJobsStorage__accountName")
    endpoint = _service_uri(env, "AzureWebJobsStorage__tableServiceUri", account, "table")
    queue_endpoint = _service_uri(env, "AzureWebJobsStorage__queueServiceUri", account, "queue")
    if endpoint is None:
        raise ConfigurationError(
            "No storage for the rate limits: set AzureWebJobsStorage (a connection string, local use) or "
            "AzureWebJobsStorage__tableServiceUri (or __accountName) with AzureWebJobsStorage__credential="
            "managedidentity (Azure).", setting="AzureWebJobsStorage__tableServiceUri")
    credential_kind = (setting(env, "AzureWebJobsStorage__credential") or "").lower()
    if credential_kind != "managedidentity":
        raise ConfigurationError(
            "AzureWebJobsStorage__credential must be `managedidentity` for identity-based storage, "
            f"got {shown(credential_kind)}.", setting="AzureWebJobsStorage__credential")
    if queue_endpoint is None:
        raise ConfigurationError(
            "No queue endpoint for identity-based storage: set AzureWebJobsStorage__queueServiceUri (or "
            "__accountName).", setting="AzureWebJobsStorage__queueServiceUri")
    blob_endpoint = _service_uri(env, "AzureWebJobsStorage__blobServiceUri", account, "blob") \
        or sibling_endpoint(endpoint, "table", "blob")
    if blob_endpoint is None:
        raise ConfigurationError(
            "No blob endpoint for identity-based storage (results too large for a table entity): set "
            "AzureWebJobsStorage__blobServiceUri (or __accountName).", setting="AzureWebJobsStorage__blobServiceUri")
    return StorageSettings(None, endpoint, queue_endpoint, setting(env, "AzureWebJobsStorage__clientId"),
                           blob_endpoint)


def _service_uri(env: Mapping[str, str], name: str, account: str | None, service: str) -> str | None:
    """An identity-based endpoint: the `name` setting (a plain https URL), else the account's public one."""
    uri = setting(env, name)
    if uri:
        parts = split_url(uri)
        if (parts is None or parts.scheme != "https" or not parts.hostname or parts.query or parts.username
                or parts.password):
            raise ConfigurationError(f"{name} must be a plain https URL (no user info or query), "
                                     f"got {shown_url(uri)}.", setting=name)
        return uri.rstrip("/")
    return f"https://{account}.{service}.core.windows.net" if account else None


MAX_CACHE_SECONDS = 3600


def load_answer_cache_settings(env: Mapping[str, str]) -> AnswerCacheSettings:
    seconds = _whole(env, "FILE_ALERTS_CACHE_SECONDS", minimum=0, maximum=MAX_CACHE_SECONDS, unit="seconds")
    share = _whole(env, "HUNTING_SHARE_SECONDS", minimum=0, maximum=MAX_CACHE_SECONDS, unit="seconds")
    return AnswerCacheSettings(seconds, _table_name(env, "ANSWER_CACHE_TABLE"), _table_name(env, "FILE_HASH_TABLE"),
                               share)


MAX_QUEUE_RETRIES = 20


def load_async_settings(env: Mapping[str, str]) -> AsyncSettings:
    queue = setting(env, "REQUESTS_QUEUE") or ""
    if not QUEUE_NAME.fullmatch(queue) or len(queue) > MAX_REQUESTS_QUEUE_LENGTH:
        raise ConfigurationError(
            f"REQUESTS_QUEUE must be a queue name (3-{MAX_REQUESTS_QUEUE_LENGTH} lowercase letters, digits and single "
            f"hyphens, room left for the waiting queues' suffixes and -poison), got {shown(queue)}.",
            setting="REQUESTS_QUEUE")
    table = _table_name(env, "OPERATIONS_TABLE")
    hours = _whole(env, "OPERATIONS_RETENTION_HOURS", minimum=1, maximum=720, unit="hours")
    async_on_throttle = _switch(env, "GATEWAY_ASYNC_ON_THROTTLE")
    retries = _whole(env, "QUEUE_MAX_RETRIES", minimum=0, maximum=MAX_QUEUE_RETRIES)
    schedule = setting(env, "MAINTENANCE_SCHEDULE") or ""
    try:  # as the host reads the timer's schedule: else the timer function is in error
        cron = isinstance(parse_schedule(schedule), CronExpression)
    except ValueError:
        cron = False
    if not cron:  # a TimeSpan the host reads, but only on an App Service plan: this app runs on Flex Consumption
        raise ConfigurationError(
            "MAINTENANCE_SCHEDULE must be an NCRONTAB schedule with six fields (second minute hour day month "
            "weekday, e.g. '0 */1 * * * *') or five (no seconds, e.g. '*/5 * * * *'); a TimeSpan runs only on an App "
            f"Service plan, not on Flex Consumption; got {shown(schedule)}.", setting="MAINTENANCE_SCHEDULE")
    container = setting(env, "RESULTS_CONTAINER") or ""
    if not CONTAINER_NAME.fullmatch(container):
        raise ConfigurationError(
            "RESULTS_CONTAINER must be a blob container name (3-63 lowercase letters, digits and single hyphens, "
            f"starting and ending with a letter or digit), got {shown(container)}.", setting="RESULTS_CONTAINER")
    return AsyncSettings(queue, table, hours * 3600, async_on_throttle, retries, _table_name(env, "HISTORY_TABLE"),
                         container)



def _guids(env: Mapping[str, str], name: str) -> frozenset[str]:
    raw = setting(env, name) or ""
    values = [value.strip().lower() for value in raw.split(",") if value.strip()]
    bad = [value for value in values if not GUID.fullmatch(value)]
    if bad:
        raise ConfigurationError(f"{name} must be a comma-separated list of GUIDs, got {shown(bad[0])}.", setting=name)
    return frozenset(values)


def requested_auth(env: Mapping[str, str] | None = None) -> AuthMode:
    """The authentication GATEWAY_AUTH asks for, even while settings are wrong (function keys when unreadable): what
    the host must ask of callers before the gateway can answer them, if only to say it is misconfigured."""
    raw = setting(os.environ if env is None else env, "GATEWAY_AUTH") or ""
    return AuthMode.ENTRA if raw == AuthMode.ENTRA.value else AuthMode.FUNCTION_KEY


def load_auth_settings(env: Mapping[str, str]) -> AuthSettings:
    """GATEWAY_AUTH and, with Entra ID, the platform's authentication in front, the bearer token's own check (the
    issuer and audiences the gateway validates it against) and the allowed callers."""
    auth = setting(env, "GATEWAY_AUTH") or ""
    if auth not in {mode.value for mode in AuthMode}:
        raise ConfigurationError(f"GATEWAY_AUTH must be function-key or entra, got {shown(auth)}.",
                                 setting="GATEWAY_AUTH")
    mode = AuthMode(auth)
    if mode is AuthMode.FUNCTION_KEY:
        return AuthSettings(mode)
    if (setting(env, "WEBSITE_AUTH_ENABLED") or "").lower() != "true":
        raise ConfigurationError(
            "WEBSITE_AUTH_ENABLED is not true: GATEWAY_AUTH=entra needs App Service authentication (Entra ID) turned "
            "on for the app (infra/entra-auth.bicep), which alone strips and sets the caller's X-MS-CLIENT-PRINCIPAL "
            "headers; without it anyone could name any caller. Turn authentication on, or set "
            "GATEWAY_AUTH=function-key.", setting="WEBSITE_AUTH_ENABLED")
    return AuthSettings(mode, _guids(env, "GATEWAY_ALLOWED_APPLICATIONS"), _guids(env, "GATEWAY_ALLOWED_PRINCIPALS"),
                        token_check(setting(env, "GATEWAY_TOKEN_ISSUER"), setting(env, "GATEWAY_TOKEN_AUDIENCES")))


def load_telemetry_settings(env: Mapping[str, str]) -> TelemetrySettings:
    """APPLICATIONINSIGHTS_* (where the telemetry goes, and with which identity) and TELEMETRY_CONSOLE."""
    connection = setting(env, "APPLICATIONINSIGHTS_CONNECTION_STRING")
    if connection and "instrumentationkey=" not in connection.lower():  # never echoed: it names the component
        raise ConfigurationError("APPLICATIONINSIGHTS_CONNECTION_STRING must be an Application Insights connection "
                                 "string (InstrumentationKey=...;IngestionEndpoint=...).",
                                 setting="APPLICATIONINSIGHTS_CONNECTION_STRING")
    raw_auth = setting(env, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or ""
    parts = {key.strip().lower(): value.strip() for key, _, value in
             (part.partition("=") for part in raw_auth.split(";") if part.strip())}
    client_id = parts.get("clientid") or None
    if raw_auth and (parts.get("authorization", "").upper() != "AAD" or set(parts) - {"authorization", "clientid"}
                     or (client_id is not None and not GUID.fullmatch(client_id.lower()))):
        raise ConfigurationError(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be `Authorization=AAD` or "
            "`ClientId=<client id>;Authorization=AAD`.",
            setting="APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    return TelemetrySettings(connection, bool(raw_auth), client_id.lower() if client_id else None,
                             _switch(env, "TELEMETRY_CONSOLE"))


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads from its app settings, checked once at start-up."""

    access: AuthSettings
    defender: DefenderSettings
    rate_limits: RateLimitSettings
    storage: StorageSettings
    answer_cache: AnswerCacheSettings
    asynchronous: AsyncSettings
    telemetry: TelemetrySettings

    @property
    def auth(self) -> AuthMode:
        return self.access.mode


_T = TypeVar("_T")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting (the process environment by default).

    Raises one ConfigurationError naming every bad setting (each group of settings is checked even when
    another failed), so an operator fixes them all at once.
    """
    env = os.environ if env is None else env
    problems: list[SettingProblem] = []

    def checked(load: Callable[[Mapping[str, str]], _T]) -> _T | None:
        try:
            return load(env)
        except ConfigurationError as error:
            problems.extend(error.problems)
            return None

    access = checked(load_auth_settings)
    defender = checked(load_defender_settings)
    rate_limits = checked(load_rate_limit_settings)
    storage = checked(load_storage_settings)
    answer_cache = checked(load_answer_cache_settings)
    asynchronous = checked(load_async_settings)
    telemetry = checked(load_telemetry_settings)
    if access is not None and defender is not None:
        callers = checked(lambda values: load_tenant_callers(values, defender.multi_tenant))
        access = replace(access, tenant_callers=callers) if callers is not None else access
    checked(check_distinct_tables)
    if problems:
        raise ConfigurationError.of(problems)
    assert access and defender and rate_limits and storage and answer_cache and asynchronous and telemetry
    return Settings(access, defender, rate_limits, storage, answer_cache, asynchronous, telemetry)
