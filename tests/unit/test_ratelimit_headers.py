"""The IETF RateLimit headers rendered from a decision."""

from __future__ import annotations

from shared.answers.headers import policy_header, rate_limit_headers
from shared.ratelimit import Decision, RatePolicy, Reason, WindowState, parse_windows

MINUTE = WindowState("60s", 100, 60, remaining=42, reset_seconds=17)
HOUR = WindowState("3600s", 1500, 3600, remaining=1200, reset_seconds=3000)


def decision(*windows: WindowState, admitted: bool = True, reason: Reason = Reason.ADMITTED,
             retry_after: int = 0) -> Decision:
    return Decision("file_alerts", admitted, reason, retry_after, windows, decided_at=0.0)


def test_policy_lists_every_window_and_ratelimit_the_tightest() -> None:
    assert rate_limit_headers(decision(MINUTE, HOUR)) == {
        "RateLimit-Policy": '"60s";q=100;w=60, "3600s";q=1500;w=3600',
        "RateLimit": '"60s";r=42;t=17',
    }


def test_hour_window_reported_when_it_has_fewer_calls_left() -> None:
    hour = WindowState("3600s", 1500, 3600, remaining=3, reset_seconds=900)
    assert rate_limit_headers(decision(MINUTE, hour))["RateLimit"] == '"3600s";r=3;t=900'


def test_tie_reports_the_later_reset() -> None:
    minute = WindowState("60s", 100, 60, remaining=0, reset_seconds=10)
    hour = WindowState("3600s", 1500, 3600, remaining=0, reset_seconds=700)
    headers = rate_limit_headers(decision(minute, hour, admitted=False, reason=Reason.RATE_LIMITED, retry_after=700))
    assert headers["RateLimit"] == '"3600s";r=0;t=700'
    assert headers["Retry-After"] == "700"


def test_refused_by_block_reports_no_calls_left_until_retry_after() -> None:
    headers = rate_limit_headers(decision(MINUTE, HOUR, admitted=False, reason=Reason.BLOCKED, retry_after=30))
    assert headers["RateLimit"] == '"60s";r=0;t=30'
    assert headers["Retry-After"] == "30"


def test_no_retry_after_when_admitted() -> None:
    assert "Retry-After" not in rate_limit_headers(decision(WindowState("60s", 15, 60, 14, 62)))


def test_policy_header_without_a_decision() -> None:
    policy = RatePolicy("file_alerts", parse_windows("1500/3600,100/60"))
    assert policy_header(policy) == '"60s";q=100;w=60, "3600s";q=1500;w=3600'
