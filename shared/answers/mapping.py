"""Answers: the one mapping from outcomes, refusals and problems to what a caller hears (status, headers,
problem+json body), decided once. No HTTP library here: the HTTP edge (shared.http.edge) sends these answers, and
the queue worker (shared.asynchronous.worker) keeps them as its operations' answers.

Every answer carries X-Correlation-ID, Cache-Control (no-store, or `private, max-age` with Age on a
file-alerts answer that the answer cache may share) and RateLimit-Policy; every answer given after
the limiter was consulted also carries RateLimit, and Retry-After whenever the caller is told to wait.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from types import MappingProxyType

from shared.answers.answer import Answer
from shared.answers.correlation import CORRELATION_HEADER
from shared.answers.headers import policy_header, rate_limit_headers
from shared.answers.hunting import cpu_exhausted_problem, hunting_problem
from shared.answers.problems import PROBLEM_CONTENT_TYPE, Problem
from shared.configuration import ConfigurationError
from shared.defender.client import IdentityError
from shared.defender.credentials import IdentityFailure
from shared.defender.facts import API_FACTS, DEFAULT_THROTTLE_SECONDS, DEFENDER_APP_ID, Api, Service
from shared.defender.gateway import CallResult, Refused, Sent
from shared.defender.outcomes import (
    AuthCause,
    DefenderError,
    Malformed,
    Outcome,
    Reach,
    Rejected,
    Success,
    Throttled,
    ThrottleKind,
    Unauthorized,
    Unavailable,
)
from shared.defender.settings import DefenderSettings
from shared.ratelimit import RatePolicy, Reason
from shared.validation import (
    BodyFault,
    BodyTooLargeError,
    InputError,
    InvalidInputError,
    UnsupportedMediaTypeError,
)

logger = logging.getLogger("mde_alert_gateway")

#: How long a caller should wait when the rate-limit storage is unreachable.
STORAGE_RETRY_AFTER = 5

_BODY_FAULTS = {
    None: "The request has invalid fields: {fields}. Nothing was sent to {upstream}.",
    BodyFault.NOT_JSON: "The request body is not valid JSON.",
    BodyFault.UNACCEPTABLE_JSON: "The request body is not JSON this API accepts.",
    BodyFault.NOT_AN_OBJECT: "The request body must be a JSON object.",
}


def upstream_name(api: Api | None) -> str:
    """Who serves `api`, as an answer names it: Defender, or Microsoft Graph (advanced hunting)."""
    return (API_FACTS[api].service if api is not None else Service.DEFENDER).display_name


def input_problem(error: InputError, api: Api | None = None) -> Problem:
    """400 naming every bad field, 413 for a body too large, 415 for a body that is not JSON (`api`: the call's, whose
    upstream the detail names)."""
    if isinstance(error, BodyTooLargeError):
        return Problem(413, "payload-too-large", "Request body too large",
                       f"The body is {error.size} bytes; at most {error.limit} are accepted.")
    if isinstance(error, UnsupportedMediaTypeError):
        return Problem(415, "unsupported-media-type", "Unsupported media type",
                       f"Content-Type must be application/json, got {error.media_type or 'none'!r}.",
                       headers=MappingProxyType({"Accept-Post": "application/json"}))
    if isinstance(error, InvalidInputError):
        fields = ", ".join(e.field for e in error.errors)
        detail = _BODY_FAULTS[error.fault].format(fields=fields, upstream=upstream_name(api))
        return Problem(400, "validation-error", "Invalid request", detail, errors=error.errors)
    raise TypeError(f"no answer for {type(error).__name__}")


def identity_problem(error: IdentityError) -> Problem:
    """502: the managed identity gave no token, so nothing could be sent: what failed (never a token or a secret), and
    Retry-After, when the gateway asks its identity again (a customer tenant that has not consented to the gateway's
    app: what its administrator must do)."""
    wait = _wait(error.retry_after)
    if error.tenant is not None and error.consent_url is not None:
        return Problem(502, "tenant-not-consented", "Tenant has not consented",
                       f"The customer tenant {error.tenant.name} ({error.tenant.id}) gave the gateway no token: its "
                       "administrator has not consented to the gateway's multi-tenant app, or not granted it the "
                       f"Defender app roles ({error.reason}). The administrator consents at {error.consent_url} and "
                       "grants the roles (scripts/onboard-customer-tenant.sh does both). Nothing was sent.",
                       retry_after=wait,
                       extensions=MappingProxyType({"tenant": error.tenant.id, "consentUrl": error.consent_url}))
    if error.tenant is not None:
        return Problem(502, "identity-unavailable", "Cannot authenticate to Defender",
                       f"The gateway could not get a token for {error.scope} in the customer tenant "
                       f"{error.tenant.name} ({error.tenant.id}): {error.reason}. Nothing was sent.{_again(wait)}",
                       retry_after=wait, extensions=MappingProxyType({"tenant": error.tenant.id}))
    advice = ("" if error.kind in (IdentityFailure.UNREACHABLE, IdentityFailure.BAD_ANSWER) else
              " Check that the function app has a managed identity (or AZURE_CLIENT_ID names its user-assigned "
              "identity).")
    return Problem(502, "identity-unavailable", "Cannot authenticate to Defender",
                   f"The gateway could not get a token for {error.scope} from its identity: {error.reason}. Nothing "
                   f"was sent.{advice}{_again(wait)}", retry_after=wait)


def _again(wait: int | None) -> str:
    return f" The gateway asks its identity again in {wait} s." if wait else ""


def tenant_not_allowed_problem(tenant: str) -> Problem:
    """403, nothing spent: GATEWAY_TENANT_CALLERS does not let the caller act for `tenant` (what a route named, or
    the tenant of an operation read or a queued request)."""
    return Problem(403, "tenant-not-allowed", "Tenant not allowed",
                   f"This caller may not act for the tenant {tenant!r} (GATEWAY_TENANT_CALLERS). Nothing was sent "
                   "to Defender.")


def _said(error: DefenderError | None) -> str:
    return f" Defender said: {error.code or '?'}: {error.message or '(no message)'}" if error else ""


def _upstream(error: DefenderError | None) -> Mapping[str, object]:
    return MappingProxyType({"upstreamError": error.as_dict()} if error else {})


def _wait(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, math.ceil(seconds))


def outcome_problem(api: Api, outcome: Outcome, defender: DefenderSettings, tenant: str | None = None,
                    blocked_for: float | None = None) -> Problem:
    """The answer for a Defender outcome other than success: the one table of upstream mappings (`tenant`: the
    customer tenant the call was for; None: the home tenant; `blocked_for`: Sent.blocked_for, how long the block a
    hunting CPU 429 set holds from the answer)."""
    if api is Api.HUNTING and (hunting := hunting_problem(outcome, defender, tenant, blocked_for)) is not None:
        return hunting
    audience = (f"The token audience must match the API host: MDE_CLOUD={defender.cloud.name} asks for "
                f"{defender.cloud.scope} and calls {defender.base_url}; check MDE_CLOUD / MDE_BASE_URL.")
    if isinstance(outcome, Throttled):
        return _throttled_problem(api, outcome, _wait(outcome.retry_after) or DEFAULT_THROTTLE_SECONDS)
    if isinstance(outcome, Rejected) and outcome.status == 400:
        return Problem(400, "upstream-bad-request", "Defender rejected the request",
                       f"Defender for Endpoint answered 400.{_said(outcome.error)}",
                       extensions=_upstream(outcome.error))
    if isinstance(outcome, Rejected) and outcome.status == 404 and api is Api.CREATE_ALERT:
        return Problem(404, "event-not-found", "Event not found",
                       "Defender found no event with this reportId, eventTime and machineId. Take all three from the "
                       f"same advanced-hunting row, eventTime with its full precision.{_said(outcome.error)}",
                       extensions=_upstream(outcome.error))
    if isinstance(outcome, Unauthorized):
        roles = (f"The identity needs the application role {' or '.join(API_FACTS[api].roles)} on WindowsDefenderATP "
                 f"(appId {DEFENDER_APP_ID}): grant it with infra/defender-roles.bicep or "
                 "scripts/grant-defender-roles.sh.")
        if tenant is not None:
            roles = (f"In the customer tenant {tenant}, the gateway's multi-tenant app needs the application role "
                     f"{' or '.join(API_FACTS[api].roles)} on WindowsDefenderATP (appId {DEFENDER_APP_ID}): the "
                     "tenant's administrator grants it with scripts/onboard-customer-tenant.sh.")
        if outcome.status == 401:
            return Problem(502, "upstream-unauthorized", "Bad answer from Defender",
                           f"Defender rejected the gateway's token (401). {audience}{_said(outcome.error)}",
                           extensions=_upstream(outcome.error))
        advice = {AuthCause.AUDIENCE: audience, AuthCause.ROLE: roles}.get(outcome.cause, roles + " " + audience)
        return Problem(502, "upstream-forbidden", "Bad answer from Defender",
                       f"Defender refused the gateway's identity (403). {advice}{_said(outcome.error)}",
                       extensions=_upstream(outcome.error))
    if isinstance(outcome, Unavailable):
        return _unavailable_problem(api, outcome)
    if isinstance(outcome, Malformed):
        return Problem(502, "upstream-malformed", "Bad answer from Defender",
                       f"Defender answered {outcome.status} with a body that is not the documented shape "
                       f"({'unexpected JSON' if outcome.is_json else 'not JSON'}).")
    if isinstance(outcome, Rejected):
        return Problem(502, "upstream-unexpected", "Bad answer from Defender",
                       f"Defender for Endpoint answered an unexpected {outcome.status}.{_said(outcome.error)}",
                       extensions=_upstream(outcome.error))
    raise TypeError("a success is not a problem")


def _throttled_problem(api: Api, outcome: Throttled, wait: int) -> Problem:
    upstream = upstream_name(api)
    return Problem(429, "upstream-throttled", f"{upstream} is throttling",
                   f"{'Defender for Endpoint' if upstream == 'Defender' else upstream} answered 429; retry after "
                   f"{wait} s. Every gateway instance holds calls to this API until then.{_said(outcome.error)}",
                   retry_after=wait)


def _unavailable_problem(api: Api, outcome: Unavailable) -> Problem:
    if outcome.timed_out:
        detail = "Defender for Endpoint did not answer within the gateway's timeouts. Retry later."
        if API_FACTS[api].method == "POST" and outcome.reach is Reach.MAYBE:
            detail += (" The request reached Defender, so the alert may exist already; a retry is safe because "
                       "Defender merges an alert with the same title into the open one on the same device.")
        return Problem(504, "upstream-timeout", "Defender did not answer in time", detail)
    if outcome.status is None:
        return Problem(502, "upstream-unreachable", "Defender is unreachable",
                       f"The gateway could not complete the call to Defender for Endpoint ({outcome.cause}). "
                       "Retry later.")
    if outcome.status == 503 and outcome.retry_after is not None:
        wait = _wait(outcome.retry_after)
        return Problem(503, "upstream-unavailable", "Defender is unavailable",
                       f"Defender for Endpoint answered 503 and asks to retry after {wait} s.{_said(outcome.error)}",
                       extensions=_upstream(outcome.error), retry_after=wait)
    return Problem(502, "upstream-error", "Bad answer from Defender",
                   f"Defender for Endpoint failed with {outcome.status}; retry later.{_said(outcome.error)}",
                   extensions=_upstream(outcome.error))


def refusal_problem(result: CallResult, api: Api, defender: DefenderSettings) -> Problem:
    """The answer when the shared budget refused the (last) attempt: wait, and say what was sent."""
    refused = result.decision
    if refused.reason is Reason.BLOCKED and refused.blocked_kind == ThrottleKind.CPU.value:
        return cpu_exhausted_problem(refused.retry_after)  # every instance holds the tenant's queries until then
    if isinstance(result.outcome, Throttled):
        # Defender's own 429 is why the retry was held: say so, and wait for the later of the two.
        defenders = _wait(result.outcome.retry_after) or DEFAULT_THROTTLE_SECONDS
        return _throttled_problem(api, result.outcome, max(defenders, refused.retry_after))
    upstream = upstream_name(api)
    if result.outcome is None:
        sent = f"Nothing was sent to {upstream}."
    else:
        said = outcome_problem(api, result.outcome, defender).detail
        sent = (f"{upstream} was tried {result.sent} time(s) before that, the last time with this result: {said} "
                "A retry would have exceeded the shared budget.")
    return Problem(429, "rate-limited", "Rate limit reached",
                   f"The gateway holds this call so that {upstream} never throttles the shared identity; retry after "
                   f"{refused.retry_after} s. {sent}", retry_after=refused.retry_after)


def interrupted_problem() -> Problem:
    """504: a worker stopped (crashed, or lost its lease) while the create was on its way; it is not sent again."""
    return Problem(504, "upstream-outcome-unknown", "Outcome unknown",
                   "The gateway was interrupted while this request was on its way to Defender for Endpoint, so it "
                   "does not know whether Defender acted on it, and it does not send a create twice. Defender "
                   "merges an alert with the same title into the open one on the same device, so sending the "
                   "request again (with a new Idempotency-Key or message id) is safe.")


def misconfigured_problem(error: ConfigurationError, *, listed: bool) -> Problem:
    """503: the app settings are wrong, so the gateway serves nothing until they are fixed. `listed`: for a caller the
    host checked (a key), naming each bad setting and why (never a value that may be a secret); otherwise only that
    the gateway is misconfigured."""
    if not listed:
        return Problem(503, "gateway-misconfigured", "Gateway misconfigured",
                       "The gateway's app settings are wrong, so it answers no call and takes no queued request until "
                       "they are fixed (queued requests wait). Its operator finds which in the log, or in this answer "
                       "on a route called with a function key.")
    settings = [{"setting": problem.setting, "problem": problem.reason} for problem in error.problems]
    names = ", ".join(dict.fromkeys(problem.setting for problem in error.problems))
    return Problem(503, "gateway-misconfigured", "Gateway misconfigured",
                   f"The gateway's app settings are wrong ({names}), so it answers no call and takes no queued "
                   "request until they are fixed (queued requests wait). See `settings`.",
                   extensions=MappingProxyType({"settings": settings}))


def start_failed_problem() -> Problem:
    """503: something other than a setting failed while the gateway started (the settings passed their checks), so it
    serves nothing until it is restarted with the cause fixed. The same problem type as bad settings, since the fix
    is the operator's either way; no detail of the error, whose text may hold a secret (it is in the log by type and
    place only)."""
    return Problem(503, "gateway-misconfigured", "Gateway misconfigured",
                   "The gateway could not start, so it answers no call and takes no queued request until it is "
                   "restarted with the cause fixed (queued requests wait). Its operator finds the cause in the log.")


def storage_problem() -> Problem:
    return Problem(503, "rate-limit-storage-unavailable", "Rate-limit storage unavailable",
                   "The gateway cannot reach the table that holds the shared Defender rate limit, so it does not call "
                   "Defender (it never admits blindly). Retry shortly.", retry_after=STORAGE_RETRY_AFTER)


def key_reused_problem() -> Problem:
    return Problem(422, "idempotency-key-reuse", "Idempotency key already used",
                   "This Idempotency-Key (or message id) was used for a different request; a key names one request. "
                   "Use a new key for a new request.")


def queue_problem() -> Problem:
    return Problem(503, "queue-unavailable", "Request queue unavailable",
                   "The gateway could not store the request for asynchronous processing, so it did not accept it "
                   "(nothing was sent to Defender). Retry shortly.", retry_after=STORAGE_RETRY_AFTER)


def operations_problem() -> Problem:
    return Problem(503, "operations-storage-unavailable", "Operations storage unavailable",
                   "The gateway cannot reach the table of asynchronous operations. Retry shortly.",
                   retry_after=STORAGE_RETRY_AFTER)


class Answers:
    """Outcomes, refusals and problems as answers: statuses, problem+json bodies and headers, decided once."""

    def __init__(self, defender: DefenderSettings, policies: Mapping[Api, RatePolicy],
                 cache_ttl: int | None = None, *, hunting_share: int | None = None) -> None:
        self.defender = defender
        #: How long a success may be reused (Cache-Control max-age, with Age), per API that shares answers:
        #: FILE_ALERTS_CACHE_SECONDS, HUNTING_SHARE_SECONDS (None or 0: not shared).
        self.cache_ttls = {Api.FILE_ALERTS: cache_ttl, Api.HUNTING: hunting_share}
        self.policy_headers = {api: policy_header(policy) for api, policy in policies.items()}

    def result(self, api: Api, result: CallResult, correlation_id: str, tenant: str | None = None) -> Answer:
        """200 with Defender's body, or the problem the last attempt maps to (`tenant`: the customer tenant)."""
        last = result.last
        if isinstance(last, Sent) and isinstance(last.outcome, Success):
            logger.info("%s -> 200 [correlation %s]", api, correlation_id)
            headers = {"RateLimit-Policy": self.policy_headers[api], **rate_limit_headers(last.decision),
                       **_common(correlation_id), **self._cache_headers(api, 0)}
            return _json(200, headers, last.outcome.body)
        problem = (refusal_problem(result, api, self.defender) if isinstance(last, Refused)
                   else outcome_problem(api, last.outcome, self.defender, tenant, last.blocked_for))
        # RateLimit says what the gateway will do with the next call: after Defender's 429 it holds every call
        # until the block ends; after Defender's 503 it holds none (Retry-After alone carries Defender's advice).
        held = problem.retry_after if isinstance(last, Sent) and isinstance(last.outcome, Throttled) else None
        return self.problem(api, problem, correlation_id, rate_limit_headers(result.decision, wait=held))

    def cached(self, api: Api, body: bytes, age: int, correlation_id: str) -> Answer:
        """A shared answer: no slot was taken, so RateLimit-Policy but no RateLimit."""
        logger.info("%s -> 200 from the answer cache, age %d s [correlation %s]", api, age, correlation_id)
        headers = {"RateLimit-Policy": self.policy_headers[api], **_common(correlation_id),
                   **self._cache_headers(api, age)}
        return _json(200, headers, body)

    def unknown_file(self, result: CallResult, correlation_id: str) -> Answer:
        """200 with no alerts, as Defender answers for an unknown SHA-1: its file information did not know the
        SHA-256 (404), so the alerts API was not asked. The headers describe the file-information budget."""
        logger.info("%s -> 200, unknown file [correlation %s]", Api.FILE_INFO, correlation_id)
        context = f"{self.defender.cloud.base_url}/api/$metadata#Alerts"
        headers = {"RateLimit-Policy": self.policy_headers[Api.FILE_INFO], **rate_limit_headers(result.decision),
                   **_common(correlation_id)}
        return _json(200, headers, json.dumps({"@odata.context": context, "value": []}).encode())

    def problem(self, api: Api | None, problem: Problem, correlation_id: str,
                headers: Mapping[str, str] | None = None) -> Answer:
        """A problem+json answer; `api` None for one about no Defender API (an operation's status, say)."""
        logger.info("%s -> %d %s [correlation %s]", api or "operations", problem.status, problem.kind,
                    correlation_id)
        policy = {"RateLimit-Policy": self.policy_headers[api]} if api is not None else {}
        return problem_answer(problem, correlation_id, {**policy, **(headers or {})})

    def accepted(self, operation: Mapping[str, object], location: str, retry_after: int,
                 correlation_id: str) -> Answer:
        """202 Accepted: the operation (its summary) is stored; poll `location`, waiting `retry_after` seconds."""
        body = json.dumps(operation).encode()
        return _json(202, {"Location": location, "Retry-After": str(retry_after), **_common(correlation_id)}, body)

    def _cache_headers(self, api: Api, age: int) -> dict[str, str]:
        """A successful lookup (or hunting query) may be reused for its shared answers' TTL (by this gateway, and by
        the caller)."""
        ttl = self.cache_ttls.get(api)
        if not ttl:
            return {}
        return {"Cache-Control": f"private, max-age={ttl}", "Age": str(age)}


def _json(status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    return Answer(status, MappingProxyType({**headers, "Content-Type": "application/json"}), body)


def problem_answer(problem: Problem, correlation_id: str, headers: Mapping[str, str] | None = None) -> Answer:
    """`problem` as problem+json with the headers every answer carries (and Retry-After when it says to wait); for
    an answer that needs no settings (the misconfigured edge's), else through Answers.problem."""
    wait = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else {}
    return Answer(problem.status, MappingProxyType({
        **(headers or {}), **wait, **problem.headers, **_common(correlation_id),
        "Content-Type": PROBLEM_CONTENT_TYPE}), problem.render(correlation_id))


def _common(correlation_id: str) -> dict[str, str]:
    return {CORRELATION_HEADER: correlation_id, "Cache-Control": "no-store"}
