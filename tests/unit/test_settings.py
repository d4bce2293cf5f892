"""Clouds, token scopes and the base-URL allowlist (no SSRF)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from shared.catalogue import CATALOGUE
from shared.configuration import ConfigurationError
from shared.defender.base_url import judge_base_url
from shared.defender.clouds import CLOUDS, is_loopback
from shared.defender.outbound import Target, connection_target
from shared.http.settings import token_check
from shared.settings import (
    load_answer_cache_settings,
    load_async_settings,
    load_defender_settings,
    load_rate_limit_settings,
    load_settings,
)
from tests.support.rigs import UNIT_ENV

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MANY_TENANTS = {"MDE_TENANTS": f"contoso={TENANT}", "MDE_MULTITENANT_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
                "AZURE_CLIENT_ID": "66666666-7777-8888-9999-000000000000"}


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
    "https://api.securitycenter.microsoft.com:443/",
    "HTTPS://API.SecurityCenter.Microsoft.com",
    "https://localhost:8443",
    "https://127.0.0.1",
    "http://[::1]",
])
def test_allowed_base_urls(url: str) -> None:
    assert load_defender_settings({"MDE_BASE_URL": url}).base_url == url.rstrip("/")


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


@pytest.mark.parametrize(("url", "reason"), [
    # requests would connect to evil.com: it reads the backslash as the end of the host.
    ("https://evil.com\\.securitycenter.microsoft.com", "without backslashes or percent-encoding"),
    ("https://evil.com%2f.securitycenter.microsoft.com", "without backslashes or percent-encoding"),
    ("https://evil.com%2F.securitycenter.microsoft.com", "without backslashes or percent-encoding"),
    ("http://[::1%25eth0]:7073", "without backslashes or percent-encoding"),
    ("https://evil.com@api.securitycenter.microsoft.com", "without credentials"),
    ("https://api.securitycenter.microsoft.com@evil.com", "without credentials"),
    ("https://api.securitycenter.microsoft.com#", "without credentials, query or fragment"),
    ("https://api.securitycenter.microsoft.com#x", "without credentials, query or fragment"),
    ("https://api.securitycenter.microsoft.com?", "without credentials, query or fragment"),
    ("https://evil.com\t.securitycenter.microsoft.com", "printable ASCII"),
    ("https://evil.com\n.securitycenter.microsoft.com", "printable ASCII"),
    ("https://evil.com .securitycenter.microsoft.com", "printable ASCII"),
    ("https://api.securitycenter.microsoft.com\x00", "printable ASCII"),
    ("https://evil.com\uff0f.securitycenter.microsoft.com", "printable ASCII"),  # full-width solidus
    ("https://\uff41pi.securitycenter.microsoft.com", "printable ASCII"),  # full-width a
    ("https://b\u00fccher.securitycenter.microsoft.com", "printable ASCII"),  # IDN, not in xn-- form
    ("https://api.securitycenter.microsoft.com.", "must not end with a dot"),
    ("http://localhost.:8080", "must not end with a dot"),
    ("https://.securitycenter.microsoft.com", "not a Defender for Endpoint API host"),
    ("https://evil.com;.securitycenter.microsoft.com", "not a Defender for Endpoint API host"),
    ("https://securitycenter.microsoft.com.evil.com", "not a Defender for Endpoint API host"),
    ("https://", "has no host"),
    ("https://:443", "has no host"),
    ("http://127.1", "must use https unless it points at loopback"),
    ("http://0x7f.0.0.1", "must use https unless it points at loopback"),
    ("http://2130706433", "must use https unless it points at loopback"),
    ("http://127.000.0.1", "must use https unless it points at loopback"),
    ("http://[0:0::1]:7073", "must use https unless it points at loopback"),
    ("http://[::ffff:127.0.0.1]:7073", "must use https unless it points at loopback"),
    ("https://20.190.151.68", "not a Defender for Endpoint API host"),
    ("https://[2603:1030::1]", "not a Defender for Endpoint API host"),
    ("https://api.securitycenter.microsoft.com:8443", "port 443"),
    ("https://api.securitycenter.microsoft.com:99999", "not a valid URL"),
    ("https://api.securitycenter.microsoft.com:443:443", "not a valid URL"),
    ("http://[localhost]:7073", "not a valid URL"),
    ("http://127.0.0.1:0", "would connect to"),
    ("https://api.securitycenter.microsoft.com/api", "without a path"),
    ("https://api.securitycenter.microsoft.com//", "without a path"),
])
def test_ambiguous_base_urls_are_refused(url: str, reason: str) -> None:
    """Refused: anything two URL parsers may read differently, so the allowlist judges the host that is called."""
    with pytest.raises(ConfigurationError, match=reason):
        load_defender_settings({"MDE_BASE_URL": url})


def test_credentials_in_the_base_url_are_not_repeated() -> None:
    with pytest.raises(ConfigurationError, match="without credentials") as caught:
        load_defender_settings({"MDE_BASE_URL": "https://user:s3cret@api.securitycenter.microsoft.com"})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(("env", "target"), [
    ({}, Target("https", "api.securitycenter.microsoft.com", 443)),
    ({"MDE_CLOUD": "gcc-high"}, Target("https", "api-gov.securitycenter.microsoft.us", 443)),
    ({"MDE_BASE_URL": "https://EU.api.security.microsoft.com:443/"},
     Target("https", "eu.api.security.microsoft.com", 443)),
    ({"MDE_BASE_URL": "http://localhost:7073"}, Target("http", "localhost", 7073)),
    ({"MDE_BASE_URL": "https://127.0.0.1"}, Target("https", "127.0.0.1", 443)),
    ({"MDE_BASE_URL": "http://[::1]"}, Target("http", "::1", 80)),
])
def test_settings_carry_the_judged_target(env: dict[str, str], target: Target) -> None:
    assert load_defender_settings(env).target == target


@pytest.mark.parametrize("cloud", list(CLOUDS))
def test_every_cloud_default_connects_where_it_was_judged(cloud: str) -> None:
    settings = load_defender_settings({"MDE_CLOUD": cloud})
    assert settings.target == connection_target(settings.base_url)
    assert settings.target.scheme == "https" and settings.target.port == 443


@pytest.mark.parametrize(("url", "target"), [
    ("https://evil.com\\.securitycenter.microsoft.com", Target("https", "evil.com", 443)),
    # requests upper-cases the escape; urlparse keeps the case of what follows a `%` (an IPv6 zone id).
    ("https://evil.com%2f.securitycenter.microsoft.com",
     Target("https", "evil.com%2F.securitycenter.microsoft.com", 443)),
    ("HTTP://[::1]:7073/api", Target("http", "::1", 7073)),
    ("http://LOCALHOST:0/", Target("http", "localhost", 80)),
])
def test_connection_target_is_where_requests_connects(url: str, target: Target) -> None:
    assert connection_target(url) == target


@pytest.mark.parametrize("url", ["https:///api", "api.securitycenter.microsoft.com", "ftp://127.0.0.1/",
                                 "https://evil.com\t.securitycenter.microsoft.com", "https://a.b:99999"])
def test_connection_target_refuses_what_requests_cannot_prepare(url: str) -> None:
    with pytest.raises(ValueError, match=r"cannot be prepared|no http"):
        connection_target(url)


def test_target_reads_as_a_url_origin() -> None:
    assert str(Target("http", "::1", 7073)) == "http://[::1]:7073"
    assert str(Target("https", "api.securitycenter.microsoft.com", 443)) == "https://api.securitycenter.microsoft.com:443"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("MDE_CREDENTIAL", "client-secret", "MDE_CREDENTIAL must be managed-identity or default"),
    ("MDE_READ_TIMEOUT_SECONDS", "soon", "must be a number"),
    ("MDE_TOTAL_TIMEOUT_SECONDS", "600", "between 1 and 220"),
    ("MDE_MAX_RETRIES", "-1", "whole number from 0 to 10"),
])
def test_bad_numbers_and_choices_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_defender_settings({name: value})


WHOLE_NUMBER_SETTINGS = [
    (load_defender_settings, "MDE_MAX_RETRIES", "whole number from 0 to 10"),
    (load_rate_limit_settings, "RATE_LIMIT_MAX_CONFLICT_RETRIES", "whole number from 0 to 100"),
    (load_answer_cache_settings, "FILE_ALERTS_CACHE_SECONDS", "whole number of seconds from 0 to 3600"),
    (load_async_settings, "OPERATIONS_RETENTION_HOURS", "whole number of hours from 1 to 720"),
    (load_async_settings, "QUEUE_MAX_RETRIES", "whole number from 0 to 20"),
]


@pytest.mark.parametrize(("load", "name", "message"), WHOLE_NUMBER_SETTINGS)
@pytest.mark.parametrize("value", ["2.5", "2.0", "1e1", "+2", "2 2", "\u0662", "0x2", "1_0", "9" * 5])
def test_whole_number_settings_take_ascii_digits_only(load: Callable[[dict[str, str]], object], name: str,
                                                      message: str, value: str) -> None:
    """One rule for every whole-number setting: a count is written in digits, nothing a float parser also reads."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        load({name: value})
    assert [problem.setting for problem in caught.value.problems] == [name]


@pytest.mark.parametrize(("load", "name", "message"), WHOLE_NUMBER_SETTINGS)
def test_whole_number_settings_take_their_range(load: Callable[[dict[str, str]], object], name: str,
                                                message: str) -> None:
    bounds = re.search(r"from ([0-9]+) to ([0-9]+)", message)
    assert bounds is not None
    low, high = int(bounds[1]), int(bounds[2])
    for accepted in (str(low), str(high), f"0{high}"[-len(str(high)):]):
        load({name: accepted})
    for refused in (str(low - 1), str(high + 1)):
        with pytest.raises(ConfigurationError, match=message):
            load({name: refused})


def test_timeouts_must_fit_in_the_total() -> None:
    with pytest.raises(ConfigurationError, match="must not exceed MDE_TOTAL_TIMEOUT_SECONDS"):
        load_defender_settings({"MDE_READ_TIMEOUT_SECONDS": "50", "MDE_TOTAL_TIMEOUT_SECONDS": "20"})


def test_catalogue_names_are_unique_and_described() -> None:
    names = [spec.name for spec in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(spec.description.strip() for spec in CATALOGUE)


LOOPBACK_SPELLINGS = [("localhost", True), ("[::1]", True), ("127.0.0.1", True), ("127.9.8.7", True),
                      ("127.1", False), ("0x7f.0.0.1", False), ("2130706433", False), ("127.000.0.1", False),
                      ("128.0.0.1", False), ("localhost.", False), ("[::ffff:127.0.0.1]", False)]


@pytest.mark.parametrize(("host", "loopback"), LOOPBACK_SPELLINGS)
def test_one_loopback_rule_for_every_url_that_may_point_here(host: str, loopback: bool) -> None:
    """The base URL, the token exchange's authority and the token issuer each accept a loopback host only as
    shared.defender.clouds.is_loopback reads it: one rule, the same answer everywhere."""
    assert is_loopback(host.strip("[]")) is loopback

    def accepted(check: Callable[[], object]) -> bool:
        try:
            check()
        except ConfigurationError:
            return False
        return True

    assert accepted(lambda: judge_base_url(f"http://{host}:7073")) is loopback
    assert accepted(lambda: load_settings({**UNIT_ENV, **MANY_TENANTS,
                                           "MDE_AUTHORITY_HOST": f"https://{host}:8443"})) is loopback
    assert accepted(lambda: token_check(f"https://{host}:8443/{TENANT}/v2.0", "api://gateway")) is loopback


#: Schedules the Functions host accepts for a timer on Flex Consumption (NCRONTAB with or without seconds, names).
HOST_SCHEDULES = ["0 */1 * * * *", "*/5 * * * *", "0 0 * * MON-FRI", "0 30 9 * JAN,jul Sun", "0 0-30/10 * * * *"]
#: TimeSpan schedules: the host reads them, but runs them only on an App Service plan.
TIMESPANS = ["00:05:00", "1.02:03:04.5", "01:30", "2"]
#: Schedules it refuses (the timer function would be in error): neither cron nor a TimeSpan longer than zero.
NOT_SCHEDULES = ["every minute", "61 * * * * *", "0 0 * * * * *", "* * * *", "0 0 * * 7", "0 0 0 0 * *",
                 "*/0 * * * *", "30-10 * * * *", "0 0 * * FUNDAY", "24:00:00", "00:60", "00:00:00"]


@pytest.mark.parametrize("schedule", HOST_SCHEDULES)
def test_maintenance_schedule_takes_what_the_host_takes(schedule: str) -> None:
    """Five-field cron too, as the host's TimerSchedule.Create (read by the same parser as the local host's timers:
    localdev.timer_schedule)."""
    from localdev.timer_schedule import parse_schedule as host_parse

    load_async_settings({"MAINTENANCE_SCHEDULE": schedule})
    host_parse(schedule)


@pytest.mark.parametrize("schedule", NOT_SCHEDULES)
def test_maintenance_schedule_refuses_what_the_host_refuses_naming_it(schedule: str) -> None:
    from localdev.timer_schedule import parse_schedule as host_parse

    with pytest.raises(ConfigurationError, match="MAINTENANCE_SCHEDULE must be an NCRONTAB schedule") as caught:
        load_async_settings({"MAINTENANCE_SCHEDULE": schedule})
    assert [problem.setting for problem in caught.value.problems] == ["MAINTENANCE_SCHEDULE"]
    with pytest.raises(ValueError, match="not recognized"):
        host_parse(schedule)


@pytest.mark.parametrize("schedule", TIMESPANS)
def test_maintenance_schedule_refuses_a_timespan_which_flex_consumption_does_not_run(schedule: str) -> None:
    """The local host runs a TimeSpan as the host reads it; the app's own timer is refused one, naming why."""
    from localdev.timer_schedule import parse_schedule as host_parse

    host_parse(schedule)
    with pytest.raises(ConfigurationError, match="a TimeSpan runs only on an App Service plan"):
        load_async_settings({"MAINTENANCE_SCHEDULE": schedule})
