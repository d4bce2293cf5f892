"""The HTTP edge: requests in, answers out, for the HTTP functions.

    respond(req, api, parse)
      correlation id  ->  Entra principal check  ->  parse(): DefenderRequest (InputError: 400/413/415)
      ->  Gateway.call  ->  CallResult  ->  200 with Defender's body, or the problem its outcome maps to
      (`Prefer: respond-async` or an `Idempotency-Key`: an operation, see shared.asynchronous.calls; 202 + Location)

The answers themselves (statuses, problem+json, headers) are decided in shared.answers.mapping, which the queue
worker uses too; this module only turns requests into calls and those answers into func.HttpResponse,
and is the only one that imports azure.functions.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Collection
from types import MappingProxyType
from urllib.parse import urlencode, urlsplit

import azure.functions as func

from shared.answers.answer import Answer
from shared.answers.correlation import correlation_id_for
from shared.answers.hunting import in_shape
from shared.answers.mapping import (
    Answers,
    identity_problem,
    input_problem,
    key_reused_problem,
    operations_problem,
    queue_problem,
    storage_problem,
)
from shared.answers.problems import Problem
from shared.asynchronous.calls import AsyncCalls, KeyReused, Submitted
from shared.asynchronous.operations import (
    OPERATION_ID_PATTERN,
    OperationsStorageError,
    keyed_operation_id,
    new_operation_id,
)
from shared.asynchronous.queues import QueueStorageError
from shared.configuration import ConfigurationError
from shared.defender.client import DefenderRequest, IdentityError
from shared.defender.facts import Api
from shared.defender.gateway import CallResult, Gateway, Refused
from shared.health import health_report
from shared.http.callers import (
    ANY_ROLE,
    ROLE_OF_API,
    CallerCheck,
    CallerRefusedError,
    TenantRefusedError,
    caller_problem,
    check_tenant,
    may_act,
    tenant_problem,
)
from shared.http.incoming import Incoming
from shared.http.openapi import served_document
from shared.http.operator import OperatorConsole
from shared.http.settings import AuthSettings, Role
from shared.http.tokens import SigningKeys
from shared.lookups.file_alerts import (
    Cached,
    Deferred,
    Fetched,
    FileAlertsLookups,
    Lookup,
    Resolution,
    Resolved,
    UnknownFile,
    Unresolved,
)
from shared.lookups.hunting import HuntingLookups, Shared
from shared.ratelimit import RateLimitStorageError
from shared.telemetry import catalogue
from shared.telemetry.catalogue import ErrorKind, SpanName
from shared.validation import (
    FieldError,
    FileHash,
    HashKind,
    InputError,
    InvalidInputError,
    parse_json_object,
)
from shared.validation.hunting import HuntingShape, validate_hunting

logger = logging.getLogger("mde_alert_gateway")

Parse = Callable[[], DefenderRequest]
#: The failures of what the gateway stands on, as telemetry counts them.
_ERROR_KINDS: dict[type[Exception], ErrorKind] = {
    IdentityError: ErrorKind.IDENTITY, RateLimitStorageError: ErrorKind.RATE_LIMIT_STORAGE,
    QueueStorageError: ErrorKind.QUEUE_STORAGE, OperationsStorageError: ErrorKind.OPERATIONS_STORAGE,
}
OPERATION_ID = re.compile(OPERATION_ID_PATTERN, re.ASCII)


def http_response(answer: Answer) -> func.HttpResponse:
    headers = {name: value for name, value in answer.headers.items() if name != "Content-Type"}
    return func.HttpResponse(answer.body, status_code=answer.status, headers=headers, mimetype=answer.content_type)


#: How long a caller polling a pending operation should wait between looks.
POLL_SECONDS = 5


class HttpEdge:
    """Turns a parsed request into an HTTP answer through the gateway (file-alerts lookups through `lookups`,
    asynchronous and idempotent calls through `async_calls`)."""

    def __init__(self, gateway: Gateway, answers: Answers, access: AuthSettings, *,
                 lookups: FileAlertsLookups | None = None, async_calls: AsyncCalls | None = None,
                 async_on_throttle: bool = False, clock: Callable[[], float] = time.time,
                 keys: SigningKeys | None = None, hunting: HuntingLookups | None = None) -> None:
        self.gateway = gateway
        self.answers = answers
        self.access = access
        self.callers = CallerCheck(access, keys)
        self.lookups = lookups or FileAlertsLookups(gateway)
        #: Hunting queries, shared with the queue worker (HUNTING_SHARE_SECONDS: identical queries share an answer).
        self.hunting = hunting or HuntingLookups(gateway)
        self.async_calls = async_calls
        #: GATEWAY_ASYNC_ON_THROTTLE: a synchronous call the budget refuses becomes an operation (202).
        self.async_on_throttle = async_on_throttle
        self.operator = OperatorConsole(gateway, async_calls, answers, clock=clock) if async_calls else None

    def respond(self, req: func.HttpRequest, api: Api, parse: Parse, tenant: str | None = None, *,
                context: func.Context | None = None) -> func.HttpResponse:
        """Check the caller (and the customer tenant, if one is named), parse, call Defender through the gateway (or
        accept an operation), and answer. `context`: the invocation's, whose trace the request's span continues."""
        return self._handle(req, api, lambda incoming: self._call(incoming, api, parse().for_tenant(incoming.tenant)),
                            tenant, context)

    def hunt(self, req: func.HttpRequest, shape: HuntingShape, tenant: str | None = None, *,
             context: func.Context | None = None) -> func.HttpResponse:
        """Advanced hunting (one Graph call): like `respond`, the body checked for `shape` (the path's: Defender's or
        Graph's) before anything is spent, a 200 in that shape. With HUNTING_SHARE_SECONDS a synchronous query may be
        answered from an identical recent one's answer (with its Age; Stats.ExecutionTime: the time of the call that
        got it), unless `Cache-Control: no-cache`."""

        def work(incoming: Incoming) -> Answer:
            document = parse_json_object(req.get_body(), req.headers.get("Content-Type"))
            query, timespan = validate_hunting(document, shape)
            request = DefenderRequest.hunting(query, timespan).for_tenant(incoming.tenant)
            if not self.hunting.sharing or incoming.fresh or (self.async_calls is not None
                                                                and incoming.wants_operation):
                return self._call(incoming, Api.HUNTING, request, shape=shape)
            found = self.hunting.call(request, self.gateway.identity(incoming.tenant, request.service),
                                      incoming.correlation_id)
            if isinstance(found, Shared):  # its age said (Age), and the time of the Graph call that got it
                shared = self.answers.cached(Api.HUNTING, found.answer.body, found.answer.age, incoming.correlation_id)
                return in_shape(shared, shape, found.answer.seconds)
            return self._synchronous_answer(incoming, Api.HUNTING, request, found.result, shape=shape)

        return self._handle(req, Api.HUNTING, work, tenant, context)

    def lookup_file_alerts(self, req: func.HttpRequest, parse_hash: Callable[[], FileHash],
                           tenant: str | None = None, *, context: func.Context | None = None) -> func.HttpResponse:
        """Like `respond`, but a repeated SHA-1 may be answered from the shared cache (unless the caller asks for
        a fresh answer with `Cache-Control: no-cache`), or share one upstream call with a concurrent lookup.

        A SHA-256 is resolved to its file's SHA-1 first (the shared map, else Defender's file information
        within its own budget, whose failures are answered like any call's); a file Defender does not know is
        200 with no alerts. An operation (`Prefer: respond-async`) keeps the SHA-256: the worker resolves it."""

        def work(incoming: Incoming) -> Answer:
            kind, value = parse_hash()
            operation = self.async_calls is not None and incoming.wants_operation
            correlation_id, tenant = incoming.correlation_id, incoming.tenant

            def alerts_of(file_hash: str) -> DefenderRequest:
                return DefenderRequest.file_alerts(file_hash).for_tenant(tenant)

            if operation and (kind is HashKind.SHA1 or incoming.asynchronous):
                return self._call(incoming, Api.FILE_ALERTS, alerts_of(value))
            identity = self.gateway.identity(tenant)
            found: Lookup | Resolution
            if operation:  # an Idempotency-Key on a SHA-256, run here: the operation is the lookup of its SHA-1
                resolved = self.lookups.resolve(value, self.lookups.http_send(identity, correlation_id), tenant)
                assert not isinstance(resolved, Deferred), "Gateway.call always comes to a result"
                found = resolved
                if isinstance(found, Resolved):
                    return self._call(incoming, Api.FILE_ALERTS, alerts_of(found.sha1))
            else:
                found = self.lookups.call(value, identity, correlation_id, refresh=incoming.fresh, tenant=tenant)
            if isinstance(found, Cached):
                return self.answers.cached(Api.FILE_ALERTS, found.answer.body, found.answer.age, correlation_id)
            if isinstance(found, Fetched):
                return self._synchronous_answer(incoming, Api.FILE_ALERTS, alerts_of(found.sha1), found.result)
            if isinstance(found, UnknownFile):
                return self.answers.unknown_file(found.result, correlation_id)
            assert isinstance(found, Unresolved)
            return self._synchronous_answer(incoming, Api.FILE_INFO, alerts_of(value), found.result,
                                            may_queue=not operation)

        return self._handle(req, Api.FILE_ALERTS, work, tenant, context)

    def health(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/health: 200 when storage, queues and the identity answer, else 503 (see shared.health); with
        Entra ID, a caller holding one of the gateway's roles only."""
        assert self.async_calls is not None, "health reads the operations and the queues"
        if denied := self._allowed(req, ANY_ROLE):
            return denied
        healthy, report = health_report(self.gateway, self.async_calls.operations, self.async_calls.queues)
        return func.HttpResponse(json.dumps(report), status_code=200 if healthy else 503, mimetype="application/json",
                                 headers={"Cache-Control": "no-store"})

    def operator_page(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/operator: the operator page (shared.http.operator); with Entra ID, an allowed caller only."""
        return self._allowed(req, {Role.OPERATE}) or OperatorConsole.page()

    def operator_state(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/operator/state: what the page shows; 503 when a part of it cannot be read."""
        assert self.operator is not None, "the operator page reads the operations and the queues"
        return self._allowed(req, {Role.OPERATE}) or self.operator.state()

    def _allowed(self, req: func.HttpRequest, roles: Collection[Role]) -> func.HttpResponse | None:
        """None when the caller may see these views (holds one of `roles`), else the answer that says why not."""
        try:
            self.callers.caller(req.headers, roles)
        except Exception as error:
            return http_response(self._failure(None, error, correlation_id_for(req.headers)))
        return None

    def operator_redrive(self, req: func.HttpRequest) -> func.HttpResponse:
        """POST /api/operator/redrive: send a poisoned request again (with Entra ID, an allowed caller only)."""
        assert self.operator is not None, "a re-drive writes the operations and the queues"
        correlation_id = correlation_id_for(req.headers)
        try:
            caller = self.callers.caller(req.headers, {Role.OPERATE})  # with Entra ID, of its tenants only
            answer = self.operator.redrive(req.get_body(), req.headers.get("content-type"), correlation_id,
                                           lambda tenant: may_act(self.access, caller, tenant))
        except Exception as error:
            answer = self._failure(None, error, correlation_id)
        return http_response(answer)

    def openapi(self, req: func.HttpRequest) -> func.HttpResponse:
        """GET /api/openapi.json: the OpenAPI 2.0 document, with the caller's host."""
        return func.HttpResponse(json.dumps(served_document(self.access.mode, req.url)), status_code=200,
                                 mimetype="application/json", headers={"Cache-Control": "no-store"})

    def operation_status(self, req: func.HttpRequest, operation_id: str) -> func.HttpResponse:
        """GET /api/operations/{id}: 202 while pending, then the answer the synchronous call gave."""
        correlation_id = correlation_id_for(req.headers)
        try:
            caller = self.callers.caller(req.headers, {Role.OPERATIONS_READ})
            if self.async_calls is None or not OPERATION_ID.fullmatch(operation_id):
                raise InvalidInputError([FieldError("route.id", "is not an operation id")])
            operation = self.async_calls.status(operation_id, caller)
            if operation is not None:  # with Entra ID, as the routes of its tenant do
                check_tenant(self.access, caller, operation.request.tenant)
        except Exception as error:
            return http_response(self._failure(None, error, correlation_id))
        if operation is None:
            return http_response(self.answers.problem(None, Problem(
                404, "operation-not-found", "Operation not found",
                "No operation has this id, or it is older than the retention (OPERATIONS_RETENTION_HOURS)."),
                correlation_id))
        if operation.answer is not None:
            return http_response(operation.answer)
        return http_response(self.answers.accepted(operation.summary(), self._location(req, operation.id), POLL_SECONDS,
                                                   correlation_id))

    def _call(self, incoming: Incoming, api: Api, request: DefenderRequest, *,
              shape: HuntingShape | None = None) -> Answer:
        """Synchronous, or an operation when the caller asks for one (Prefer: respond-async, Idempotency-Key).
        `shape`: a hunting call's answer shape (the synchronous answer, and the one an operation keeps, are in it)."""
        correlation_id, caller, key = incoming.correlation_id, incoming.caller, incoming.idempotency_key
        if self.async_calls is None or not incoming.wants_operation:
            result = self.gateway.call(request, correlation_id)
            return self._synchronous_answer(incoming, api, request, result, shape=shape)
        operation_id = keyed_operation_id(caller, key, incoming.tenant) if key else new_operation_id()
        if incoming.asynchronous:
            return self._submitted(incoming, self.async_calls.submit(operation_id, request, caller, correlation_id,
                                                                     shape=shape))
        # An Idempotency-Key on a synchronous call: run it here, once, and keep its answer (and what it sent).
        def run() -> tuple[Answer, int]:
            result = self.gateway.call(request, correlation_id)
            return self._synchronous_answer(incoming, api, request, result, may_queue=False, shape=shape), result.sent

        return self._submitted(incoming, self.async_calls.run_here(operation_id, request, caller, correlation_id, run,
                                                                   shape=shape))

    def _synchronous_answer(self, incoming: Incoming, api: Api, request: DefenderRequest, result: CallResult, *,
                            may_queue: bool = True, shape: HuntingShape | None = None) -> Answer:
        """The answer of a synchronous call (a hunting one in `shape`: Stats.ExecutionTime is its Graph request's own
        time, CallResult.seconds); with GATEWAY_ASYNC_ON_THROTTLE, a refusal before anything was sent becomes an
        operation (202) instead of a 429."""
        if (may_queue and self.async_calls is not None and self.async_on_throttle
                and isinstance(result.last, Refused) and result.sent == 0):
            submitted = self.async_calls.submit(new_operation_id(), request, incoming.caller, incoming.correlation_id,
                                                shape=shape)
            return self._submitted(incoming, submitted, retry_after=result.decision.retry_after)
        answer = self.answers.result(api, result, incoming.correlation_id, incoming.tenant)
        return answer if shape is None else in_shape(answer, shape, result.seconds)

    def _submitted(self, incoming: Incoming, submitted: Submitted, *, retry_after: int = POLL_SECONDS) -> Answer:
        operation = submitted.operation
        if isinstance(submitted, KeyReused):
            return self.answers.problem(operation.api, key_reused_problem(), incoming.correlation_id)
        if operation.answer is not None:
            return operation.answer
        accepted = self.answers.accepted(operation.summary(), self._location(incoming.req, operation.id), retry_after,
                                         incoming.correlation_id)
        if incoming.asynchronous:
            return Answer(accepted.status, MappingProxyType({**accepted.headers,
                                                             "Preference-Applied": "respond-async"}), accepted.body)
        return accepted

    def _handle(self, req: func.HttpRequest, api: Api, work: Callable[[Incoming], Answer],
                tenant: str | None, context: func.Context | None) -> func.HttpResponse:
        """The request read once (correlation id, caller check, the customer tenant it names, how it wants its
        answer), `work`, and the one answer for every failure it raises.

        The request's span is a child of the host's invocation (the `traceparent` the host hands the worker, as
        the worker itself uses it when it runs OpenTelemetry): in Application Insights the gateway's spans sit
        under the host's request for the function, in the same operation."""
        correlation_id = correlation_id_for(req.headers)
        attributes = {catalogue.API: api.value, catalogue.CORRELATION_ID: correlation_id}
        telemetry = self.gateway.telemetry
        invocation = telemetry.continued(context.trace_context.trace_parent) if context is not None else None
        with telemetry.span(SpanName.REQUEST, attributes, parent=invocation) as span:
            try:
                caller = self.callers.caller(req.headers, {ROLE_OF_API[api]})
                answer = work(Incoming(req, correlation_id, caller, self._tenant(tenant, caller)))
            except Exception as error:
                answer = self._failure(api, error, correlation_id)
            span.set_attribute(catalogue.STATUS, answer.status)
            return http_response(answer)

    def _failure(self, api: Api | None, error: Exception, correlation_id: str) -> Answer:
        api_name = api or "operations"

        def answer(problem: Problem) -> Answer:
            return self.answers.problem(api, problem, correlation_id)

        if isinstance(error, InputError):
            return answer(input_problem(error, api))
        kind = _ERROR_KINDS.get(type(error))
        if isinstance(error, IdentityError) and error.tenant is not None:
            kind = ErrorKind.TENANT_IDENTITY
        if kind is not None:
            self.gateway.telemetry.error(kind)
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
        if isinstance(error, TenantRefusedError):
            return answer(tenant_problem(error))
        logger.error("%s: unexpected failure [correlation %s]", api_name, correlation_id, exc_info=error)
        return answer(Problem(500, "internal-error", "Internal error",
                              "The gateway failed unexpectedly; the correlation id finds the details in its logs."))

    def _tenant(self, named: str | None, caller: str) -> str | None:
        """The id of the customer tenant a route names (None: the home tenant); TenantRefusedError when the gateway
        serves no such tenant, or (with Entra ID) this caller may not act for it."""
        if named is None:
            check_tenant(self.access, caller, None)
            return None
        multi = self.gateway.client.settings.multi_tenant
        found = multi.find(named) if multi is not None else None
        if found is None:
            raise TenantRefusedError(named, listed=False)
        check_tenant(self.access, caller, found.id, named)  # named as asked: no id-to-name mapping is given away
        return found.id

    @staticmethod
    def _location(req: func.HttpRequest, operation_id: str) -> str:
        """Where to poll: this host's operations route, with the function key when it came as `?code=` (a caller
        that can send no header must be able to follow Location as it is)."""
        parts = urlsplit(req.url)
        code = req.params.get("code")
        query = "?" + urlencode({"code": code}) if code else ""
        return f"{parts.scheme}://{parts.netloc}/api/operations/{operation_id}{query}"
