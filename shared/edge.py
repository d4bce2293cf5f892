"""The HTTP edge: the only place that decides statuses, problem+json and response headers.

    respond(req, api, parse)
      correlation id  ->  Entra principal check  ->  parse(): DefenderRequest (InputError: 400/413/415)
      ->  Gateway.call  ->  CallResult  ->  200 with Defender's body, or the problem its outcome maps to

Every answer carries X-Correlation-ID, Cache-Control (no-store, or `private, max-age` with Age on a
file-alerts answer that the answer cache may share) and RateLimit-Policy; every answer given after
the limiter was consulted also carries RateLimit, and Retry-After whenever the caller is told to wait.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import azure.functions as func

from shared.correlation import CORRELATION_HEADER, correlation_id_for
from shared.defender import API_FACTS, DEFAULT_THROTTLE_SECONDS, DEFENDER_APP_ID, Api
from shared.defender_client import DefenderRequest, IdentityError
from shared.gateway import CallResult, Gateway, Refused, Sent
from shared.lookups import Fetched, FileAlertsLookups
from shared.outcomes import (
    AuthCause,
    DefenderError,
    Malformed,
    Outcome,
    Reach,
    Rejected,
    Success,
    Throttled,
    Unauthorized,
    Unavailable,
)
from shared.problems import PROBLEM_CONTENT_TYPE, Problem
from shared.ratelimit import RateLimitStorageError
from shared.ratelimit_headers import policy_header, rate_limit_headers
from shared.settings import AuthMode, ConfigurationError, DefenderSettings, Settings
from shared.validation import BodyFault, BodyTooLargeError, InputError, InvalidInputError, UnsupportedMediaTypeError

logger = logging.getLogger("mde_alert_gateway")

#: Set by App Service authentication (Easy Auth), which strips any such header a caller sends.
CLIENT_PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
#: How long a caller should wait when the rate-limit storage is unreachable.
STORAGE_RETRY_AFTER = 5

Parse = Callable[[], DefenderRequest]

_BODY_FAULTS = {
    None: "The request has invalid fields: {fields}. Nothing was sent to Defender.",
    BodyFault.NOT_JSON: "The request body is not valid JSON.",
    BodyFault.UNACCEPTABLE_JSON: "The request body is not JSON this API accepts.",
    BodyFault.NOT_AN_OBJECT: "The request body must be a JSON object.",
}


def input_problem(error: InputError) -> Problem:
    """400 naming every bad field, 413 for a body too large, 415 for a body that is not JSON."""
    if isinstance(error, BodyTooLargeError):
        return Problem(413, "payload-too-large", "Request body too large",
                       f"The body is {error.size} bytes; at most {error.limit} are accepted.")
    if isinstance(error, UnsupportedMediaTypeError):
        return Problem(415, "unsupported-media-type", "Unsupported media type",
                       f"Content-Type must be application/json, got {error.media_type or 'none'!r}.",
                       headers=MappingProxyType({"Accept-Post": "application/json"}))
    if isinstance(error, InvalidInputError):
        fields = ", ".join(e.field for e in error.errors)
        return Problem(400, "validation-error", "Invalid request", _BODY_FAULTS[error.fault].format(fields=fields),
                       errors=error.errors)
    raise TypeError(f"no answer for {type(error).__name__}")


def identity_problem(error: IdentityError) -> Problem:
    """502: the managed identity gave no token, so nothing could be sent."""
    return Problem(502, "identity-unavailable", "Cannot authenticate to Defender",
                   f"The gateway could not get a token for {error.scope} from its identity: {error.reason}. Check "
                   "that the function app has a managed identity (or AZURE_CLIENT_ID names its user-assigned "
                   "identity).")


def _said(error: DefenderError | None) -> str:
    return f" Defender said: {error.code or '?'}: {error.message or '(no message)'}" if error else ""


def _upstream(error: DefenderError | None) -> Mapping[str, object]:
    return MappingProxyType({"upstreamError": error.as_dict()} if error else {})


def _wait(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, math.ceil(seconds))


def outcome_problem(api: Api, outcome: Outcome, defender: DefenderSettings) -> Problem:
    """The answer for a Defender outcome other than success: the one table of upstream mappings."""
    audience = (f"The token audience must match the API host: MDE_CLOUD={defender.cloud.name} asks for "
                f"{defender.cloud.scope} and calls {defender.base_url}; check MDE_CLOUD / MDE_BASE_URL.")
    if isinstance(outcome, Throttled):
        return _throttled_problem(outcome, _wait(outcome.retry_after) or DEFAULT_THROTTLE_SECONDS)
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


def _throttled_problem(outcome: Throttled, wait: int) -> Problem:
    return Problem(429, "upstream-throttled", "Defender is throttling",
                   f"Defender for Endpoint answered 429; retry after {wait} s. Every gateway instance holds calls to "
                   f"this API until then.{_said(outcome.error)}", retry_after=wait)


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
    if isinstance(result.outcome, Throttled):
        # Defender's own 429 is why the retry was held: say so, and wait for the later of the two.
        defenders = _wait(result.outcome.retry_after) or DEFAULT_THROTTLE_SECONDS
        return _throttled_problem(result.outcome, max(defenders, refused.retry_after))
    if result.outcome is None:
        sent = "Nothing was sent to Defender."
    else:
        said = outcome_problem(api, result.outcome, defender).detail
        sent = (f"Defender was tried {result.sent} time(s) before that, the last time with this result: {said} "
                "A retry would have exceeded the shared budget.")
    return Problem(429, "rate-limited", "Rate limit reached",
                   f"The gateway holds this call so that Defender never throttles the shared identity; retry after "
                   f"{refused.retry_after} s. {sent}", retry_after=refused.retry_after)


class HttpEdge:
    """Turns a parsed request into an HTTP answer through the gateway (file-alerts lookups through `lookups`)."""

    def __init__(self, gateway: Gateway, settings: Settings, lookups: FileAlertsLookups | None = None) -> None:
        self.gateway = gateway
        self.settings = settings
        self.lookups = lookups or FileAlertsLookups(gateway, None)
        self._policy_headers = {api: policy_header(policy) for api, policy in settings.rate_limits.policies.items()}

    def respond(self, req: func.HttpRequest, api: Api, parse: Parse) -> func.HttpResponse:
        """Check the caller, parse, call Defender through the gateway, and answer."""
        return self._handle(req, api, lambda correlation_id: self._answer(
            api, self.gateway.call(parse(), correlation_id), correlation_id))

    def lookup_file_alerts(self, req: func.HttpRequest, parse_sha1: Callable[[], str]) -> func.HttpResponse:
        """Like `respond`, but a repeated SHA-1 may be answered from the shared cache (unless the caller asks for
        a fresh answer with `Cache-Control: no-cache`), or share one upstream call with a concurrent lookup."""

        def work(correlation_id: str) -> func.HttpResponse:
            lookup = self.lookups.lookup(parse_sha1(), correlation_id, refresh=wants_fresh_answer(req))
            if isinstance(lookup, Fetched):
                return self._answer(Api.FILE_ALERTS, lookup.result, correlation_id)
            logger.info("%s -> 200 from the answer cache, age %d s [correlation %s]", Api.FILE_ALERTS,
                        lookup.answer.age, correlation_id)
            headers = {"RateLimit-Policy": self._policy_headers[Api.FILE_ALERTS], **_common(correlation_id),
                       **self._cache_headers(Api.FILE_ALERTS, lookup.answer.age)}
            return func.HttpResponse(lookup.answer.body, status_code=200, headers=headers,
                                     mimetype="application/json")

        return self._handle(req, Api.FILE_ALERTS, work)

    def _handle(self, req: func.HttpRequest, api: Api,
                work: Callable[[str], func.HttpResponse]) -> func.HttpResponse:
        """Correlation id, caller check, `work`, and the one answer for every failure it raises."""
        correlation_id = correlation_id_for(req.headers)
        headers = {"RateLimit-Policy": self._policy_headers[api]}
        try:
            self._require_entra_principal(req)
            return work(correlation_id)
        except InputError as error:
            return self._problem(api, input_problem(error), headers, correlation_id)
        except IdentityError as error:
            return self._problem(api, identity_problem(error), headers, correlation_id)
        except RateLimitStorageError as error:
            logger.error("%s: rate-limit storage unavailable: %s [correlation %s]", api, error, correlation_id)
            return self._problem(api, Problem(
                503, "rate-limit-storage-unavailable", "Rate-limit storage unavailable",
                "The gateway cannot reach the table that holds the shared Defender rate limit, so it does not call "
                "Defender (it never admits blindly). Retry shortly.", retry_after=STORAGE_RETRY_AFTER),
                headers, correlation_id)
        except ConfigurationError as error:
            logger.error("%s: configuration error: %s [correlation %s]", api, error, correlation_id)
            return self._problem(api, Problem(500, "configuration-error", "Gateway misconfigured", str(error)),
                                 headers, correlation_id)
        except _UnauthenticatedError:
            return self._problem(api, Problem(
                401, "unauthenticated", "Authentication required",
                "This gateway accepts only callers signed in through Entra ID (App Service authentication); no "
                "client principal came with the request.", headers=MappingProxyType({"WWW-Authenticate": "Bearer"})),
                headers, correlation_id)
        except Exception:
            logger.exception("%s: unexpected failure [correlation %s]", api, correlation_id)
            return self._problem(api, Problem(500, "internal-error", "Internal error",
                                              "The gateway failed unexpectedly; the correlation id finds the details "
                                              "in its logs."), headers, correlation_id)

    def _answer(self, api: Api, result: CallResult, correlation_id: str) -> func.HttpResponse:
        last = result.last
        if isinstance(last, Sent) and isinstance(last.outcome, Success):
            logger.info("%s -> 200 [correlation %s]", api, correlation_id)
            headers = {**rate_limit_headers(last.decision), **_common(correlation_id), **self._cache_headers(api, 0)}
            return func.HttpResponse(last.outcome.body, status_code=200, headers=headers,
                                     mimetype="application/json")
        problem = (refusal_problem(result, api, self.settings.defender) if isinstance(last, Refused)
                   else outcome_problem(api, last.outcome, self.settings.defender))
        headers = rate_limit_headers(result.decision, wait=problem.retry_after)
        return self._problem(api, problem, headers, correlation_id)

    @staticmethod
    def _problem(api: Api, problem: Problem, headers: Mapping[str, str], correlation_id: str) -> func.HttpResponse:
        logger.info("%s -> %d %s [correlation %s]", api, problem.status, problem.kind, correlation_id)
        wait = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else {}
        return func.HttpResponse(problem.render(correlation_id), status_code=problem.status,
                                 headers={**headers, **wait, **problem.headers, **_common(correlation_id)},
                                 mimetype=PROBLEM_CONTENT_TYPE)

    def _cache_headers(self, api: Api, age: int) -> dict[str, str]:
        """A successful lookup may be reused for the cache's TTL (by this gateway, and by the caller)."""
        cache = self.lookups.cache
        if api is not Api.FILE_ALERTS or cache is None:
            return {}
        return {"Cache-Control": f"private, max-age={cache.ttl_seconds}", "Age": str(age)}

    def _require_entra_principal(self, req: func.HttpRequest) -> None:
        if self.settings.auth is AuthMode.ENTRA and not req.headers.get(CLIENT_PRINCIPAL_HEADER):
            raise _UnauthenticatedError


class _UnauthenticatedError(Exception):
    """With Entra ID in front, a request arrived without the client principal the platform adds."""


def wants_fresh_answer(req: func.HttpRequest) -> bool:
    """`Cache-Control: no-cache` (or `no-store`, `max-age=0`) from the caller: skip the answer cache."""
    directives = {part.strip().lower() for part in (req.headers.get("Cache-Control") or "").split(",")}
    return bool(directives & {"no-cache", "no-store", "max-age=0"})


def _common(correlation_id: str) -> dict[str, str]:
    return {CORRELATION_HEADER: correlation_id, "Cache-Control": "no-store"}

