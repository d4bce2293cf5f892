"""Turns a gateway call into an HTTP response; every failure becomes problem+json."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import azure.functions as func

from shared.correlation import CORRELATION_HEADER, correlation_id_for
from shared.gateway import GatewayResponse
from shared.problems import PROBLEM_CONTENT_TYPE, ProblemError
from shared.ratelimit import RateLimitStorageError
from shared.runtime import gateway
from shared.settings import ConfigurationError, setting

logger = logging.getLogger("mde_alert_gateway")

#: Set by App Service authentication (Easy Auth), which strips any such header a caller sends.
CLIENT_PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"

Action = Callable[[str], GatewayResponse]


def _problem_response(problem: ProblemError, correlation_id: str) -> func.HttpResponse:
    headers = {**problem.headers, CORRELATION_HEADER: correlation_id, "Cache-Control": "no-store"}
    return func.HttpResponse(problem.render(correlation_id), status_code=problem.status, headers=headers,
                             mimetype=PROBLEM_CONTENT_TYPE)


def _require_entra_principal(req: func.HttpRequest) -> None:
    if setting(os.environ, "GATEWAY_AUTH") == "entra" and not req.headers.get(CLIENT_PRINCIPAL_HEADER):
        raise ProblemError(401, "Authentication required",
                           "This gateway accepts only callers signed in through Entra ID (App Service "
                           "authentication); no client principal came with the request.", "unauthenticated",
                           headers={"WWW-Authenticate": "Bearer"})


def _policy_headers(api: str) -> dict[str, str]:
    try:
        return gateway().policy_headers(api)
    except ConfigurationError:
        return {}


def handle(req: func.HttpRequest, name: str, action: Action) -> func.HttpResponse:
    """Run `action(correlation_id)` and answer: its response, or the problem it raised.

    `name` is the upstream API (file_alerts / create_alert): every answer carries its RateLimit-Policy.
    """
    correlation_id = correlation_id_for(req.headers)
    base_headers = _policy_headers(name)
    try:
        _require_entra_principal(req)
        result = action(correlation_id)
    except ProblemError as problem:
        logger.info("%s -> %d %s [correlation %s]", name, problem.status, problem.kind, correlation_id)
        problem.headers = {**base_headers, **problem.headers}
        return _problem_response(problem, correlation_id)
    except RateLimitStorageError as error:
        logger.error("%s: rate-limit storage unavailable: %s [correlation %s]", name, error, correlation_id)
        return _problem_response(ProblemError(
            503, "Rate-limit storage unavailable",
            "The gateway cannot reach the table that holds the shared Defender rate limit, so it does not "
            "call Defender (it never admits blindly). Retry shortly.", "rate-limit-storage-unavailable",
            headers={**base_headers, "Retry-After": "5"}), correlation_id)
    except ConfigurationError as error:
        logger.error("%s: configuration error: %s [correlation %s]", name, error, correlation_id)
        return _problem_response(ProblemError(500, "Gateway misconfigured", str(error), "configuration-error",
                                              headers=base_headers), correlation_id)
    except Exception:
        logger.exception("%s: unexpected failure [correlation %s]", name, correlation_id)
        return _problem_response(ProblemError(500, "Internal error",
                                              "The gateway failed unexpectedly; the correlation id finds the "
                                              "details in its logs.", "internal-error", headers=base_headers),
                                 correlation_id)
    logger.info("%s -> %d [correlation %s]", name, result.status, correlation_id)
    headers = {**base_headers, **result.headers, CORRELATION_HEADER: correlation_id, "Cache-Control": "no-store"}
    return func.HttpResponse(result.body, status_code=result.status, headers=headers, mimetype="application/json")
