"""Parsing the RATE_LIMIT_* settings."""

from __future__ import annotations

import pytest

from shared.configuration import ConfigurationError
from shared.defender.facts import Api
from shared.ratelimit import RatePolicy, Window, parse_windows
from shared.settings import load_rate_limit_settings

FILE_ALERTS, CREATE_ALERT = Api.FILE_ALERTS, Api.CREATE_ALERT


def test_defaults_are_defenders_documented_limits() -> None:
    settings = load_rate_limit_settings({})
    assert settings.policies[FILE_ALERTS].windows == (Window(100, 60), Window(1500, 3600))
    assert settings.policies[CREATE_ALERT].windows == (Window(15, 60),)
    assert settings.margin_seconds == 2.0
    assert settings.table_name == "mdegatewayratelimits"
    assert settings.max_conflict_retries == 10
    assert settings.new_state_share == 0.5


def test_values_are_read_and_windows_sorted_shortest_first() -> None:
    settings = load_rate_limit_settings({
        "RATE_LIMIT_FILE_ALERTS": " 1500 / 3600 , 100/60 ",
        "RATE_LIMIT_CREATE_ALERT": "5/10",
        "RATE_LIMIT_MARGIN_SECONDS": "0.5",
        "RATE_LIMIT_TABLE": "Limits2",
        "RATE_LIMIT_MAX_CONFLICT_RETRIES": "0",
        "RATE_LIMIT_NEW_STATE_SHARE": "1",
    })
    assert settings.policies[FILE_ALERTS].windows == (Window(100, 60), Window(1500, 3600))
    assert settings.policies[CREATE_ALERT].windows == (Window(5, 10),)
    assert (settings.margin_seconds, settings.table_name, settings.max_conflict_retries) == (0.5, "Limits2", 0)
    assert settings.new_state_share == 1.0


def test_empty_values_fall_back_to_defaults() -> None:
    settings = load_rate_limit_settings({"RATE_LIMIT_FILE_ALERTS": "  "})
    assert settings.policies[FILE_ALERTS].windows[0] == Window(100, 60)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("RATE_LIMIT_FILE_ALERTS", "100", "RATE_LIMIT_FILE_ALERTS must list windows like"),
    ("RATE_LIMIT_FILE_ALERTS", "100/60,", "'' is not one"),
    ("RATE_LIMIT_FILE_ALERTS", "100/60;1500/3600", r"must list windows like .*not shown"),
    ("RATE_LIMIT_FILE_ALERTS", "-1/60", "is not one"),
    ("RATE_LIMIT_FILE_ALERTS", "1.5/60", "is not one"),
    ("RATE_LIMIT_FILE_ALERTS", "0/60", "limit must be between 1 and 5000"),
    ("RATE_LIMIT_FILE_ALERTS", "6000/60", "limit must be between 1 and 5000"),
    ("RATE_LIMIT_FILE_ALERTS", "10/0", "must last 1 to 86400 seconds"),
    ("RATE_LIMIT_CREATE_ALERT", "15/60,20/60", "RATE_LIMIT_CREATE_ALERT lists the same window length twice"),
    ("RATE_LIMIT_MARGIN_SECONDS", "two", "RATE_LIMIT_MARGIN_SECONDS must be a number"),
    ("RATE_LIMIT_MARGIN_SECONDS", "-1", "RATE_LIMIT_MARGIN_SECONDS must be between 0 and 60"),
    ("RATE_LIMIT_MARGIN_SECONDS", "nan", "RATE_LIMIT_MARGIN_SECONDS must be between 0 and 60"),
    ("RATE_LIMIT_TABLE", "rate-limits", "RATE_LIMIT_TABLE must be a table name"),
    ("RATE_LIMIT_TABLE", "ab", "RATE_LIMIT_TABLE must be a table name"),
    ("RATE_LIMIT_TABLE", "Tables", "RATE_LIMIT_TABLE must be a table name"),
    ("RATE_LIMIT_MAX_CONFLICT_RETRIES", "-1", "RATE_LIMIT_MAX_CONFLICT_RETRIES must be a whole number"),
    ("RATE_LIMIT_MAX_CONFLICT_RETRIES", "1e3", "RATE_LIMIT_MAX_CONFLICT_RETRIES must be a whole number"),
    ("RATE_LIMIT_MAX_CONFLICT_RETRIES", "101", "from 0 to 100"),
    ("RATE_LIMIT_NEW_STATE_SHARE", "0", "greater than 0 and at most 1"),
    ("RATE_LIMIT_NEW_STATE_SHARE", "1.5", "greater than 0 and at most 1"),
    ("RATE_LIMIT_NEW_STATE_SHARE", "half", "greater than 0 and at most 1"),
    ("RATE_LIMIT_NEW_STATE_SHARE", "nan", "greater than 0 and at most 1"),
])
def test_bad_values_name_the_setting(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        load_rate_limit_settings({name: value})
    assert name in str(caught.value)


def test_policy_rejects_unsafe_api_names_and_empty_windows() -> None:
    with pytest.raises(ValueError, match="API name"):
        RatePolicy("files/alerts", (Window(1, 1),))
    with pytest.raises(ValueError, match="at least one window"):
        RatePolicy("x", ())


def test_window_names_are_their_seconds() -> None:
    assert [w.name for w in parse_windows("100/60,1500/3600")] == ["60s", "3600s"]
