"""The IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers, structured-field form).

    RateLimit-Policy: "60s";q=100;w=60, "3600s";q=1500;w=3600
    RateLimit: "60s";r=42;t=17

RateLimit reports the most constrained window (fewest calls left; on a tie the later reset).
`t` is when its oldest counted call leaves the window (window + margin), i.e. when `r` next grows.
A refused call reports r=0 and at least its Retry-After, which is sent too; so does an admitted
call after which the caller must still wait (Defender answered 429).
"""

from __future__ import annotations

from shared.ratelimit import Decision, RatePolicy, WindowState


def policy_header(policy: RatePolicy) -> str:
    """`RateLimit-Policy`: every window of the API, known without reading any state."""
    return ", ".join(_policy_item(w.name, w.limit, w.seconds) for w in policy.windows)


def _policy_item(name: str, limit: int, seconds: int) -> str:
    return f'"{name}";q={limit};w={seconds}'


def rate_limit_headers(decision: Decision, *, wait: int | None = None) -> dict[str, str]:
    """`RateLimit-Policy`, `RateLimit` and, when the caller must wait, `Retry-After`, after `decision`.

    `wait` (seconds) is a wait the decision does not know of: Defender's 429 after an admitted call.
    """
    policy = ", ".join(_policy_item(w.name, w.limit, w.window_seconds) for w in decision.windows)
    tightest = min(decision.windows, key=_constraint)
    remaining, reset = tightest.remaining, tightest.reset_seconds
    headers = {"RateLimit-Policy": policy}
    retry_after = max(decision.retry_after if not decision.admitted else 0, wait or 0)
    if retry_after:
        remaining, reset = 0, max(reset, retry_after)
        headers["Retry-After"] = str(retry_after)
    headers["RateLimit"] = f'"{tightest.name}";r={remaining};t={reset}'
    return headers


def _constraint(window: WindowState) -> tuple[int, int]:
    return window.remaining, -window.reset_seconds
