"""The edge while the app settings are wrong, or the gateway failed to start: every HTTP function answers 503
gateway-misconfigured.

The app still indexes its functions, so callers and monitors hear why instead of a host-wide 404. Which settings
are wrong, and why, is told only to a caller the Functions host already checked (a function key, on a route that
needs one): with function keys every route but the anonymous OpenAPI document, with Entra ID the function-key
routes alone (health and the operator's), since the gateway cannot check an Entra caller while its settings are
wrong. Anyone else hears only that the gateway is misconfigured. The reasons themselves never repeat a value that
may be a secret (shared.configuration.shown). After a failure other than a bad setting (no ConfigurationError), every
caller hears only that the gateway could not start: the error's own text may hold a secret.
"""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from shared.answers.correlation import correlation_id_for
from shared.answers.mapping import misconfigured_problem, problem_answer, start_failed_problem
from shared.configuration import ConfigurationError
from shared.defender.facts import Api
from shared.http.edge import HttpEdge, Parse, http_response
from shared.http.settings import AuthMode
from shared.validation import FileHash
from shared.validation.hunting import HuntingShape


class MisconfiguredEdge:
    """Every HTTP function's answer while the settings are wrong (`error`) or the start failed otherwise (None);
    `auth` is the authentication GATEWAY_AUTH asks for (shared.settings.requested_auth), which decides the routes
    whose callers the host checked."""

    def __init__(self, error: ConfigurationError | None, auth: AuthMode = AuthMode.FUNCTION_KEY) -> None:
        self.error = error
        self.auth = auth
        #: What a caller the host checked hears (the bad settings and why), and what anyone else hears.
        self.listed = misconfigured_problem(error, listed=True) if error is not None else start_failed_problem()
        self.unlisted = misconfigured_problem(error, listed=False) if error is not None else start_failed_problem()

    def respond(self, req: func.HttpRequest, api: Api, parse: Parse, tenant: str | None = None, *,
                context: func.Context | None = None) -> func.HttpResponse:
        return self._answer(req, keyed=self._keyed_by_default)

    def lookup_file_alerts(self, req: func.HttpRequest, parse_hash: Callable[[], FileHash],
                           tenant: str | None = None, *, context: func.Context | None = None) -> func.HttpResponse:
        return self._answer(req, keyed=self._keyed_by_default)

    def hunt(self, req: func.HttpRequest, shape: HuntingShape, tenant: str | None = None, *,
             context: func.Context | None = None) -> func.HttpResponse:
        return self._answer(req, keyed=self._keyed_by_default)

    def operation_status(self, req: func.HttpRequest, operation_id: str) -> func.HttpResponse:
        return self._answer(req, keyed=self._keyed_by_default)

    def health(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req, keyed=True)

    def openapi(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req, keyed=False)

    def operator_page(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req, keyed=True)

    def operator_state(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req, keyed=True)

    def operator_redrive(self, req: func.HttpRequest) -> func.HttpResponse:
        return self._answer(req, keyed=True)

    @property
    def _keyed_by_default(self) -> bool:
        """Whether the host checked a key on the routes that take the app's default level (the Defender operations,
        operations): with function keys it did; with Entra ID they are anonymous to the host."""
        return self.auth is AuthMode.FUNCTION_KEY

    def _answer(self, req: func.HttpRequest, *, keyed: bool) -> func.HttpResponse:
        problem = self.listed if keyed else self.unlisted
        return http_response(problem_answer(problem, correlation_id_for(req.headers)))


#: What the entry points call: the gateway's edge, or the one that says the settings are wrong.
Edge = HttpEdge | MisconfiguredEdge
