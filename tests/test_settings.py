"""Clouds, token scopes and the base-URL allowlist (no SSRF)."""

from __future__ import annotations

import pytest

from shared.settings import CATALOGUE, ConfigurationError, load_defender_settings, validate_base_url


@pytest.mark.parametrize(("cloud", "base_url", "scope"), [
    ("commercial", "https://api.securitycenter.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("eu", "https://eu.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("us", "https://us.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("uk", "https://uk.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("au", "https://au.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("swa", "https://swa.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("ina", "https://ina.api.security.microsoft.com", "https://api.securitycenter.microsoft.com/.default"),
    ("gcc", "https://api-gcc.securitycenter.microsoft.us", "https://api-gcc.securitycenter.microsoft.us/.default"),
    ("gcc-high", "https://api-gov.securitycenter.microsoft.us", "https://api-gov.securitycenter.microsoft.us/.default"),
    ("DoD", "https://api-gov.securitycenter.microsoft.us", "https://api-gov.securitycenter.microsoft.us/.default"),
])
def test_each_cloud_has_its_host_and_token_scope(cloud: str, base_url: str, scope: str) -> None:
    settings = load_defender_settings({"MDE_CLOUD": cloud})
    assert settings.base_url == base_url
    assert settings.cloud.scope == scope


def test_default_cloud_is_commercial_with_managed_identity() -> None:
    settings = load_defender_settings({})
    assert settings.cloud.name == "commercial"
    assert settings.credential_kind == "managed-identity"
    assert settings.managed_identity_client_id is None


def test_unknown_cloud_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="MDE_CLOUD must be one of commercial, us, eu"):
        load_defender_settings({"MDE_CLOUD": "mooncake"})


def test_base_url_override_keeps_the_cloud_scope() -> None:
    settings = load_defender_settings({"MDE_CLOUD": "gcc", "MDE_BASE_URL": "https://api.security.microsoft.com/"})
    assert settings.base_url == "https://api.security.microsoft.com"
    assert settings.cloud.scope == "https://api-gcc.securitycenter.microsoft.us/.default"


@pytest.mark.parametrize("url", [
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://eu.api.security.microsoft.com",
    "https://api-eu.securitycenter.microsoft.com",
    "https://api.securitycenter.windows.com",
    "https://api-gov.securitycenter.microsoft.us",
    "http://127.0.0.1:7073",
    "http://localhost:8080",
    "http://127.5.5.5:80",
    "http://[::1]:7073",
])
def test_allowed_base_urls(url: str) -> None:
    assert validate_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(("url", "reason"), [
    ("http://api.securitycenter.microsoft.com", "must use https"),
    ("https://evil.example.com", "not a Defender for Endpoint API host"),
    ("https://api.securitycenter.microsoft.com.evil.com", "not a Defender for Endpoint API host"),
    ("https://evilsecuritycenter.microsoft.com", "not a Defender for Endpoint API host"),
    ("https://169.254.169.254", "not a Defender for Endpoint API host"),
    ("http://10.0.0.5:7073", "must use https"),
    ("https://user:pass@api.securitycenter.microsoft.com", "without credentials"),
    ("https://api.securitycenter.microsoft.com/?x=1", "without credentials, query"),
    ("ftp://127.0.0.1/", "must use http or https"),
])
def test_refused_base_urls(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        load_defender_settings({"MDE_BASE_URL": url})


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MDE_CREDENTIAL", "client-secret", "MDE_CREDENTIAL must be managed-identity or default"),
    ("MDE_READ_TIMEOUT_SECONDS", "soon", "must be a number"),
    ("MDE_TOTAL_TIMEOUT_SECONDS", "600", "between 1 and 220"),
    ("MDE_MAX_RETRIES", "-1", "between 0 and 10"),
])
def test_bad_numbers_and_choices_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_defender_settings({name: value})


def test_timeouts_must_fit_in_the_total() -> None:
    with pytest.raises(ConfigurationError, match="must not exceed MDE_TOTAL_TIMEOUT_SECONDS"):
        load_defender_settings({"MDE_READ_TIMEOUT_SECONDS": "50", "MDE_TOTAL_TIMEOUT_SECONDS": "20"})


def test_catalogue_names_are_unique_and_described() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(spec.description.strip() for spec in CATALOGUE)
