"""HttpEdge.respond with real func.HttpRequest objects for both APIs: the whole table of answers (status,
problem+json, headers) over the real gateway, client and limiters, with Defender scripted at the transport."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Callable
from functools import partial
from types import MappingProxyType, SimpleNamespace
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceRequestError

import create_alert_fn
import file_alerts_fn
from localdev.invocation import run
from shared import runtime
from shared.answers.mapping import input_problem, outcome_problem
from shared.answers.problems import Problem
from shared.defender.client import DefenderClient
from shared.defender.facts import API_FACTS, DEFENDER_APP_ID, Api
from shared.defender.outcomes import Rejected
from shared.validation import (
    BodyTooLargeError,
    FieldError,
    InvalidInputError,
    UnsupportedMediaTypeError,
    validate_file_hash,
)
from tests.support.inputs import VALID
from tests.support.rigs import GATEWAY_URL, EdgeRig, create_alert_request, make_edge, respond, response_problem
from tests.support.scripted import (
    PRINCIPAL,
    FakeClock,
    Reply,
    StaticCredential,
    alert_reply,
    alerts_reply,
    connect_timeout,
    dropped_connection,
    error_reply,
    read_timeout,
)

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
#: What docs/rate-limiting.md documents for the default limits (the RateLimit-Policy every answer carries).
POLICY = {Api.FILE_ALERTS: '"60s";q=100;w=60, "3600s";q=1500;w=3600', Api.CREATE_ALERT: '"60s";q=15;w=60'}
SCOPE = "https://api.securitycenter.microsoft.com/.default"
ONE_A_MINUTE = '"60s";q=1;w=60'
ROLES = {api: " or ".join(API_FACTS[api].roles) for api in Api}
TOO_LARGE = json.dumps({**VALID, "description": "x" * 64 * 1024}).encode()


def file_alerts_request(file_hash: str) -> func.HttpRequest:
    """The func.HttpRequest the Functions host hands GetFileRelatedAlerts: its route parameter is `fileHash`."""
    return func.HttpRequest("GET", f"{GATEWAY_URL}/api/files/{file_hash}/alerts", headers={},
                            route_params={"fileHash": file_hash}, body=b"")


def answer(rig: EdgeRig, api: Api, **kwargs: Any) -> func.HttpResponse:
    """One call of `api` through the edge: GET for the SHA-1 above, POST of VALID unless a body is given."""
    if api is Api.FILE_ALERTS:
        return rig.get_alerts(kwargs.pop("sha1", SHA1), **kwargs)
    return rig.create(kwargs.pop("body", VALID), **kwargs)


def common(response: func.HttpResponse, api: Api, correlation_id: str | None = None, *,
           policy: str | None = None) -> str:
    """What every answer carries; returns its correlation id (a fresh UUID unless the caller's is given).

    `policy` is the expected RateLimit-Policy when the test set limits of its own."""
    answered: str = response.headers["X-Correlation-ID"]
    if correlation_id is None:
        assert str(uuid.UUID(answered)) == answered
    else:
        assert answered == correlation_id
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["RateLimit-Policy"] == (policy or POLICY[api])
    return answered


def rate_limit(response: func.HttpResponse) -> tuple[str, int, int]:
    """The RateLimit header as (policy name, r, t)."""
    match = re.fullmatch(r'"(\w+)";r=(\d+);t=(\d+)', response.headers["RateLimit"])
    assert match, response.headers["RateLimit"]
    return match[1], int(match[2]), int(match[3])


def problem(response: func.HttpResponse, api: Api, status: int, kind: str, *fields: str,
            correlation_id: str | None = None, policy: str | None = None) -> dict[str, Any]:
    document = response_problem(response, status, *fields)
    assert document["type"] == f"urn:mde-alert-gateway:problem:{kind}", document
    common(response, api, correlation_id, policy=policy)
    return document


def told_to_wait(response: func.HttpResponse, seconds: int) -> None:
    """Retry-After says `seconds`, and RateLimit agrees: nothing left until at least then."""
    assert response.headers["Retry-After"] == str(seconds)
    _, remaining, reset = rate_limit(response)
    assert remaining == 0 and reset >= seconds


def nothing_spent(rig: EdgeRig) -> None:
    assert rig.transport.calls == [] and rig.store.writes == []


# --- success ------------------------------------------------------------------------------------------------------

def test_file_alerts_success_is_defenders_body_unchanged() -> None:
    body = b'{"@odata.context":"https://api.securitycenter.microsoft.com/api/$metadata#Alerts",  "value": [ {"id":' \
           b' "da1", "title": "\\u00c4rger"} ] }'
    rig = make_edge([Reply(200, body=body, headers={"Content-Type": "application/json"})])
    response = rig.get_alerts(SHA1.upper())
    assert response.status_code == 200 and response.get_body() == body
    assert response.mimetype == "application/json"
    correlation_id = common(response, Api.FILE_ALERTS)
    assert rate_limit(response) == ("60s", 99, 62)  # 100/60 with the 2 s margin
    assert "Retry-After" not in response.headers
    (sent,) = rig.transport.calls
    assert sent.url.endswith(f"/api/files/{SHA1}/alerts")  # sent in lower case
    assert sent.headers["client-request-id"] == correlation_id


def test_create_success_sends_the_canonical_body_and_returns_defenders() -> None:
    reply = alert_reply("da637294883018012288_1364969609", machineId=VALID["machineId"])
    rig = make_edge([reply])
    response = rig.create({**VALID, "severity": "medium", "category": "malware", "reportId": 20776},
                          content_type="application/json; charset=utf-8")
    assert response.status_code == 200 and response.get_body() == reply.content()
    common(response, Api.CREATE_ALERT)
    assert rate_limit(response) == ("60s", 14, 62)
    assert rig.transport.calls[0].json() == {**VALID, "severity": "Medium", "category": "Malware", "reportId": "20776"}


@pytest.mark.parametrize("offered", ["playbook-run-42:abc.DEF_x", "12345678", "a" * 128])
@pytest.mark.parametrize("header", ["X-Correlation-ID", "x-correlation-id"])
def test_a_callers_well_formed_correlation_id_is_kept_and_sent(offered: str, header: str) -> None:
    rig = make_edge([alerts_reply()])
    response = rig.get_alerts(SHA1, headers={header: offered})
    common(response, Api.FILE_ALERTS, offered)
    assert rig.transport.calls[0].headers["client-request-id"] == offered
    bad = rig.get_alerts("abc", headers={header: offered})  # and on a problem, in the body too
    assert problem(bad, Api.FILE_ALERTS, 400, "validation-error", correlation_id=offered)["correlationId"] == offered


@pytest.mark.parametrize("offered", ["bad\tvalue", "short", "a" * 129, "id with spaces", "corr/12345678",
                                     "corr-\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "corr-12345678\u00a0"])
def test_an_unsafe_correlation_id_is_replaced(offered: str) -> None:
    rig = make_edge([alerts_reply()])
    response = rig.get_alerts(SHA1, headers={"X-Correlation-ID": offered})
    answered = common(response, Api.FILE_ALERTS)
    assert answered != offered and rig.transport.calls[0].headers["client-request-id"] == answered


# --- input errors: nothing sent, no quota spent ------------------------------------------------------------------

def test_a_bad_file_hash_is_400_naming_it() -> None:
    rig = make_edge()
    response = rig.edge.lookup_file_alerts(file_alerts_request("d41d8cd98f00b204e9800998ecf8427e"),
                                           lambda: validate_file_hash("d41d8cd98f00b204e9800998ecf8427e"))
    document = problem(response, Api.FILE_ALERTS, 400, "validation-error", "route.fileHash")
    assert document["detail"] == "The request has invalid fields: route.fileHash. Nothing was sent to Defender."
    assert "MD5" in document["errors"][0]["message"]
    assert "RateLimit" not in response.headers and "Retry-After" not in response.headers  # limiter not consulted
    nothing_spent(rig)
    assert rig.store.reads == 0


@pytest.mark.parametrize(("body", "content_type", "status", "kind", "detail", "fields"), [
    ({**VALID, "severity": "urgent", "machineId": "x"}, "application/json", 400, "validation-error",
     "The request has invalid fields: body.machineId, body.severity. Nothing was sent to Defender.",
     ("body.machineId", "body.severity")),
    (b'{"machineId": ', "application/json", 400, "validation-error", "The request body is not valid JSON.",
     ("body",)),
    (json.dumps(VALID)[:-1] + ', "severity": "High"}', "application/json", 400, "validation-error",
     "The request body is not JSON this API accepts.", ("body.severity",)),
    (b"[" * 32_000 + b"]" * 32_000, "application/json", 400, "validation-error",
     "The request body is not JSON this API accepts.", ("body",)),
    (b"[1, 2]", "application/json", 400, "validation-error", "The request body must be a JSON object.", ("body",)),
    (TOO_LARGE, "application/json", 413, "payload-too-large",
     f"The body is {len(TOO_LARGE)} bytes; at most 65536 are accepted.", ()),
    (VALID, "text/plain", 415, "unsupported-media-type",
     "Content-Type must be application/json, got 'text/plain'.", ()),
    (VALID, None, 415, "unsupported-media-type", "Content-Type must be application/json, got 'none'.", ()),
], ids=["fields", "not-json", "duplicate-key", "too-deep", "not-an-object", "too-large", "text-plain",
        "no-content-type"])
def test_create_input_errors(body: Any, content_type: str | None, status: int, kind: str, detail: str,
                             fields: tuple[str, ...]) -> None:
    rig = make_edge()
    response = rig.create(body, content_type=content_type)
    document = problem(response, Api.CREATE_ALERT, status, kind, *fields)
    assert document["detail"] == detail
    assert ("errors" in document) is bool(fields)
    if status == 415:
        assert response.headers["Accept-Post"] == "application/json"
    assert "RateLimit" not in response.headers
    nothing_spent(rig)


# --- what Defender said -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_defenders_400_is_400_with_its_error(api: Api) -> None:
    rig = make_edge([error_reply(400, "InvalidRequestBody", "Request body is incorrect", target="abc-123")])
    response = answer(rig, api)
    document = problem(response, api, 400, "upstream-bad-request")
    assert document["upstreamError"] == {"code": "InvalidRequestBody", "message": "Request body is incorrect",
                                         "target": "abc-123"}
    assert "Defender said: InvalidRequestBody: Request body is incorrect" in document["detail"]
    assert rate_limit(response)[1] > 0 and "Retry-After" not in response.headers  # a slot went; no wait needed


def test_no_matching_event_on_create_is_404() -> None:
    rig = make_edge([error_reply(404, "ResourceNotFound", "Event not found", target=None)])
    document = problem(rig.create(VALID), Api.CREATE_ALERT, 404, "event-not-found")
    assert document["upstreamError"] == {"code": "ResourceNotFound", "message": "Event not found"}
    assert "reportId, eventTime and machineId" in document["detail"]


def test_a_404_on_file_alerts_is_unexpected_502() -> None:
    rig = make_edge([error_reply(404, "NotFound", "No such thing")])
    document = problem(rig.get_alerts(SHA1), Api.FILE_ALERTS, 502, "upstream-unexpected")
    assert "unexpected 404" in document["detail"] and document["upstreamError"]["code"] == "NotFound"


AUDIENCE_ADVICE = (f"MDE_CLOUD=commercial asks for {SCOPE} and calls https://api.securitycenter.microsoft.com; "
                   "check MDE_CLOUD / MDE_BASE_URL")


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_defenders_401_is_502_about_the_token_audience(api: Api) -> None:
    rig = make_edge([error_reply(401, "Unauthorized", "Invalid token")])
    document = problem(answer(rig, api), api, 502, "upstream-unauthorized")
    assert AUDIENCE_ADVICE in document["detail"] and "(401)" in document["detail"]


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
@pytest.mark.parametrize(("message", "audience", "role"), [
    ("Invalid audience: expected https://api-gcc.securitycenter.microsoft.us", True, False),
    ("Missing application roles. API required roles: Alert.ReadWrite.All", False, True),
    ("Access denied", True, True),  # no telling which: both pieces of advice
])
def test_defenders_403_is_502_with_the_right_advice(api: Api, message: str, audience: bool, role: bool) -> None:
    rig = make_edge([error_reply(403, "Forbidden", message)])
    detail = problem(answer(rig, api), api, 502, "upstream-forbidden")["detail"]
    assert detail.startswith("Defender refused the gateway's identity (403).")
    assert (AUDIENCE_ADVICE in detail) is audience
    role_advice = (f"The identity needs the application role {ROLES[api]} on WindowsDefenderATP "
                   f"(appId {DEFENDER_APP_ID})")
    assert (role_advice in detail) is role
    assert f"Defender said: Forbidden: {message}" in detail


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_defenders_429_is_passed_on_with_its_wait(api: Api) -> None:
    rig = make_edge([error_reply(429, "TooManyRequests", "Rate limit is exceeded", retry_after="29.2")])
    response = answer(rig, api)
    document = problem(response, api, 429, "upstream-throttled")
    told_to_wait(response, 30)  # above the 10 s cap: handed back at once, rounded up
    assert "retry after 30 s" in document["detail"] and "Nothing was sent" not in document["detail"]
    assert len(rig.transport.calls) == 1 and len(rig.store.blocks()) == 1


def test_a_wait_longer_than_the_window_shows_in_ratelimit_too() -> None:
    rig = make_edge([error_reply(429, "TooManyRequests", retry_after="120")])
    response = rig.get_alerts(SHA1)
    problem(response, Api.FILE_ALERTS, 429, "upstream-throttled")
    told_to_wait(response, 120)  # the window itself would have room again in 62 s
    assert rate_limit(response) == ("60s", 0, 120)


def test_a_block_set_by_another_instance_is_429_and_nothing_is_sent() -> None:
    first = make_edge()
    first.limiter(Api.FILE_ALERTS).block(PRINCIPAL, 30)  # the other instance met Defender's 429
    rig = make_edge(store=first.store, clock=first.clock)
    response = rig.get_alerts(SHA1)
    document = problem(response, Api.FILE_ALERTS, 429, "rate-limited")
    assert document["detail"].endswith("Nothing was sent to Defender.")
    told_to_wait(response, 30)
    assert rate_limit(response) == ("60s", 0, 30)  # no call in the window, yet nothing is admitted for 30 s
    assert rig.transport.calls == []


def test_defenders_429_without_retry_after_holds_a_minute() -> None:
    rig = make_edge([error_reply(429, "TooManyRequests")])
    response = rig.get_alerts(SHA1)
    problem(response, Api.FILE_ALERTS, 429, "upstream-throttled")
    told_to_wait(response, 60)


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_defenders_503_with_a_long_retry_after_is_503_with_it(api: Api) -> None:
    """Retry-After carries Defender's advice; RateLimit says what the gateway does next: a 503 blocks nothing, so
    the budget is as the call left it, and the next call is admitted and sent."""
    rig = make_edge([error_reply(503, "ServiceUnavailable", "Try later", retry_after="30"),
                     alerts_reply() if api is Api.FILE_ALERTS else alert_reply()])
    response = answer(rig, api)
    document = problem(response, api, 503, "upstream-unavailable")
    assert response.headers["Retry-After"] == "30"
    _, remaining, _ = rate_limit(response)
    assert remaining == min(window.remaining for window in rig.limiter(api).peek(PRINCIPAL).windows) > 0
    assert document["upstreamError"]["code"] == "ServiceUnavailable"
    rig.clock.advance(0.5)
    assert answer(rig, api).status_code == 200
    assert len(rig.transport.calls) == 2


def test_defenders_500_is_502() -> None:
    rig = make_edge([error_reply(500, "InternalError", "Oops")])
    document = problem(rig.get_alerts(SHA1), Api.FILE_ALERTS, 502, "upstream-error")
    assert document["detail"].startswith("Defender for Endpoint failed with 500; retry later.")
    assert document["upstreamError"]["code"] == "InternalError"


def test_a_get_that_keeps_failing_with_502_is_502_after_the_retries() -> None:
    rig = make_edge([error_reply(502, "BadGateway")] * 4)
    response = rig.get_alerts(SHA1)
    assert "failed with 502" in problem(response, Api.FILE_ALERTS, 502, "upstream-error")["detail"]
    assert rate_limit(response)[1] == 96 and rig.sleep.waits == [0.0, 1.0, 2.0]
    rig.transport.assert_done()


@pytest.mark.parametrize(("api", "reply", "says"), [
    (Api.FILE_ALERTS, Reply(200, body=b"<html>proxy login</html>"), "(not JSON)"),
    (Api.FILE_ALERTS, Reply(200, {"value": {"not": "a list"}}), "(unexpected JSON)"),
    (Api.CREATE_ALERT, Reply(200, {"title": "no id"}), "(unexpected JSON)"),
    (Api.CREATE_ALERT, Reply(302, headers={"Location": "https://login.example/"}), "(not JSON)"),
])
def test_an_answer_not_in_the_documented_shape_is_502(api: Api, reply: Reply, says: str) -> None:
    rig = make_edge([reply])
    document = problem(answer(rig, api), api, 502, "upstream-malformed")
    assert "not the documented shape" in document["detail"] and says in document["detail"]


def test_a_dropped_create_is_502_and_not_repeated() -> None:
    rig = make_edge([dropped_connection()])
    document = problem(rig.create(VALID), Api.CREATE_ALERT, 502, "upstream-unreachable")
    assert "(ProtocolError)" in document["detail"]
    rig.transport.assert_done()


def test_a_create_that_timed_out_after_sending_is_504_saying_the_alert_may_exist() -> None:
    rig = make_edge([read_timeout()])
    document = problem(rig.create(VALID), Api.CREATE_ALERT, 504, "upstream-timeout")
    assert "may exist already" in document["detail"]
    rig.transport.assert_done()


def test_timeouts_that_surely_sent_nothing_or_only_reads_do_not_say_an_alert_may_exist() -> None:
    create = make_edge([connect_timeout()] * 4)  # retried: it surely did not reach Defender
    document = problem(create.create(VALID), Api.CREATE_ALERT, 504, "upstream-timeout")
    assert "may exist" not in document["detail"]
    create.transport.assert_done()
    read = make_edge([read_timeout()] * 3)  # 30 s each: the third attempt ends the 100 s
    document = problem(read.get_alerts(SHA1), Api.FILE_ALERTS, 504, "upstream-timeout")
    assert "may exist" not in document["detail"]
    read.transport.assert_done()


# --- the gateway's own budget -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_a_spent_budget_is_429_and_nothing_is_sent(api: Api) -> None:
    rig = make_edge([alerts_reply() if api is Api.FILE_ALERTS else alert_reply()], limits={api: "1/60"})
    assert answer(rig, api).status_code == 200
    rig.clock.advance(10)
    response = answer(rig, api)
    document = problem(response, api, 429, "rate-limited", policy=ONE_A_MINUTE)
    assert document["detail"].endswith("Nothing was sent to Defender.")
    assert "retry after 52 s" in document["detail"]
    told_to_wait(response, 52)  # 60 s + 2 s margin from the first call, 10 s ago
    assert rate_limit(response) == ("60s", 0, 52)
    assert len(rig.transport.calls) == 1


def test_a_retry_refused_after_a_503_is_429_saying_a_request_went() -> None:
    rig = make_edge([error_reply(503, "ServiceUnavailable")], limits={Api.FILE_ALERTS: "1/60"})
    response = rig.get_alerts(SHA1)
    detail = problem(response, Api.FILE_ALERTS, 429, "rate-limited", policy=ONE_A_MINUTE)["detail"]
    assert "Defender was tried 1 time(s) before that" in detail
    assert "Defender for Endpoint failed with 503" in detail and "Nothing was sent" not in detail
    told_to_wait(response, 62)
    rig.transport.assert_done()


def test_a_retry_refused_after_a_waited_out_429_is_told_as_defenders() -> None:
    rig = make_edge([error_reply(429, "TooManyRequests", retry_after="2")], limits={Api.FILE_ALERTS: "1/60"})
    response = rig.get_alerts(SHA1)
    document = problem(response, Api.FILE_ALERTS, 429, "upstream-throttled", policy=ONE_A_MINUTE)
    told_to_wait(response, 60)  # the later of Defender's 2 s and the budget's 60 s (62 s from the call, 2 s ago)
    assert "Nothing was sent" not in document["detail"]
    rig.transport.assert_done()


def test_the_detail_of_a_refused_retry_after_a_429_names_the_wait_of_the_header() -> None:
    rig = make_edge([error_reply(429, "TooManyRequests", retry_after="2")], limits={Api.FILE_ALERTS: "1/60"})
    response = rig.get_alerts(SHA1)
    detail = problem(response, Api.FILE_ALERTS, 429, "upstream-throttled", policy=ONE_A_MINUTE)["detail"]
    assert f"retry after {response.headers['Retry-After']} s" in detail, detail


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("retry_after", ["inf", "1e400"])
def test_a_non_finite_retry_after_is_not_a_500(status: int, retry_after: str) -> None:
    rig = make_edge([error_reply(status, "Busy", retry_after=retry_after)] * 4)  # a 503 without a wait is retried
    response = rig.get_alerts(SHA1)
    # An endless wait is read as the longest, an hour (MAX_RETRY_AFTER_SECONDS): longer than the gateway waits, so
    # Defender's own answer is passed on with it (docs/api.md), after one request.
    kind = {429: "upstream-throttled", 503: "upstream-unavailable"}[status]
    assert (response.status_code, response.headers["Retry-After"]) == (status, "3600"), response.get_body()
    assert json.loads(response.get_body())["type"].endswith(":" + kind)
    assert rig.transport.pending == 3


def test_a_deeply_nested_answer_is_malformed_not_a_500() -> None:
    rig = make_edge([Reply(200, body=b"[" * 100_000 + b"]" * 100_000)])
    problem(rig.get_alerts(SHA1), Api.FILE_ALERTS, 502, "upstream-malformed")


# --- failures of the gateway's own dependencies, and who may call -------------------------------------------------

@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_an_identity_failure_is_502_and_spends_nothing(api: Api) -> None:
    credential = StaticCredential(error=ServiceRequestError("ManagedIdentityCredential: endpoint unreachable\n"
                                                            "Traceback and more lines"))
    rig = make_edge(credential=credential)
    response = answer(rig, api)
    document = problem(response, api, 502, "identity-unavailable")
    assert (f"could not get a token for {SCOPE} from its identity: ManagedIdentityCredential: endpoint "
            "unreachable.") in document["detail"]
    assert "\n" not in document["detail"] and "Traceback" not in document["detail"]
    assert "RateLimit" not in response.headers
    nothing_spent(rig)
    assert rig.store.reads == 0


@pytest.mark.parametrize("api", [Api.FILE_ALERTS, Api.CREATE_ALERT])
def test_storage_down_is_503_with_retry_after(api: Api) -> None:
    rig = make_edge()
    rig.store.available = False
    response = answer(rig, api)
    document = problem(response, api, 503, "rate-limit-storage-unavailable")
    assert response.headers["Retry-After"] == "5" and "RateLimit" not in response.headers
    assert "never admits blindly" in document["detail"]
    assert rig.transport.calls == []


def test_function_key_mode_does_not_ask_for_a_principal() -> None:
    rig = make_edge([alerts_reply()])
    assert rig.get_alerts(SHA1).status_code == 200


def test_a_base_url_off_the_judged_target_is_500_and_sends_nothing() -> None:
    rig = make_edge()
    bypassed = dataclasses.replace(rig.settings.defender, base_url="https://evil.example")
    rig.gateway.client = DefenderClient(bypassed, rig.credential, rig.session)
    response = rig.get_alerts(SHA1)
    document = problem(response, Api.FILE_ALERTS, 500, "configuration-error")
    assert "would connect to https://evil.example:443" in document["detail"]
    assert rig.credential.token not in response.get_body().decode()
    assert rig.transport.calls == []


def test_an_unexpected_failure_is_500_without_its_details(caplog: pytest.LogCaptureFixture) -> None:
    rig = make_edge([alerts_reply()])

    def explode(_: object) -> None:
        raise RuntimeError("secret internals")

    rig.transport.on_send = explode
    with caplog.at_level(logging.ERROR, "mde_alert_gateway"):
        response = rig.get_alerts(SHA1, headers={"X-Correlation-ID": "trace-me-12345"})
    document = problem(response, Api.FILE_ALERTS, 500, "internal-error", correlation_id="trace-me-12345")
    assert "secret internals" not in response.get_body().decode()
    assert "trace-me-12345" in caplog.text and "secret internals" in caplog.text
    assert document["detail"].startswith("The gateway failed unexpectedly")


# --- the real entry points answer as `respond` does --------------------------------------------------------------

@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[[EdgeRig], dict[str, Callable[..., Any]]]:
    """The functions as the Functions host registers them and calls them (with their invocation context), with
    shared.runtime pointed at a test edge."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(file_alerts_fn.bp)
    app.register_functions(create_alert_fn.bp)
    functions: dict[str, Callable[..., Any]] = {
        str(function.get_function_name()): partial(run, str(function.get_function_name()), function.get_user_function())
        for function in app.get_functions()}

    def bind(rig: EdgeRig) -> dict[str, Callable[..., Any]]:
        monkeypatch.setattr(runtime, "_runtime", SimpleNamespace(edge=rig.edge))
        return functions

    return bind


def test_the_entry_points_parse_as_the_helper_does(
        entry_points: Callable[[EdgeRig], dict[str, Callable[..., Any]]]) -> None:
    rig = make_edge([alerts_reply(), alert_reply()])
    functions = entry_points(rig)
    ok = functions["GetFileRelatedAlerts"](file_alerts_request(SHA1.upper()))
    assert ok.status_code == 200 and rig.transport.calls[0].url.endswith(f"/files/{SHA1}/alerts")
    created = functions["CreateAlertByReference"](create_alert_request({**VALID, "severity": "high"}))
    assert created.status_code == 200 and rig.transport.calls[1].json()["severity"] == "High"
    # The route parameter is `fileHash` (a SHA-1 or a SHA-256): a bad one is named so.
    refused = response_problem(functions["GetFileRelatedAlerts"](file_alerts_request("abc")), 400, "route.fileHash")
    assert refused["errors"][0]["message"] == ("must be a SHA-1 or SHA-256 hash: exactly 40 or 64 hexadecimal "
                                               "characters.")
    for name, request, api in [
        ("CreateAlertByReference", create_alert_request({**VALID, "title": ""}), Api.CREATE_ALERT),
        ("CreateAlertByReference", create_alert_request(VALID, content_type="text/plain"), Api.CREATE_ALERT),
    ]:
        real, helper = functions[name](request), respond(rig.edge, request, api)
        assert real.status_code == helper.status_code
        real_body, helper_body = json.loads(real.get_body()), json.loads(helper.get_body())
        assert {**real_body, "correlationId": None} == {**helper_body, "correlationId": None}
    rig.transport.assert_done()


# --- problems are values ------------------------------------------------------------------------------------------

def test_problems_are_immutable() -> None:
    problems = [
        input_problem(InvalidInputError([FieldError("body.title", "is required")])),
        input_problem(BodyTooLargeError(70_000, 65_536)),
        input_problem(UnsupportedMediaTypeError("text/plain")),
        outcome_problem(Api.FILE_ALERTS, Rejected(400), make_edge().settings.defender),
    ]
    for made in problems:
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.status = 200  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.detail = "changed"  # type: ignore[misc]
        with pytest.raises(TypeError):
            made.headers["X-Injected"] = "1"  # type: ignore[index]
        with pytest.raises(TypeError):
            made.extensions["upstreamError"] = {}  # type: ignore[index]
        assert isinstance(made.errors, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        problems[0].errors[0].message = "changed"  # type: ignore[misc]
    shared_default = Problem(400, "x", "t", "d")
    assert shared_default.headers == MappingProxyType({}) and shared_default.extensions == {}
    with pytest.raises(TypeError):
        shared_default.headers["X-Injected"] = "1"  # type: ignore[index]  # the shared default stays empty


class _StorageOutage(FakeClock):
    """Passed to FakeSleep as one more clock: the rate-limit store goes down while the gateway waits to retry."""

    def __init__(self, rig: EdgeRig) -> None:
        super().__init__()
        self.rig = rig

    def advance(self, seconds: float) -> None:
        self.rig.store.available = False


def test_storage_failing_before_a_retry_gives_defenders_answer_not_a_503() -> None:
    rig = make_edge([error_reply(503, "ServiceUnavailable")])  # retried at once (a GET, no Retry-After)
    rig.sleep.clocks = (*rig.sleep.clocks, _StorageOutage(rig))
    response = rig.get_alerts(SHA1)
    document = problem(response, Api.FILE_ALERTS, 502, "upstream-error")
    assert "failed with 503" in document["detail"]
    assert len(rig.transport.prepared) == 1
    rig.transport.assert_done()
