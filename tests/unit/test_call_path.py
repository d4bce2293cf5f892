"""Gateway.attempt and Gateway.call over the real DefenderClient, limiters and MemoryStore, with Defender's answers
scripted at the requests transport: what is sent, what is retried and how long it waits (on a fake clock), the
shared 429 block, and the connection-target check."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError

from shared.configuration import ConfigurationError
from shared.defender.client import USER_AGENT, DefenderClient, DefenderRequest, IdentityError
from shared.defender.clouds import GCC_SCOPE
from shared.defender.facts import CREATE_FIELDS, DEFAULT_THROTTLE_SECONDS, Api
from shared.defender.gateway import CallResult, Refused, Sent
from shared.defender.outcomes import Malformed, Reach, Rejected, Success, Throttled, Unauthorized, Unavailable
from shared.ratelimit import RateLimitStorageError, Reason
from shared.validation import validate_create_alert
from tests.support.inputs import VALID
from tests.support.rigs import EdgeRig, make_edge
from tests.support.scripted import (
    DEFENDER_URL,
    PRINCIPAL,
    Fail,
    Reply,
    StaticCredential,
    Step,
    alert_reply,
    alerts_reply,
    connect_timeout,
    connection_refused,
    dropped_connection,
    error_reply,
    read_timeout,
)

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
FILE_ALERTS = DefenderRequest.file_alerts(SHA1)
CANONICAL = validate_create_alert({**VALID, "severity": "low", "category": "EXPLOIT", "reportId": 20776})
CREATE = DefenderRequest.create_alert(CANONICAL)
CID = "unit-call-path-0001"


def call(rig: EdgeRig, request: DefenderRequest = FILE_ALERTS) -> CallResult:
    return rig.gateway.call(request, CID)


def ms(seconds: float) -> int:
    return round(seconds * 1000)


# --- what goes out ------------------------------------------------------------------------------------------------

def test_a_get_carries_the_token_the_correlation_id_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # trust_env is off: never used
    rig = make_edge([alerts_reply()])
    identity = rig.gateway.identity()
    assert identity.principal == PRINCIPAL
    attempt = rig.gateway.attempt(FILE_ALERTS, identity, CID)
    assert isinstance(attempt, Sent) and isinstance(attempt.outcome, Success) and attempt.decision.admitted
    (sent,) = rig.transport.calls
    assert (sent.method, sent.url) == ("GET", f"{DEFENDER_URL}/api/files/{SHA1}/alerts")
    assert sent.headers["Authorization"] == f"Bearer {rig.credential.token}"
    assert sent.headers["client-request-id"] == CID
    assert (sent.headers["Accept"], sent.headers["User-Agent"]) == ("application/json", USER_AGENT)
    assert sent.body is None and "Content-Type" not in sent.headers
    assert sent.timeout == (5.0, 30.0) and sent.verify is True and sent.proxies == {}
    assert rig.credential.scopes == [("https://api.securitycenter.microsoft.com/.default",)]
    rig.transport.assert_done()


def test_a_post_sends_the_canonical_body() -> None:
    rig = make_edge([alert_reply()])
    result = call(rig, CREATE)
    assert isinstance(result.outcome, Success)
    (sent,) = rig.transport.calls
    assert (sent.method, sent.url) == ("POST", f"{DEFENDER_URL}/api/alerts/CreateAlertByReference")
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {**VALID, "severity": "Low", "category": "Exploit", "reportId": "20776"}
    assert list(sent.json()) == list(CREATE_FIELDS)
    assert sent.headers["client-request-id"] == CID


def test_time_left_bounds_both_timeouts() -> None:
    rig = make_edge([alerts_reply(), alerts_reply()])
    identity = rig.gateway.identity()
    rig.gateway.attempt(FILE_ALERTS, identity, CID, time_left=2.5)
    rig.gateway.attempt(FILE_ALERTS, identity, CID, time_left=10)
    assert [c.timeout for c in rig.transport.calls] == [(2.5, 2.5), (5.0, 10)]


def test_the_clouds_host_and_token_scope_are_used() -> None:
    rig = make_edge([alerts_reply()], settings_env={"MDE_CLOUD": "gcc", "MDE_BASE_URL": ""})
    call(rig)
    assert rig.transport.calls[0].url == f"https://api-gcc.securitycenter.microsoft.us/api/files/{SHA1}/alerts"
    assert rig.credential.scopes == [(GCC_SCOPE,)]


def test_a_redirect_is_not_followed() -> None:
    rig = make_edge([Reply(302, headers={"Location": "https://evil.example/steal"})])
    result = call(rig)
    assert result.outcome == Malformed(302, False) and result.sent == 1
    assert len(rig.transport.calls) == 1


@pytest.mark.parametrize(("reply", "outcome"), [
    (alerts_reply({"id": "da1"}), Success),
    (Reply(200, {"value": "not a list"}), Malformed),
    (Reply(200, body=b"<html>hi</html>"), Malformed),
    (error_reply(400), Rejected),
    (error_reply(404, "ResourceNotFound"), Rejected),
    (error_reply(401, "Unauthorized", "Invalid audience"), Unauthorized),
    (error_reply(403, "Forbidden", "Missing application roles"), Unauthorized),
    (error_reply(429, "TooManyRequests", retry_after="30"), Throttled),
    (error_reply(500, "InternalError"), Unavailable),
])
def test_one_attempt_is_one_request_and_one_typed_outcome(reply: Reply, outcome: type) -> None:
    rig = make_edge([reply])
    attempt = rig.gateway.attempt(FILE_ALERTS, rig.gateway.identity(), CID)
    assert isinstance(attempt, Sent) and isinstance(attempt.outcome, outcome)
    rig.transport.assert_done()


# --- slots: the limiter decides before anything is sent -------------------------------------------------------------

def test_a_refused_attempt_sends_nothing() -> None:
    rig = make_edge([alerts_reply()], limits={Api.FILE_ALERTS: "1/60"})
    identity = rig.gateway.identity()
    assert isinstance(rig.gateway.attempt(FILE_ALERTS, identity, CID), Sent)
    refused = rig.gateway.attempt(FILE_ALERTS, identity, CID)
    assert isinstance(refused, Refused)
    assert (refused.decision.reason, refused.decision.retry_after) == (Reason.RATE_LIMITED, 62)
    assert len(rig.transport.calls) == 1


# --- a thread that stalls between its slot and its request ----------------------------------------------------------
# The default margin is 2 s; a slot may age half of it (STALE_SHARE) before its request leaves.

def test_a_slot_that_went_stale_is_not_sent_on_and_a_new_one_is_taken() -> None:
    rig = make_edge([alerts_reply()], limits={Api.FILE_ALERTS: "3/60"})
    identity = rig.gateway.identity()
    first = rig.gateway.admit(Api.FILE_ALERTS, identity, CID)
    rig.clock.advance(1.001)  # the thread stalled for more than half the margin after its admission
    sent = rig.gateway.send(FILE_ALERTS, identity, first, CID)
    assert isinstance(sent, Sent) and isinstance(sent.outcome, Success)
    assert sent.decision.decided_at == rig.clock.now and sent.decision.decided_at > first.decided_at
    (request,) = rig.transport.calls  # one request, on the new slot
    assert request.url.endswith(f"/files/{SHA1}/alerts")
    assert rig.limiter(Api.FILE_ALERTS).peek(PRINCIPAL).windows[0].remaining == 1  # the stale slot stays spent


def test_a_stale_slot_with_no_fresh_one_free_sends_nothing() -> None:
    rig = make_edge([], limits={Api.FILE_ALERTS: "1/60"})
    identity = rig.gateway.identity()
    first = rig.gateway.admit(Api.FILE_ALERTS, identity, CID)
    rig.clock.advance(1.5)
    refused = rig.gateway.send(FILE_ALERTS, identity, first, CID)
    assert isinstance(refused, Refused) and refused.decision.reason is Reason.RATE_LIMITED
    assert refused.decision.retry_after == 61  # 60 s + 2 s margin from the first slot, 1.5 s later
    assert rig.transport.calls == []


@pytest.mark.parametrize(("env", "stalled"), [
    ({}, 1.0),  # exactly half the 2 s margin
    ({"RATE_LIMIT_MARGIN_SECONDS": "0"}, 30.0),  # no margin: nothing to protect, no slot is stale
], ids=["within-half-the-margin", "no-margin"])
def test_a_slot_that_is_not_stale_is_sent_on(env: dict[str, str], stalled: float) -> None:
    rig = make_edge([alerts_reply()], limits={Api.FILE_ALERTS: "1/60"}, settings_env=env)
    identity = rig.gateway.identity()
    first = rig.gateway.admit(Api.FILE_ALERTS, identity, CID)
    rig.clock.advance(stalled)
    sent = rig.gateway.send(FILE_ALERTS, identity, first, CID)
    assert isinstance(sent, Sent) and sent.decision is first


def test_storage_down_sends_nothing() -> None:
    rig = make_edge()
    rig.store.available = False
    with pytest.raises(RateLimitStorageError):
        rig.gateway.attempt(FILE_ALERTS, rig.gateway.identity(), CID)
    assert rig.transport.calls == []


def test_an_identity_failure_spends_nothing() -> None:
    rig = make_edge(credential=StaticCredential(error=ClientAuthenticationError("ManagedIdentityCredential: no")))
    with pytest.raises(IdentityError) as caught:
        call(rig)
    assert caught.value.reason == "ManagedIdentityCredential: no"
    assert caught.value.scope == "https://api.securitycenter.microsoft.com/.default"
    assert (rig.store.reads, rig.store.writes, rig.transport.calls) == (0, [], [])


# --- the retry table ------------------------------------------------------------------------------------------------

def _429(retry_after: str | None = None) -> Reply:
    return error_reply(429, "TooManyRequests", "Rate limit is exceeded", retry_after=retry_after)


RETRIED_GET: list[tuple[str, Step, list[float]]] = [
    ("429 Retry-After 2", _429("2"), [2.0]),
    ("429 Retry-After at the cap", _429("10"), [10.0]),
    ("429 Retry-After 1.5", _429("1.5"), [1.5]),
    ("429 Retry-After 0: at least a second", _429("0"), [1.0]),
    ("502", error_reply(502, "BadGateway"), [0.0]),
    ("503", error_reply(503, "ServiceUnavailable"), [0.0]),
    ("503 Retry-After 3", error_reply(503, "ServiceUnavailable", retry_after="3"), [3.0]),
    ("504", error_reply(504, "GatewayTimeout"), [0.0]),
    ("connect timeout", connect_timeout(), [0.0]),
    ("connection refused", connection_refused(), [0.0]),
    ("read timeout", read_timeout(), [0.0]),
    ("dropped connection", dropped_connection(), [0.0]),
]
NOT_RETRIED_GET: list[tuple[str, Step]] = [
    ("500", error_reply(500, "InternalError")),
    ("501", error_reply(501, "NotImplemented")),
    ("429 without Retry-After", _429()),
    ("429 Retry-After as a date (not read)", _429("Wed, 21 Oct 2026 07:28:00 GMT")),
    ("429 Retry-After above the cap", _429("11")),
    ("503 Retry-After above the cap", error_reply(503, "ServiceUnavailable", retry_after="30")),
    ("400", error_reply(400)),
    ("401", error_reply(401, "Unauthorized")),
    ("403", error_reply(403, "Forbidden")),
    ("404", error_reply(404, "NotFound")),
    ("200 not JSON", Reply(200, body=b"<html></html>")),
]
RETRIED_POST: list[tuple[str, Step, list[float]]] = [
    ("connect timeout", connect_timeout(), [0.0]),
    ("connection refused", connection_refused(), [0.0]),
    ("429 Retry-After 2", _429("2"), [2.0]),
    ("503 Retry-After 3", error_reply(503, "ServiceUnavailable", retry_after="3"), [3.0]),
]
NOT_RETRIED_POST: list[tuple[str, Step]] = [
    ("read timeout", read_timeout()),
    ("dropped connection", dropped_connection()),
    ("429 without Retry-After", _429()),
    ("429 Retry-After above the cap", _429("30")),
    ("503 without Retry-After", error_reply(503, "ServiceUnavailable")),
    ("503 Retry-After above the cap", error_reply(503, "ServiceUnavailable", retry_after="30")),
    ("502", error_reply(502, "BadGateway")),
    ("502 with Retry-After", error_reply(502, "BadGateway", retry_after="3")),
    ("504", error_reply(504, "GatewayTimeout")),
    ("500", error_reply(500, "InternalError")),
    ("404", error_reply(404, "ResourceNotFound")),
]


def _ids(cases: list[tuple[str, Step]] | list[tuple[str, Step, list[float]]]) -> list[str]:
    return [case[0] for case in cases]


@pytest.mark.parametrize(("request_", "success", "first", "waits"), [
    *[(FILE_ALERTS, alerts_reply(), step, waits) for _, step, waits in RETRIED_GET],
    *[(CREATE, alert_reply(), step, waits) for _, step, waits in RETRIED_POST],
], ids=[f"GET {name}" for name in _ids(RETRIED_GET)] + [f"POST {name}" for name in _ids(RETRIED_POST)])
def test_retried(request_: DefenderRequest, success: Reply, first: Step, waits: list[float]) -> None:
    rig = make_edge([first, success])
    result = call(rig, request_)
    assert isinstance(result.last, Sent) and isinstance(result.outcome, Success)
    assert result.sent == 2 and rig.sleep.waits == waits
    assert len(rig.credential.scopes) == 1  # one token for the whole call
    rig.transport.assert_done()


@pytest.mark.parametrize(("request_", "only"), [
    *[(FILE_ALERTS, step) for _, step in NOT_RETRIED_GET],
    *[(CREATE, step) for _, step in NOT_RETRIED_POST],
], ids=[f"GET {name}" for name in _ids(NOT_RETRIED_GET)] + [f"POST {name}" for name in _ids(NOT_RETRIED_POST)])
def test_not_retried(request_: DefenderRequest, only: Step) -> None:
    rig = make_edge([only])
    result = call(rig, request_)
    assert isinstance(result.last, Sent) and result.outcome is result.last.outcome
    assert not isinstance(result.outcome, Success)
    assert result.sent == 1 and rig.sleep.waits == []
    rig.transport.assert_done()


def test_a_post_that_may_have_arrived_says_so() -> None:
    for step, reach, timed_out in [(read_timeout(), Reach.MAYBE, True), (dropped_connection(), Reach.MAYBE, False),
                                   (connect_timeout(), Reach.NOT_SENT, True),
                                   (connection_refused(), Reach.NOT_SENT, False)]:
        rig = make_edge([step])
        outcome = rig.gateway.attempt(CREATE, rig.gateway.identity(), CID)
        assert isinstance(outcome, Sent) and isinstance(outcome.outcome, Unavailable)
        assert (outcome.outcome.reach, outcome.outcome.timed_out, outcome.outcome.status) == (reach, timed_out, None)


def test_a_retry_after_above_the_cap_is_handed_back_at_once() -> None:
    rig = make_edge([_429("30")], settings_env={"MDE_MAX_RETRY_AFTER_SECONDS": "10"})
    result = call(rig)
    assert isinstance(result.outcome, Throttled) and result.outcome.retry_after == 30.0 and result.sent == 1
    assert rig.sleep.waits == [] and rig.monotonic.now == 1000.0


@pytest.mark.parametrize(("max_retries", "waits"), [
    ("0", []), ("1", [0.0]), ("3", [0.0, 1.0, 2.0]), ("6", [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]),
])
def test_backoff_doubles_from_zero_up_to_the_cap(max_retries: str, waits: list[float]) -> None:
    rig = make_edge([error_reply(502, "BadGateway")] * (len(waits) + 1), settings_env={"MDE_MAX_RETRIES": max_retries})
    result = call(rig)
    assert isinstance(result.outcome, Unavailable) and result.outcome.status == 502
    assert result.sent == len(waits) + 1 and rig.sleep.waits == waits
    assert rig.monotonic.now == 1000.0 + sum(waits)
    rig.transport.assert_done()


def test_retries_end_within_the_total_timeout() -> None:
    rig = make_edge([read_timeout(), read_timeout()],
                    settings_env={"MDE_TOTAL_TIMEOUT_SECONDS": "4", "MDE_CONNECT_TIMEOUT_SECONDS": "1",
                                  "MDE_READ_TIMEOUT_SECONDS": "1", "MDE_MAX_RETRIES": "5"})
    result = call(rig)
    # Two attempts fit (1 s each, and the first retry at once); a 1 s backoff and another 2 s attempt would not.
    assert isinstance(result.outcome, Unavailable) and result.outcome.timed_out
    assert result.sent == 2 and rig.sleep.waits == [0.0]
    assert [c.timeout for c in rig.transport.calls] == [(1.0, 1.0), (1.0, 1.0)]
    assert rig.monotonic.now - 1000.0 <= 4
    rig.transport.assert_done()


@pytest.mark.parametrize(("retry_after", "retried"), [("5", True), ("6", True), ("7", False)])
def test_a_wait_that_would_end_past_the_deadline_is_not_taken(retry_after: str, retried: bool) -> None:
    # 10 s in all, 4 s per attempt: a wait of up to 6 s still leaves room for one more attempt.
    script = [error_reply(503, "ServiceUnavailable", retry_after=retry_after), *([alerts_reply()] if retried else [])]
    rig = make_edge(script,
                    settings_env={"MDE_TOTAL_TIMEOUT_SECONDS": "10", "MDE_CONNECT_TIMEOUT_SECONDS": "1",
                                  "MDE_READ_TIMEOUT_SECONDS": "3"})
    result = call(rig)
    assert isinstance(result.outcome, Success) is retried
    assert rig.sleep.waits == ([float(retry_after)] if retried else [])
    rig.transport.assert_done()


def test_every_retry_takes_a_slot() -> None:
    rig = make_edge([error_reply(502, "BadGateway"), error_reply(503, "ServiceUnavailable"), alerts_reply()],
                    limits={Api.FILE_ALERTS: "3/60"})
    result = call(rig)
    assert isinstance(result.outcome, Success) and result.sent == 3
    assert result.decision.windows[0].remaining == 0
    refused = rig.limiter(Api.FILE_ALERTS).acquire(PRINCIPAL)
    assert (refused.admitted, refused.reason) == (False, Reason.RATE_LIMITED)


def test_a_refused_retry_ends_the_call_and_counts_what_was_sent() -> None:
    rig = make_edge([error_reply(503, "ServiceUnavailable")], limits={Api.FILE_ALERTS: "1/60"})
    result = call(rig)
    assert isinstance(result.last, Refused) and result.decision.reason is Reason.RATE_LIMITED
    assert result.sent == 1
    assert isinstance(result.outcome, Unavailable) and result.outcome.status == 503
    rig.transport.assert_done()


# --- Defender's 429: one shared block per 429 ---------------------------------------------------------------------

def test_a_429_becomes_exactly_one_shared_block() -> None:
    rig = make_edge([_429("30")])
    start_ms = ms(rig.clock.now)
    response = rig.get_alerts(SHA1)  # through the edge: the 429 reaches the caller, and is not blocked again
    assert response.status_code == 429
    assert rig.store.blocks() == [start_ms + 30_000]
    other = make_edge(store=rig.store, clock=rig.clock)  # another instance over the same state
    held = other.limiter(Api.FILE_ALERTS).acquire(PRINCIPAL)
    assert (held.admitted, held.reason, held.retry_after) == (False, Reason.BLOCKED, 30)
    assert other.limiter(Api.CREATE_ALERT).acquire(PRINCIPAL).admitted  # the block is per API
    rig.clock.advance(29.999)
    assert other.limiter(Api.FILE_ALERTS).acquire(PRINCIPAL).reason is Reason.BLOCKED
    rig.clock.advance(0.001)
    assert other.limiter(Api.FILE_ALERTS).acquire(PRINCIPAL).admitted


def test_a_429_without_retry_after_blocks_for_the_default() -> None:
    rig = make_edge([_429()])
    start_ms = ms(rig.clock.now)
    result = call(rig, CREATE)
    assert result.outcome is not None and isinstance(result.outcome, Throttled) and result.sent == 1
    assert rig.store.blocks("create_alert") == [start_ms + DEFAULT_THROTTLE_SECONDS * 1000]
    held = make_edge(store=rig.store, clock=rig.clock).limiter(Api.CREATE_ALERT).acquire(PRINCIPAL)
    assert (held.reason, held.retry_after) == (Reason.BLOCKED, DEFAULT_THROTTLE_SECONDS)


def test_each_waited_out_429_blocks_once_and_the_retry_finds_the_block_over() -> None:
    rig = make_edge([_429("2"), _429("3"), alert_reply()])
    start_ms = ms(rig.clock.now)
    result = call(rig, CREATE)
    assert isinstance(result.outcome, Success) and result.sent == 3
    assert rig.sleep.waits == [2.0, 3.0]
    assert rig.store.blocks("create_alert") == [start_ms + 2_000, start_ms + 5_000]


def test_a_block_the_store_cannot_take_still_holds_this_instance(caplog: pytest.LogCaptureFixture) -> None:
    rig = make_edge([_429("30")])
    rig.transport.on_send = lambda _: setattr(rig.store, "available", False)  # the table fails meanwhile
    with caplog.at_level(logging.WARNING, "mde_alert_gateway"):
        attempt = rig.gateway.attempt(FILE_ALERTS, rig.gateway.identity(), CID)
    assert isinstance(attempt, Sent) and isinstance(attempt.outcome, Throttled)
    assert "could not share Defender's 429 block" in caplog.text
    held = rig.limiter(Api.FILE_ALERTS).acquire(PRINCIPAL)
    assert (held.reason, held.retry_after, held.storage_round_trips) == (Reason.BLOCKED, 30, 0)


# --- the token goes to the judged host or nowhere ---------------------------------------------------------------------

@pytest.mark.parametrize(("base_url", "actual"), [
    ("https://evil.example", "https://evil.example:443"),
    ("https://api.securitycenter.microsoft.com:8443", "https://api.securitycenter.microsoft.com:8443"),
    ("http://api.securitycenter.microsoft.com", "http://api.securitycenter.microsoft.com:80"),
    # What a backslash did: the allowlist read one host, requests connects to another.
    ("https://evil.example\\.securitycenter.microsoft.com", "https://evil.example:443"),
    ("http://", "nowhere"),
])
def test_a_request_off_the_judged_target_is_never_sent(base_url: str, actual: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    rig = make_edge()
    bypassed = dataclasses.replace(rig.settings.defender, base_url=base_url)  # as if validation had been bypassed
    client = DefenderClient(bypassed, rig.credential, rig.session)
    token = rig.gateway.identity().token
    with caplog.at_level(logging.ERROR, "mde_alert_gateway.defender"), \
            pytest.raises(ConfigurationError) as caught:
        client.send(FILE_ALERTS, token, correlation_id=CID)
    message = str(caught.value)
    assert re.match(f"The call to Defender would connect to {re.escape(actual)}[, ]", message), message
    assert "not to the configured https://api.securitycenter.microsoft.com:443" in message and "not sent" in message
    assert rig.transport.calls == []
    logged = caplog.text + message
    assert token.value not in logged and "Bearer" not in logged


def test_the_transport_cannot_be_asked_more_than_scripted() -> None:
    rig = make_edge([alerts_reply()])
    call(rig)
    with pytest.raises(AssertionError, match="unscripted request #2"):
        rig.session.get(f"{DEFENDER_URL}/anything")
    with pytest.raises(AssertionError, match="1 request"):
        rig.transport.assert_done()


def test_a_scripted_failure_is_raised_as_requests_raises_it() -> None:
    rig = make_edge([Fail(requests.ConnectTimeout()), read_timeout()])
    for expected in (requests.ConnectTimeout, requests.ReadTimeout):
        with pytest.raises(expected) as caught:
            rig.session.get(f"{DEFENDER_URL}/x", timeout=(1, 2))
        assert caught.value.request is not None and caught.value.request.url == f"{DEFENDER_URL}/x"
    assert rig.monotonic.now == 1002.0  # the read timeout took as long as it was given
