"""Every setting the gateway reads, in one catalogue, and their validation at start-up.

The catalogue is the single list the infrastructure tests check the Bicep
templates against (both ways), and the source of the README's configuration table.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.clouds import ALLOWED_HOST_SUFFIXES, CLOUDS, LOOPBACK_HOSTS, Cloud


class ConfigurationError(ValueError):
    """A setting is missing or wrong; the message says which and how to fix it."""


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
                "gates every call and the functions require its client-principal header instead of a key.", True),
    SettingSpec("MDE_CLOUD", "commercial",
                "Defender cloud: " + ", ".join(CLOUDS) + ". Chooses API host and token scope.", True),
    SettingSpec("MDE_BASE_URL", None,
                "Override of the API base URL: https on a documented Defender domain, or http on loopback "
                "(the local simulator). Anything else is refused at start-up."),
    SettingSpec("MDE_CREDENTIAL", "managed-identity",
                "`managed-identity` (Azure) or `default` (DefaultAzureCredential: local use against a real tenant).",
                True),
    SettingSpec("AZURE_CLIENT_ID", None,
                "Client id of a user-assigned managed identity; unset means system-assigned."),
    SettingSpec("MDE_CONNECT_TIMEOUT_SECONDS", "5", "TCP/TLS connect timeout for one call to Defender."),
    SettingSpec("MDE_READ_TIMEOUT_SECONDS", "30", "Read timeout for one call to Defender."),
    SettingSpec("MDE_TOTAL_TIMEOUT_SECONDS", "100",
                "Upper bound for one gateway request including retries; kept below the function timeout."),
    SettingSpec("MDE_MAX_RETRIES", "3", "Retries of one call to Defender (GET: 429/502/503/504 and connection "
                "errors; POST: only when it surely did not reach Defender, or 429/503 with Retry-After)."),
    SettingSpec("MDE_MAX_RETRY_AFTER_SECONDS", "10",
                "A Retry-After longer than this is not waited out: the caller gets 429 with it at once."),
    SettingSpec("RATE_LIMIT_FILE_ALERTS", "100/60,1500/3600",
                "Windows for GET files/{sha1}/alerts as `calls/seconds`, comma-separated.", True),
    SettingSpec("RATE_LIMIT_CREATE_ALERT", "15/60",
                "Windows for POST alerts/CreateAlertByReference as `calls/seconds`, comma-separated.", True),
    SettingSpec("RATE_LIMIT_MARGIN_SECONDS", "2",
                "Safety margin added to every window (clock skew between instances, calls in flight)."),
    SettingSpec("RATE_LIMIT_TABLE", "mdegatewayratelimits",
                "Table (created on first use) holding the shared rate-limit state.", True),
    SettingSpec("RATE_LIMIT_MAX_CONFLICT_RETRIES", "10",
                "Optimistic-concurrency (ETag 412) retries before a call is refused."),
    SettingSpec("RATE_LIMIT_NEW_STATE_SHARE", "0.5",
                "Share (above 0, at most 1) of each window that a rate-limit state created from nothing (first "
                "use, or after the table or entity was lost) admits until that window has passed once."),
    SettingSpec("AzureWebJobsStorage", None,
                "Connection string of the storage account (local: Azurite). In Azure use the identity-based "
                "`AzureWebJobsStorage__*` settings instead; no account keys."),
    SettingSpec("AzureWebJobsStorage__tableServiceUri", None,
                "Identity-based storage: Table endpoint of the host's storage account.", True),
    SettingSpec("AzureWebJobsStorage__accountName", None,
                "Identity-based storage: account name (used when no tableServiceUri is set; public cloud only)."),
    SettingSpec("AzureWebJobsStorage__credential", None,
                "Identity-based storage: `managedidentity`.", True),
    SettingSpec("AzureWebJobsStorage__clientId", None,
                "Identity-based storage: client id of a user-assigned identity."),
)

CATALOGUE_BY_NAME: dict[str, SettingSpec] = {spec.name: spec for spec in CATALOGUE}


def setting(env: Mapping[str, str], name: str) -> str | None:
    """Read one catalogued setting (empty counts as unset), falling back to its default."""
    spec = CATALOGUE_BY_NAME[name]
    value = env.get(name, "").strip()
    return value or spec.default


@dataclass(frozen=True)
class DefenderSettings:
    """Where and how the gateway calls Defender for Endpoint."""

    cloud: Cloud
    base_url: str
    credential_kind: str
    managed_identity_client_id: str | None
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_retries: int
    max_retry_after: float


def _number(env: Mapping[str, str], name: str, *, minimum: float, maximum: float) -> float:
    raw = setting(env, name)
    try:
        value = float(raw or "")
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}.") from None
    if not minimum <= value <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum:g} and {maximum:g}, got {value:g}.")
    return value


def validate_base_url(url: str, *, setting_name: str = "MDE_BASE_URL") -> str:
    """Accept https on a documented Defender domain or http(s) on loopback; refuse anything else (no SSRF)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(f"{setting_name} must be a plain base URL without credentials, query or "
                                 f"fragment, got {url!r}.")
    if _is_loopback(host):
        if parts.scheme not in ("http", "https"):
            raise ConfigurationError(f"{setting_name} must use http or https, got {url!r}.")
    elif parts.scheme != "https":
        raise ConfigurationError(f"{setting_name} must use https unless it points at loopback, got {url!r}.")
    elif not any(host == suffix or host.endswith("." + suffix) for suffix in ALLOWED_HOST_SUFFIXES):
        raise ConfigurationError(
            f"{setting_name} host {host!r} is not a Defender for Endpoint API host; allowed are "
            + ", ".join(f"*.{s}" for s in ALLOWED_HOST_SUFFIXES) + " and loopback.")
    return url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_defender_settings(env: Mapping[str, str] | None = None) -> DefenderSettings:
    """Read and check the Defender settings; raises ConfigurationError with a clear message."""
    env = os.environ if env is None else env
    cloud_name = (setting(env, "MDE_CLOUD") or "").lower()
    cloud = CLOUDS.get(cloud_name)
    if cloud is None:
        raise ConfigurationError(f"MDE_CLOUD must be one of {', '.join(CLOUDS)}, got {cloud_name!r}.")
    override = setting(env, "MDE_BASE_URL")
    base_url = validate_base_url(override) if override else cloud.base_url
    credential_kind = (setting(env, "MDE_CREDENTIAL") or "").lower()
    if credential_kind not in ("managed-identity", "default"):
        raise ConfigurationError(f"MDE_CREDENTIAL must be managed-identity or default, got {credential_kind!r}.")
    total = _number(env, "MDE_TOTAL_TIMEOUT_SECONDS", minimum=1, maximum=220)
    connect = _number(env, "MDE_CONNECT_TIMEOUT_SECONDS", minimum=0.1, maximum=60)
    read = _number(env, "MDE_READ_TIMEOUT_SECONDS", minimum=0.1, maximum=200)
    if connect + read > total:
        raise ConfigurationError("MDE_CONNECT_TIMEOUT_SECONDS + MDE_READ_TIMEOUT_SECONDS must not exceed "
                                 "MDE_TOTAL_TIMEOUT_SECONDS.")
    return DefenderSettings(
        cloud=cloud,
        base_url=base_url,
        credential_kind=credential_kind,
        managed_identity_client_id=setting(env, "AZURE_CLIENT_ID"),
        connect_timeout=connect,
        read_timeout=read,
        total_timeout=total,
        max_retries=int(_number(env, "MDE_MAX_RETRIES", minimum=0, maximum=10)),
        max_retry_after=_number(env, "MDE_MAX_RETRY_AFTER_SECONDS", minimum=0, maximum=120),
    )
