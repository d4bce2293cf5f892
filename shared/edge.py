"""The HTTP edge: the only place that decides statuses, problem+json and response headers.

    respond(req, api, parse)
      correlation id  ->  Entra principal check  ->  parse(): DefenderRequest (InputError: 400/413/415)
      ->  Gateway.call  ->  CallResult  ->  200 with Defender's body, or the problem its outcome maps to
      (`Prefer: respond-async` or an `Idempotency-Key`: an operation, see shared.async_calls; 202 + Location)

`Answers` is the one mapping from outcomes and problems to answers (status, headers, body): the HTTP
functions use it through HttpEdge, and the queue worker stores what it gives as an operation's answer.

Every answer carries X-Correlation-ID, Cache-Control (no-store, or `private, max-age` with Age on a
file-alerts answer that the answer cache may share) and RateLimit-Policy; every answer given after
the limiter was consulted also carries RateLimit, and Retry-After whenever the caller is told to wait.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from urllib.parse import urlencode, urlsplit

import azure.functions as func

from shared.answer import Answer
from shared.async_calls import AsyncCalls, KeyReused, Submitted
from shared.callers import CallerRefusedError, Refusal, entra_caller
from shared.correlation import CORRELATION_HEADER, correlation_id_for
from shared.defender import API_FACTS, DEFAULT_THROTTLE_SECONDS, DEFENDER_APP_ID, Api
from shared.defender_client import DefenderRequest, IdentityError
from shared.gateway import CallResult, Gateway, Refused, Sent
from shared.health import health_report
from shared.lookups import Fetched, FileAlertsLookups, UnknownFile, Unresolved
from shared.openapi import served_document
from shared.operations import (
    OPERATION_ID_PATTERN,
    Operation,
    OperationsStorageError,
    keyed_operation_id,
    new_operation_id,
)
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
from shared.problems import PROBLEM_CONTENT_TYPE, FieldError, Problem
from shared.queue_messages import OPERATION_NAMES
from shared.queues import QueueStorageError
from shared.ratelimit import RateLimitStorageError
from shared.ratelimit_headers import policy_header, rate_limit_headers
from shared.settings import AuthMode, ConfigurationError, DefenderSettings, Settings
from shared.validation import (
    BodyFault,
    BodyTooLargeError,
    FileHash,
    HashKind,
    InputError,
    InvalidInputError,
    UnsupportedMediaTypeError,
)

logger = logging.getLogger("mde_alert_gateway")

#: How long a caller should wait when the rate-limit storage is unreachable.
STORAGE_RETRY_AFTER = 5

Parse = Callable[[], DefenderRequest]
OPERATION_ID = re.compile(OPERATION_ID_PATTERN, re.ASCII)

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


def interrupted_problem() -> Problem:
    """504: a worker stopped (crashed, or lost its lease) while the create was on its way; it is not sent again."""
    return Problem(504, "upstream-outcome-unknown", "Outcome unknown",
                   "The gateway was interrupted while this request was on its way to Defender for Endpoint, so it "
                   "does not know whether Defender acted on it, and it does not send a create twice. Defender "
                   "merges an alert with the same title into the open one on the same device, so sending the "
                   "request again (with a new Idempotency-Key or message id) is safe.")


def caller_problem(error: CallerRefusedError) -> Problem:
    """401 for a request that did not come through the platform's authentication, 403 for a caller not allowed."""
    if error.refusal is Refusal.NOT_ALLOWED:
        return Problem(403, "caller-not-allowed", "Caller not allowed",
                       f"The platform authenticated the caller, but the gateway does not let it in: {error.reason}.")
    return Problem(401, "unauthenticated", "Authentication required",
                   "This gateway accepts only callers signed in through Entra ID (App Service authentication): "
                   f"{error.reason}.", headers=MappingProxyType({"WWW-Authenticate": "Bearer"}))


def misconfigured_problem(error: ConfigurationError) -> Problem:
    """503: the app settings are wrong, so the gateway serves nothing until they are fixed (never a value)."""
    settings = [{"setting": problem.setting, "problem": problem.reason} for problem in error.problems]
    names = ", ".join(dict.fromkeys(problem.setting for problem in error.problems))
    return Problem(503, "gateway-misconfigured", "Gateway misconfigured",
                   f"The gateway's app settings are wrong ({names}), so it answers no call and takes no queued "
                   "request until they are fixed (queued requests wait). See `settings`.",
                   extensions=MappingProxyType({"settings": settings}))


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

    def __init__(self, settings: Settings, cache_ttl: int | None = None) -> None:
        self.settings = settings
        self.cache_ttl = cache_ttl
        self.policy_headers = {api: policy_header(policy) for api, policy in settings.rate_limits.policies.items()}

    def result(self, api: Api, result: CallResult, correlation_id: str) -> Answer:
        """200 with Defender's body, or the problem the last attempt maps to."""
        last = result.last
        if isinstance(last, Sent) and isinstance(last.outcome, Success):
            logger.info("%s -> 200 [correlation %s]", api, correlation_id)
            headers = {"RateLimit-Policy": self.policy_headers[api], **rate_limit_headers(last.decision),
                       **_common(correlation_id), **self._cache_headers(api, 0)}
            return _json(200, headers, last.outcome.body)
        problem = (refusal_problem(result, api, self.settings.defender) if isinstance(last, Refused)
                   else outcome_problem(api, last.outcome, self.settings.defender))
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
        context = f"{self.settings.defender.cloud.base_url}/api/$metadata#Alerts"
        headers = {"RateLimit-Policy": self.policy_headers[Api.FILE_INFO], **rate_limit_headers(result.decision),
                   **_common(correlation_id)}
        return _json(200, headers, json.dumps({"@odata.context": context, "value": []}).encode())

    def problem(self, api: Api | None, problem: Problem, correlation_id: str,
                headers: Mapping[str, str] | None = None) -> Answer:
        """A problem+json answer; `api` None for one about no Defender API (an operation's status, say)."""
        logger.info("%s -> %d %s [correlation %s]", api or "operations", problem.status, problem.kind,
                    correlation_id)
        wait = {"Retry-After": str(problem.retry_after)} if problem.retry_after is not None else {}
        policy = {"RateLimit-Policy": self.policy_headers[api]} if api is not None else {}
        return Answer(problem.status, MappingProxyType({
            **policy, **(headers or {}), **wait, **problem.headers, **_common(correlation_id),
            "Content-Type": PROBLEM_CONTENT_TYPE}), problem.render(correlation_id))

    def accepted(self, operation: Operation, location: str, retry_after: int, correlation_id: str) -> Answer:
        """202 Accepted: the operation is stored; poll `location`, waiting `retry_after` seconds."""
        body = json.dumps({"id": operation.id, "status": operation.state.value,
                           "operation": OPERATION_NAMES[operation.api],
                           "createdAt": _timestamp(operation.created_at), "attempts": operation.attempts}).encode()
        return _json(202, {"Location": location, "Retry-After": str(retry_after), **_common(correlation_id)}, body)

    def _cache_headers(self, api: Api, age: int) -> dict[str, str]:
        """A successful lookup may be reused for the cache's TTL (by this gateway, and by the caller)."""
        if api is not Api.FILE_ALERTS or not self.cache_ttl:
            return {}
        return {"Cache-Control": f"private, max-age={self.cache_ttl}", "Age": str(age)}


def _json(status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    return Answer(status, MappingProxyType({**headers, "Content-Type": "application/json"}), body)


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def http_response(answer: Answer) -> func.HttpResponse:
    headers = {name: value for name, value in answer.headers.items() if name != "Content-Type"}
    return func.HttpResponse(answer.body, status_code=answer.status, headers=headers, mimetype=answer.content_type)


#: How long a caller polling a pending operation should wait between looks.
POLL_SECONDS = 5
#: The Idempotency-Key header (IETF httpapi draft): a structured-field string, or a bare token.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r'"?([\x20-\x7e]{1,255}?)"?', re.ASCII)


class HttpEdge:
    """Turns a parsed request into an HTTP answer through the gateway (file-alerts lookups through `lookups`,
    asynchronous and idempotent calls through `async_calls`)."""

    def __init__(self, gateway: Gateway, settings: Settings, lookups: FileAlertsLookups | None = None,
                 async_calls: AsyncCalls | None = None) -> None:
        self.gateway = gateway
        self.settings = settings
        self.lookups = lookups or FileAlertsLookups(gateway, None)
        self.async_calls = async_calls
        self.answers = Answers(settings, self.lookups.cache.ttl_seconds if self.lookups.cache else None)

    def respond(self, req: func.HttpRequest, api: Api, parse: Parse) -> func.HttpResponse:
        """Check the caller, parse, call Defender through the gateway (or accept an operation), and answer."""
        return self._handle(req, api, lambda correlation_id, caller: self._call(req, api, parse(), correlation_id,
                                                                                caller))

    def lookup_file_alerts(self, req: func.HttpRequest, parse_hash: Callable[[], FileHash]) -> func.HttpResponse:
        """Like `respond`, but a repeated SHA-1 may be answered from the shared cache (unless the caller asks for
        a fresh answer with `Cache-Control: no-cache`), or share one upstream call with a concurrent lookup.

        A SHA-256 is resolved to its file's SHA-1 first (the shared map, else Defender's file information
        within its own budget, whose failures are answered like any call's); a file Defender does not know is
        200 with no alerts. An operation (`Prefer: respond-async`) keeps the SHA-256: the worker resolves it."""

        def work(correlation_id: str, caller: str) -> Answer:
            kind, value = parse_hash()
            operation = self._operation_wanted(req)
            if operation and (kind is HashKind.SHA1 or wants_async(req)):
                return self._call(req, Api.FILE_ALERTS, DefenderRequest.file_alerts(value), correlation_id, caller)
            sha1 = value
            if kind is HashKind.SHA256:
                resolution = self.lookups.resolver.resolve(value, correlation_id)
                if isinstance(resolution, UnknownFile):
                    return self.answers.unknown_file(resolution.result, correlation_id)
                if isinstance(resolution, Unresolved):
                    return self._synchronous_answer(req, Api.FILE_INFO, DefenderRequest.file_alerts(value),
                                                    resolution.result, correlation_id, caller, may_queue=not operation)
                sha1 = resolution.sha1
                if operation:  # an Idempotency-Key, run here: the operation is the lookup of the file's SHA-1
                    return self._call(req, Api.FILE_ALERTS, DefenderRequest.file_alerts(sha1), correlation_id,
                                      caller)
            lookup = self.lookups.lookup(sha1, correlation_id, refresh=wants_fresh_answer(req))
            if isinstance(lookup, Fetched):
                return self._synchronous_answer(req, Api.FILE_ALERTS, DefenderRequest.file_alerts(sha1),
                                                lookup.result, correlation_id, caller)
            return self.answers.cached(Api.FILE_ALERTS, lookup.answer.body, lookup.answer.age, correlation_id)

        return self._handle(req, Api.FILE_ALERTS, work)

    def health(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/health: 200 when storage, queues and the identity answer, else 503 (see shared.health)."""
        assert self.async_calls is not None, "health reads the operations and the queues"
        healthy, report = health_report(self.gateway, self.async_calls.operations, self.async_calls.queues)
        return func.HttpResponse(json.dumps(report), status_code=200 if healthy else 503, mimetype="application/json",
                                 headers={"Cache-Control": "no-store"})

    def openapi(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/openapi.json: the OpenAPI 2.0 document, with the caller's host."""
        return func.HttpResponse(json.dumps(served_document(self.settings.auth, req.url)), status_code=200,
                                 mimetype="application/json", headers={"Cache-Control": "no-store"})

    def operation_status(self, req: func.HttpRequest, operation_id: str) -> func.HttpResponse:
        """GET /api/operations/{id}: 202 while pending, then the answer the synchronous call gave."""
        correlation_id = correlation_id_for(req.headers)
        try:
            caller = self._caller(req)
            if self.async_calls is None or not OPERATION_ID.fullmatch(operation_id):
                raise InvalidInputError([FieldError("route.id", "is not an operation id")])
            operation = self.async_calls.status(operation_id, caller)
        except Exception as error:
            return http_response(self._failure(None, error, correlation_id))
        if operation is None:
            return http_response(self.answers.problem(None, Problem(
                404, "operation-not-found", "Operation not found",
                "No operation has this id, or it is older than the retention (OPERATIONS_RETENTION_HOURS)."),
                correlation_id))
        if operation.answer is not None:
            return http_response(operation.answer)
        return http_response(self.answers.accepted(operation, self._location(req, operation.id), POLL_SECONDS,
                                                   correlation_id))

    def _call(self, req: func.HttpRequest, api: Api, request: DefenderRequest, correlation_id: str,
              caller: str) -> Answer:
        """Synchronous, or an operation when the caller asks for one (Prefer: respond-async, Idempotency-Key)."""
        key = self._idempotency_key(req)
        if self.async_calls is None or not (wants_async(req) or key):
            return self._synchronous_answer(req, api, request, self.gateway.call(request, correlation_id),
                                            correlation_id, caller)
        operation_id = keyed_operation_id(caller, key) if key else new_operation_id()
        if wants_async(req):
            return self._submitted(req, self.async_calls.submit(operation_id, request, caller, correlation_id),
                                   correlation_id)
        # An Idempotency-Key on a synchronous call: run it here, once, and keep its answer for repeats.
        ran = self.async_calls.run_here(operation_id, request, caller, correlation_id,
                                        lambda: self._synchronous_answer(req, api, request,
                                                                         self.gateway.call(request, correlation_id),
                                                                         correlation_id, caller, may_queue=False))
        return self._submitted(req, ran, correlation_id)

    def _synchronous_answer(self, req: func.HttpRequest, api: Api, request: DefenderRequest, result: CallResult,
                            correlation_id: str, caller: str, *, may_queue: bool = True) -> Answer:
        """The answer of a synchronous call; with GATEWAY_ASYNC_ON_THROTTLE, a refusal before anything was sent
        becomes an operation (202) instead of a 429."""
        if (may_queue and self.async_calls is not None and self.settings.asynchronous.async_on_throttle
                and isinstance(result.last, Refused) and result.sent == 0):
            submitted = self.async_calls.submit(new_operation_id(), request, caller, correlation_id)
            return self._submitted(req, submitted, correlation_id, retry_after=result.decision.retry_after)
        return self.answers.result(api, result, correlation_id)

    def _submitted(self, req: func.HttpRequest, submitted: Submitted, correlation_id: str, *,
                   retry_after: int = POLL_SECONDS) -> Answer:
        operation = submitted.operation
        if isinstance(submitted, KeyReused):
            return self.answers.problem(operation.api, key_reused_problem(), correlation_id)
        if operation.answer is not None:
            return operation.answer
        accepted = self.answers.accepted(operation, self._location(req, operation.id), retry_after, correlation_id)
        if wants_async(req):
            return Answer(accepted.status, MappingProxyType({**accepted.headers,
                                                             "Preference-Applied": "respond-async"}), accepted.body)
        return accepted

    def _handle(self, req: func.HttpRequest, api: Api, work: Callable[[str, str], Answer]) -> func.HttpResponse:
        """Correlation id, caller check, `work(correlation_id, caller)`, and the one answer for every failure it
        raises."""
        correlation_id = correlation_id_for(req.headers)
        try:
            return http_response(work(correlation_id, self._caller(req)))
        except Exception as error:
            return http_response(self._failure(api, error, correlation_id))

    def _failure(self, api: Api | None, error: Exception, correlation_id: str) -> Answer:
        api_name = api or "operations"

        def answer(problem: Problem) -> Answer:
            return self.answers.problem(api, problem, correlation_id)

        if isinstance(error, InputError):
            return answer(input_problem(error))
        if isinstance(error, IdentityError):
            return answer(identity_problem(error))
        if isinstance(error, RateLimitStorageError):
            logger.error("%s: rate-limit storage unavailable: %s [correlation %s]", api_name, error, correlation_id)
            return answer(storage_problem())
        if isinstance(error, QueueStorageError):
            logger.error("%s: request queue unavailable: %s [correlation %s]", api_name, error, correlation_id)
            return answer(queue_problem())
        if isinstance(error, OperationsStorageError):
            logger.error("%s: operations table unavailable: %s [correlation %s]", api_name, error, correlation_id)
            return answer(operations_problem())
        if isinstance(error, ConfigurationError):
            logger.error("%s: configuration error: %s [correlation %s]", api_name, error, correlation_id)
            return answer(Problem(500, "configuration-error", "Gateway misconfigured", str(error)))
        if isinstance(error, CallerRefusedError):
            return answer(caller_problem(error))
        logger.error("%s: unexpected failure [correlation %s]", api_name, correlation_id, exc_info=error)
        return answer(Problem(500, "internal-error", "Internal error",
                              "The gateway failed unexpectedly; the correlation id finds the details in its logs."))

    def _operation_wanted(self, req: func.HttpRequest) -> bool:
        return self.async_calls is not None and (wants_async(req) or self._idempotency_key(req) is not None)

    @staticmethod
    def _idempotency_key(req: func.HttpRequest) -> str | None:
        raw = req.headers.get(IDEMPOTENCY_KEY_HEADER)
        if raw is None:
            return None
        match = _IDEMPOTENCY_KEY.fullmatch(raw.strip(" \t"))
        if not match or not match[1].strip():
            raise InvalidInputError([FieldError("header.Idempotency-Key",
                                                "must be 1-255 printable ASCII characters (optionally quoted)")])
        return match[1]

    def _caller(self, req: func.HttpRequest) -> str:
        """Whose operations these are: the Entra caller's object id, checked (CallerRefusedError); "" with function
        keys, which name no caller."""
        if self.settings.auth is AuthMode.ENTRA:
            return entra_caller(req.headers, self.settings.access).principal_id
        return ""

    @staticmethod
    def _location(req: func.HttpRequest, operation_id: str) -> str:
        """Where to poll: this host's operations route, with the function key when it came as `?code=` (a caller
        that can send no header must be able to follow Location as it is)."""
        parts = urlsplit(req.url)
        code = req.params.get("code")
        query = "?" + urlencode({"code": code}) if code else ""
        return f"{parts.scheme}://{parts.netloc}/api/operations/{operation_id}{query}"


class MisconfiguredEdge:
    """The edge while the app settings are wrong: every HTTP function, health included, answers 503
    gateway-misconfigured naming each bad setting (the app still indexes its functions, so callers and
    monitors hear why instead of a host-wide 404)."""

    def __init__(self, error: ConfigurationError) -> None:
        self.error = error
        self.problem = misconfigured_problem(error)

    def respond(self, req: func.HttpRequest, api: Api, parse: Parse) -> func.HttpResponse:
        return self._answer(req)

    def lookup_file_alerts(self, req: func.HttpRequest, parse_hash: Callable[[], FileHash]) -> func.HttpResponse:
        return self._answer(req)

    def operation_status(self, req: func.HttpRequest, operation_id: str) -> func.HttpResponse:
        return self._answer(req)

    def health(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req)

    def openapi(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req)

    def _answer(self, req: func.HttpRequest) -> func.HttpResponse:
        correlation_id = correlation_id_for(req.headers)
        return http_response(Answer(self.problem.status, MappingProxyType({
            **_common(correlation_id), "Content-Type": PROBLEM_CONTENT_TYPE}), self.problem.render(correlation_id)))


#: What the entry points call: the gateway's edge, or the one that says the settings are wrong.
Edge = HttpEdge | MisconfiguredEdge


def wants_async(req: func.HttpRequest) -> bool:
    """`Prefer: respond-async` (RFC 7240), among any other preferences."""
    preferences = (req.headers.get("Prefer") or "").split(",")
    return any(part.split(";", 1)[0].strip().lower() == "respond-async" for part in preferences)


def wants_fresh_answer(req: func.HttpRequest) -> bool:
    """`Cache-Control: no-cache` (or `no-store`, `max-age=0`) from the caller: skip the answer cache."""
    directives = {part.strip().lower() for part in (req.headers.get("Cache-Control") or "").split(",")}
    return bool(directives & {"no-cache", "no-store", "max-age=0"})


def _common(correlation_id: str) -> dict[str, str]:
    return {CORRELATION_HEADER: correlation_id, "Cache-Control": "no-store"}
