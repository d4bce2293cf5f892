"""The identity the gateway calls Defender with, and whose quota its token spends (the key of each tenant's budget)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ServiceRequestError
from azure.core.pipeline import PipelineResponse
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.defender.settings import DefenderSettings
from shared.defender.tenants import MultiTenant
from shared.identifiers import GUID


class IdentityFailure(StrEnum):
    """What went wrong when the identity gave no token."""

    #: No answer at all: the endpoint refused the connection, timed out, or its name did not resolve.
    UNREACHABLE = "unreachable"
    #: It answered no (HTTP 4xx): no identity assigned, not this client id, not for this resource.
    REFUSED = "refused"
    #: It answered, but with no token (HTTP 5xx, or a body that holds none).
    BAD_ANSWER = "bad-answer"
    #: No identity to ask (no managed identity endpoint here; no sign-in for DefaultAzureCredential).
    UNAVAILABLE = "unavailable"


class IdentityUnavailableError(AzureError):
    """The identity gave no token: `kind` says how, the message says what (never a token or a secret)."""

    def __init__(self, kind: IdentityFailure, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RenewingCredential:
    """The gateway's identity (one per worker process, its token cached inside), built anew after each failure.

    azure-identity's managed identity (MSAL underneath) keeps an identity endpoint's 429 or 5xx answer and replays it
    without asking for as long as its Retry-After says (5 s without one, up to an hour), and a replayed or any other
    failed answer reads "App Service managed identity configuration not found in environment" whatever happened. So a
    credential that failed is dropped: the next request (after DefenderClient's backoff) asks the endpoint with a
    fresh one. Its token cache goes with it, which loses nothing: a credential fails only when it has no usable token.

    The status of the identity endpoint's last answer on this thread is noted (a pipeline hook), so that a failure
    says whether the endpoint could not be reached, refused, or answered with no token.
    """

    def __init__(self, build: Callable[[Callable[[PipelineResponse[Any, Any]], None] | None], TokenCredential],
                 ) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._seen = threading.local()
        self.current = build(self._saw)

    def _saw(self, response: PipelineResponse[Any, Any]) -> None:
        self._seen.status = response.http_response.status_code

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        credential = self.current
        self._seen.status = None
        try:
            return credential.get_token(*scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs)
        except AzureError as error:
            with self._lock:
                if self.current is credential:  # one renewal for the threads that shared the failed one
                    self.current = self._build(self._saw)
            kind, message = identity_failure(error, getattr(self._seen, "status", None))
            raise IdentityUnavailableError(kind, message) from error


def identity_failure(error: AzureError, status: int | None) -> tuple[IdentityFailure, str]:
    """How the identity failed, by the status of the endpoint's last answer (None: none was seen) and the error."""
    if status is not None and 400 <= status < 500:
        return IdentityFailure.REFUSED, f"the identity endpoint refused to give a token (HTTP {status})"
    if status is not None and not 200 <= status < 300:
        return IdentityFailure.BAD_ANSWER, f"the identity endpoint answered HTTP {status} instead of a token"
    if status is not None:
        return IdentityFailure.BAD_ANSWER, "the identity endpoint's answer held no token"
    if isinstance(error, ServiceRequestError):
        return IdentityFailure.UNREACHABLE, f"the identity endpoint could not be reached ({_root_cause(error)})"
    # azure-identity's own words (its messages name the credential that failed, never a token): its first line.
    first = str(error.message or error).strip().splitlines()
    return IdentityFailure.UNAVAILABLE, f"no identity to ask ({first[0].strip() if first else type(error).__name__})"


def _root_cause(error: BaseException) -> str:
    """The innermost error's class name (ConnectionRefusedError, TimeoutError, NameResolutionError ...)."""
    seen: BaseException = error
    for _ in range(16):
        inner = getattr(seen, "inner_exception", None) or seen.__cause__ or seen.__context__
        if not isinstance(inner, BaseException):
            break
        seen = inner
    return type(seen).__name__


def build_credential(settings: DefenderSettings) -> TokenCredential:
    """One credential per worker process: azure-identity caches the token inside it (renewed after a failure)."""
    client_id = settings.managed_identity_client_id

    def build(hook: Callable[[PipelineResponse[Any, Any]], None] | None) -> TokenCredential:
        if settings.credential_kind == "default":  # a chain of developer sign-ins: no one endpoint to watch
            return DefaultAzureCredential(managed_identity_client_id=client_id)
        return ManagedIdentityCredential(client_id=client_id, raw_response_hook=hook)

    return RenewingCredential(build)


def token_claims(access_token: str) -> dict[str, Any]:
    """The payload of a JWT access token, not verified (Defender verifies it); {} when it is not readable."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def principal_of(access_token: str, tenant: str | None = None, multi_tenant: MultiTenant | None = None) -> str:
    """`<tenant id>|<application id>`: whose Defender quota a call spends (Defender counts its limits per tenant and
    application), and so the key of the rate-limit state, the shared answers and the lookups in flight.

    The tenant is the one the call was routed to. For customer tenant `tenant` (an id of `multi_tenant`) both parts
    come from configuration: the tenant and the multi-tenant app (the same key the token's own claims give, so state
    that an earlier version wrote keeps its meaning). For the home tenant (None) they are those of the gateway's own
    identity's token, which no customer tenant may be.

    ValueError (fail closed, never a bucket that tenants share): the token names no tenant and application (not a
    readable JWT), or not the tenant the call was routed to, or the home tenant's token names a customer tenant.
    """
    claims = token_claims(access_token)
    token_tenant = str(claims.get("tid") or "").lower()
    application = str(claims.get("appid") or claims.get("azp") or claims.get("oid") or "").lower()
    if not GUID.fullmatch(token_tenant) or not application:
        raise ValueError("the token names no tenant (tid) and application (appid): it is not a readable JWT, and the "
                         "gateway keys each tenant's budget and answers by them")
    if tenant is None:
        if multi_tenant is not None and multi_tenant.find(token_tenant) is not None:
            raise ValueError("the token of the gateway's own identity names a customer tenant (MDE_TENANTS)")
        return f"{token_tenant}|{application}"
    routed = multi_tenant.find(tenant) if multi_tenant is not None else None
    if routed is None or multi_tenant is None:
        raise ValueError(f"tenant {tenant} is not one of MDE_TENANTS")
    if token_tenant != routed.id:
        raise ValueError(f"the token for tenant {routed.id} names another tenant")
    return f"{routed.id}|{multi_tenant.client_id}"
