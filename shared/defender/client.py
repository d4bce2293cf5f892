"""The Defender for Endpoint client: a token from the managed identity, and one request per call.

Advanced hunting (Api.HUNTING) goes to Microsoft Graph instead (Service.GRAPH): another base URL (GRAPH_BASE_URL),
another judged target and a token for the cloud's Graph scope; everything else is the same path.

`send` makes exactly one HTTP request (no transport-level retries) and returns a typed outcome
(shared.defender.outcomes); retries, waiting and the caller's answer are decided above it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import NoReturn

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ServiceRequestError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError

from shared.configuration import ConfigurationError
from shared.defender.credentials import IdentityFailure, IdentityUnavailableError
from shared.defender.facts import (
    API_FACTS,
    CREATE_ALERT_PATH,
    GRAPH_HUNTING_PATH,
    Api,
    Service,
    file_alerts_path,
    file_info_path,
)
from shared.defender.outbound import prepared_target
from shared.defender.outcomes import Outcome, Reach, Unavailable, classify
from shared.defender.settings import DefenderSettings, Upstream
from shared.defender.tenants import CONSENT_ERRORS, Tenant, TenantCredentials

logger = logging.getLogger("mde_alert_gateway.defender")

USER_AGENT = "mde-alert-gateway/0.1"


@dataclass(frozen=True)
class AccessToken:
    """A bearer token for Defender (or Graph); never logged, never returned to callers."""

    value: str


class IdentityError(Exception):
    """The managed identity gave no token for `scope`; `reason` says what failed (never a token or a secret), `kind`
    how (None: not the identity's doing, e.g. a tenant MDE_TENANTS does not list). `tenant`: the customer tenant asked
    for (None: the home tenant); `consent_url`: set when that tenant has not consented to the gateway's app (its
    administrator must); `retry_after`: seconds until the identity is asked again (DefenderClient's backoff)."""

    def __init__(self, scope: str, reason: str, *, tenant: Tenant | None = None, consent_url: str | None = None,
                 kind: IdentityFailure | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"no token for {scope}: {reason}")
        self.scope = scope
        self.reason = reason
        self.tenant = tenant
        self.consent_url = consent_url
        self.kind = kind
        self.retry_after = retry_after

    def waiting(self, seconds: float) -> IdentityError:
        """The same failure, answered again from memory `seconds` before the identity is asked again."""
        return IdentityError(self.scope, self.reason, tenant=self.tenant, consent_url=self.consent_url,
                             kind=self.kind, retry_after=seconds)


@dataclass(frozen=True)
class DefenderRequest:
    """One call to a Defender API (or Graph's hunting): which one, its path and its JSON body."""

    api: Api
    path: str
    body: Mapping[str, str] | None = None
    #: The customer tenant it is for (its id; None: the home tenant).
    tenant: str | None = None

    def for_tenant(self, tenant: str | None) -> DefenderRequest:
        return replace(self, tenant=tenant)

    @property
    def method(self) -> str:
        return API_FACTS[self.api].method

    @property
    def service(self) -> Service:
        """Who serves it: Defender, or Microsoft Graph (hunting): its host and token scope."""
        return API_FACTS[self.api].service

    @property
    def file_hash(self) -> str:
        """The file's hash in the path of a file-alerts or file-info request (`/api/files/{hash}...`)."""
        if self.api not in (Api.FILE_ALERTS, Api.FILE_INFO):
            raise ValueError(f"a {self.api} request names no file")
        return self.path.split("/")[3]

    @classmethod
    def file_alerts(cls, sha1: str) -> DefenderRequest:
        return cls(Api.FILE_ALERTS, file_alerts_path(sha1))

    @classmethod
    def create_alert(cls, body: Mapping[str, str]) -> DefenderRequest:
        return cls(Api.CREATE_ALERT, CREATE_ALERT_PATH, body)

    @classmethod
    def file_info(cls, sha256: str) -> DefenderRequest:
        """Get file information for a SHA-256: the file entity names its SHA-1 (404 for a file Defender lacks)."""
        return cls(Api.FILE_INFO, file_info_path(sha256))

    @classmethod
    def hunting(cls, query: str, timespan: str | None = None) -> DefenderRequest:
        """Graph's runHuntingQuery: `{"Query": ..., "Timespan"?: ...}` (validated before: shared.validation)."""
        body = {"Query": query} if timespan is None else {"Query": query, "Timespan": timespan}
        return cls(Api.HUNTING, GRAPH_HUNTING_PATH, body)

    @property
    def query(self) -> str:
        """The KQL of a hunting request."""
        if self.api is not Api.HUNTING or self.body is None:
            raise ValueError(f"a {self.api} request holds no query")
        return self.body["Query"]

    @property
    def timespan(self) -> str | None:
        """The Timespan of a hunting request (None: Graph's default)."""
        if self.api is not Api.HUNTING or self.body is None:
            raise ValueError(f"a {self.api} request holds no query")
        return self.body.get("Timespan")


#: After the identity gave no token (the home identity, or a customer tenant's exchange): seconds until it is asked
#: again, doubling with each failure in a row up to the last; meanwhile the failure is answered from memory (with
#: Retry-After), so a broken identity endpoint is neither hammered by every call nor remembered for ever.
IDENTITY_BACKOFF_SECONDS = (2.0, 60.0)


@dataclass(frozen=True)
class _Failure:
    error: IdentityError
    #: Failures in a row, and when (monotonic seconds) the identity is asked again.
    streak: int
    until: float


class DefenderClient:
    """One per worker process: one credential (token cache) and one pooled HTTP session."""

    def __init__(self, settings: DefenderSettings, credential: TokenCredential,
                 session: requests.Session | None = None, *, tenants: TenantCredentials | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._credential = credential
        self._session = session or self._new_session()
        self._tenants = tenants or (TenantCredentials(settings.multi_tenant, credential)
                                    if settings.multi_tenant else None)
        #: The identity's last failure per (tenant ("": the home tenant), scope), answered from here until its
        #: backoff ends: Graph's scope failing never answers a Defender call from memory, nor the other way round.
        self._failures: dict[tuple[str, str], _Failure] = {}
        self._monotonic = monotonic

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc from the environment may redirect the token
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=32)  # one request per send
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def token(self, tenant: str | None = None, service: Service = Service.DEFENDER) -> AccessToken:
        """A token for the configured cloud's scope of `service` (Defender's, or Graph's for hunting) in the home
        tenant, or in customer tenant `tenant` (an id of MDE_TENANTS) through the federated exchange; cached by
        azure-identity until near expiry.

        Raises IdentityError when the identity refuses or cannot be reached, or the tenant has not consented. A failure
        is answered from memory until its backoff (IDENTITY_BACKOFF_SECONDS) ends, then the identity is asked again;
        failures are remembered per tenant and scope.
        """
        scope = self.settings.upstream(service).scope
        multi = self.settings.multi_tenant
        customer = multi.find(tenant) if tenant is not None and multi is not None else None
        if tenant is not None and (customer is None or self._tenants is None):
            raise IdentityError(scope, f"tenant {tenant} is not one of MDE_TENANTS")
        key = (customer.id if customer else "", scope)
        failed = self._failures.get(key)
        now = self._monotonic()
        if failed is not None and now < failed.until:
            raise failed.error.waiting(failed.until - now)
        try:
            credential = self._tenants.credential(customer) if customer and self._tenants else self._credential
            token = AccessToken(credential.get_token(scope).token)
        except AzureError as error:
            streak = failed.streak + 1 if failed else 1
            first, longest = IDENTITY_BACKOFF_SECONDS
            backoff = min(longest, first * 2 ** (streak - 1))
            failure = self._identity_error(scope, error, customer).waiting(backoff)
            self._failures[key] = _Failure(failure, streak, self._monotonic() + backoff)
            logger.warning("identity: no token for %s%s (%s, %d in a row): %s; asked again in %.0f s", scope,
                           f" in tenant {customer.id}" if customer else "", failure.kind, streak, failure.reason,
                           backoff)
            raise failure from None
        self._failures.pop(key, None)
        return token

    def _identity_error(self, scope: str, error: AzureError, customer: Tenant | None) -> IdentityError:
        multi = self.settings.multi_tenant
        if isinstance(error, IdentityUnavailableError):  # the home identity (or the assertion of an exchange)
            reason, kind = str(error.message), error.kind
        else:  # a customer tenant's token endpoint: azure-identity's first line (an AADSTS code), never a token
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            kind = IdentityFailure.UNREACHABLE if isinstance(error, ServiceRequestError) else IdentityFailure.REFUSED
        if customer is None or multi is None:
            return IdentityError(scope, reason, kind=kind)
        consent = any(code in str(error) for code in CONSENT_ERRORS)
        return IdentityError(scope, reason, tenant=customer, kind=kind,
                             consent_url=multi.consent_url(customer, scope) if consent else None)

    def send(self, request: DefenderRequest, token: AccessToken, *, correlation_id: str,
             time_left: float | None = None) -> Outcome:
        """Make the one HTTP request for `request`, within `time_left` seconds if given, and classify it."""
        settings = self.settings
        upstream = settings.upstream(request.service)
        connect, read = settings.connect_timeout, settings.read_timeout_of(request.api)
        if time_left is not None:
            connect, read = min(connect, time_left), min(read, time_left)
        headers = {"Authorization": f"Bearer {token.value}", "client-request-id": correlation_id}
        prepared = self._prepare(requests.Request(request.method, upstream.base_url + request.path,
                                                  json=request.body, headers=headers), upstream)
        started = time.monotonic()
        try:
            response = self._session.send(prepared, timeout=(connect, read), allow_redirects=False)
        except requests.RequestException as error:
            outcome = _transport_outcome(error)
            logger.warning("%s %s %s failed after %.2f s: %s [correlation %s]", request.service.display_name,
                           request.method, request.path, time.monotonic() - started, outcome.cause, correlation_id)
            return outcome
        logger.info("%s %s %s -> %d in %.3f s [correlation %s]", request.service.display_name, request.method,
                    request.path, response.status_code, time.monotonic() - started, correlation_id)
        return classify(request.api, response.status_code, response.headers, response.content)

    def _prepare(self, request: requests.Request, upstream: Upstream) -> requests.PreparedRequest:
        """The request as it will go out, refused unless it connects to the target the allowlist judged.

        Second line of defence behind the start-up check: whatever reaches here, the token goes nowhere else.
        """
        try:
            prepared = self._session.prepare_request(request)
            actual = prepared_target(prepared)
        except ValueError as error:  # requests' InvalidURL and MissingSchema are ValueErrors too
            self._refuse(f"nowhere (the URL {error})", upstream)
        if actual != upstream.target:
            self._refuse(str(actual), upstream)
        return prepared

    @staticmethod
    def _refuse(actual: str, upstream: Upstream) -> NoReturn:
        # Only the base URL and the targets are named: never the headers, which carry the token.
        message = (f"The call to {upstream.service.display_name} would connect to {actual}, not to the configured "
                   f"{upstream.target} (base URL {upstream.base_url!r}); it was not sent. Check {upstream.setting}.")
        logger.error("%s", message)
        raise ConfigurationError(message, setting=upstream.setting)


def _transport_outcome(error: requests.RequestException) -> Unavailable:
    """A request that got no answer: did it surely not leave (no connection), or may it have reached Defender?"""
    cause = _root_cause(error)
    name = type(cause).__name__
    if isinstance(error, requests.ConnectTimeout):
        return Unavailable(Reach.NOT_SENT, timed_out=True, cause=name)
    if isinstance(cause, NewConnectionError):  # refused, unresolvable, unreachable: no connection was made
        return Unavailable(Reach.NOT_SENT, cause=name)
    return Unavailable(Reach.MAYBE, timed_out=isinstance(error, requests.Timeout), cause=name)


def _root_cause(error: BaseException) -> BaseException:
    seen: BaseException = error
    while True:
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        if isinstance(seen, MaxRetryError) and seen.reason is not None:
            inner = seen.reason
        if inner is None:
            return seen
        seen = inner
