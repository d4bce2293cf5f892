"""Calls to the Defender for Endpoint API: token, session, retries, and what each failure means."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ReadTimeoutError

from shared.outbound import prepared_target
from shared.problems import ProblemError
from shared.retry import DefenderRetry, RetryGate, ThrottleHook, retry_scope
from shared.settings import ConfigurationError, DefenderSettings
from shared.upstream import UpstreamAnswer, interpret

logger = logging.getLogger("mde_alert_gateway.defender")

USER_AGENT = "mde-alert-gateway/0.1"


@dataclass(frozen=True)
class AccessToken:
    """A bearer token for Defender; never logged, never returned to callers."""

    value: str


class DefenderClient:
    """One per worker process: one credential (token cache) and one pooled HTTP session."""

    def __init__(self, settings: DefenderSettings, credential: TokenCredential,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self._credential = credential
        self._session = session or self._new_session(settings)

    @staticmethod
    def _new_session(settings: DefenderSettings) -> requests.Session:
        retry = DefenderRetry(
            total=settings.max_retries,
            connect=settings.max_retries,
            read=settings.max_retries,
            status=settings.max_retries,
            other=0,
            redirect=0,
            backoff_factor=0.5,
            backoff_max=8,
            max_retry_after=settings.max_retry_after,
            attempt_seconds=settings.connect_timeout + settings.read_timeout,
        )
        session = requests.Session()
        session.trust_env = False  # no proxy or netrc from the environment may redirect the token
        session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=32)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def token(self) -> AccessToken:
        """A token for the configured cloud's scope (cached by azure-identity until near expiry)."""
        scope = self.settings.cloud.scope
        try:
            return AccessToken(self._credential.get_token(scope).token)
        except AzureError as error:
            # Refused (ClientAuthenticationError) or unreachable (ServiceRequestError ...): azure-identity's
            # messages name the failing credential and never contain a token.
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ProblemError(
                502, "Cannot authenticate to Defender",
                f"The gateway could not get a token for {scope} from its identity: {first_line}. "
                "Check that the function app has a managed identity (or AZURE_CLIENT_ID names its "
                "user-assigned identity).", "identity-unavailable") from None

    def get_file_alerts(self, sha1: str, token: AccessToken, *, correlation_id: str,
                        retry_gate: RetryGate | None = None,
                        on_throttle: ThrottleHook | None = None) -> UpstreamAnswer:
        return self._call("GET", f"/api/files/{sha1}/alerts", token, None, correlation_id, retry_gate, on_throttle,
                          operation="file_alerts")

    def create_alert(self, body: dict[str, str], token: AccessToken, *, correlation_id: str,
                     retry_gate: RetryGate | None = None,
                     on_throttle: ThrottleHook | None = None) -> UpstreamAnswer:
        return self._call("POST", "/api/alerts/CreateAlertByReference", token, body, correlation_id, retry_gate,
                          on_throttle, operation="create_alert")

    def _call(self, method: str, path: str, token: AccessToken, body: dict[str, Any] | None,
              correlation_id: str, retry_gate: RetryGate | None, on_throttle: ThrottleHook | None, *,
              operation: str) -> UpstreamAnswer:
        settings = self.settings
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {token.value}", "client-request-id": correlation_id}
        prepared = self._prepare(requests.Request(method, settings.base_url + path, json=body, headers=headers))
        try:
            with retry_scope(deadline=started + settings.total_timeout, gate=retry_gate, on_throttle=on_throttle):
                response = self._session.send(prepared, timeout=(settings.connect_timeout, settings.read_timeout),
                                              allow_redirects=False)
        except requests.RequestException as error:
            elapsed = time.monotonic() - started
            logger.warning("Defender %s %s failed after %.2f s: %s [correlation %s]", method, path, elapsed,
                           _describe(error), correlation_id)
            raise _transport_problem(method, error, elapsed) from None
        elapsed = time.monotonic() - started
        logger.info("Defender %s %s -> %d in %.3f s [correlation %s]", method, path, response.status_code, elapsed,
                    correlation_id)
        return interpret(operation, response.status_code, response.headers, response.content, settings)

    def _prepare(self, request: requests.Request) -> requests.PreparedRequest:
        """The request as it will go out, refused unless it connects to the target the allowlist judged.

        Second line of defence behind the start-up check: whatever reaches here, the token goes nowhere else.
        """
        try:
            prepared = self._session.prepare_request(request)
            actual = prepared_target(prepared)
        except ValueError as error:  # requests' InvalidURL and MissingSchema are ValueErrors too
            self._refuse(f"nowhere (the URL {error})")
        if actual != self.settings.target:
            self._refuse(str(actual))
        return prepared

    def _refuse(self, actual: str) -> NoReturn:
        # Only the base URL and the targets are named: never the headers, which carry the token.
        message = (f"The call to Defender would connect to {actual}, not to the configured {self.settings.target} "
                   f"(base URL {self.settings.base_url!r}); it was not sent. Check MDE_BASE_URL.")
        logger.error("%s", message)
        raise ConfigurationError(message)


def _describe(error: Exception) -> str:
    reason = _root_cause(error)
    return type(reason).__name__


def _root_cause(error: BaseException) -> BaseException:
    seen: BaseException = error
    while True:
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        if isinstance(seen, MaxRetryError) and seen.reason is not None:
            inner = seen.reason
        if inner is None:
            return seen
        seen = inner


def _transport_problem(method: str, error: requests.RequestException, elapsed: float) -> ProblemError:
    cause = _root_cause(error)
    if isinstance(error, requests.Timeout) or isinstance(cause, ReadTimeoutError | ConnectTimeoutError):
        detail = (f"Defender for Endpoint did not answer within the gateway's timeouts ({elapsed:.1f} s including "
                  "retries). Retry later.")
        if method == "POST" and isinstance(cause, ReadTimeoutError):
            detail += (" The request reached Defender, so the alert may exist already; a retry is safe because "
                       "Defender merges an alert with the same title into the open one on the same device.")
        return ProblemError(504, "Defender did not answer in time", detail, "upstream-timeout")
    return ProblemError(502, "Defender is unreachable",
                        f"The gateway could not complete the call to Defender for Endpoint "
                        f"({type(cause).__name__}). Retry later.", "upstream-unreachable")
