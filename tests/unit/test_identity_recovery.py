"""Identity failures that recover: a failed token is asked for again after a bounded backoff (answered from memory
meanwhile, with Retry-After), a failed credential is replaced (azure-identity would replay a cached failure), and the
answer says what failed, never a token. In process: scripted credentials and a hand-moved clock."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import CredentialUnavailableError

from shared.answers.mapping import identity_problem
from shared.defender.client import IDENTITY_BACKOFF_SECONDS, DefenderClient, IdentityError
from shared.defender.credentials import IdentityFailure, IdentityUnavailableError, RenewingCredential
from shared.settings import load_settings
from tests.support.rigs import UNIT_ENV
from tests.support.scripted import FakeMonotonic, StaticCredential

#: What azure-identity says whatever went wrong with the App Service identity endpoint (a replayed 500 included).
MISLEADING = "App Service managed identity configuration not found in environment. Token request error: (x) 500"


class Flaky:
    """A credential that fails while `failing`, and counts how often it was asked."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.failing = True
        self.asked = 0
        self.good = StaticCredential()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked += 1
        if self.failing:
            raise self.error
        return self.good.get_token(*scopes)


def _client(credential: object, clock: FakeMonotonic) -> DefenderClient:
    return DefenderClient(load_settings(UNIT_ENV).defender, credential, monotonic=clock)  # type: ignore[arg-type]


def test_a_failed_token_is_asked_for_again_after_a_bounded_backoff_and_recovers() -> None:
    clock = FakeMonotonic()
    flaky = Flaky(IdentityUnavailableError(IdentityFailure.UNREACHABLE, "the identity endpoint could not be reached "
                                                                        "(ConnectionRefusedError)"))
    client = _client(flaky, clock)
    first, longest = IDENTITY_BACKOFF_SECONDS
    with pytest.raises(IdentityError) as caught:
        client.token()
    assert (caught.value.kind, caught.value.retry_after, flaky.asked) == (IdentityFailure.UNREACHABLE, first, 1)
    clock.advance(first / 2)
    with pytest.raises(IdentityError) as caught:  # within the backoff: from memory, the endpoint is not asked
        client.token()
    assert (caught.value.retry_after, flaky.asked) == (first / 2, 1)
    waits = []
    for _ in range(8):  # failing on: the backoff doubles, and stops growing at its bound
        clock.advance(longest)
        with pytest.raises(IdentityError) as caught:
            client.token()
        waits.append(caught.value.retry_after)
    assert waits[0] == 2 * first and waits[-1] == longest and flaky.asked == 9
    flaky.failing = False
    with pytest.raises(IdentityError):
        client.token()  # still within the last backoff
    clock.advance(longest)
    assert client.token().value == flaky.good.token and flaky.asked == 10
    flaky.failing = True
    with pytest.raises(IdentityError) as caught:  # a success ended the streak: the next failure starts over
        client.token()
    assert caught.value.retry_after == first


class Built:
    """What RenewingCredential builds: the credentials it made, each failing (as `fail` says) or not."""

    def __init__(self, *fail: Exception | None, status: int | None = None) -> None:
        self.fail = list(fail)
        self.made: list[Flaky | StaticCredential] = []
        self.status = status

    def __call__(self, hook: Any) -> TokenCredential:
        error = self.fail.pop(0) if self.fail else None
        made: Flaky | StaticCredential = StaticCredential() if error is None else Flaky(error)
        if isinstance(made, Flaky) and self.status is not None:
            status, inner = self.status, made.get_token

            def answered(*scopes: str, **kwargs: Any) -> AccessToken:
                hook(type("Response", (), {"http_response": type("Http", (), {"status_code": status})})())
                return inner(*scopes, **kwargs)

            made.get_token = answered  # type: ignore[method-assign]
        self.made.append(made)
        return made


def test_a_failed_credential_is_replaced_so_no_cached_failure_is_replayed() -> None:
    built = Built(CredentialUnavailableError(MISLEADING), None, status=500)
    credential = RenewingCredential(built)
    with pytest.raises(IdentityUnavailableError) as caught:
        credential.get_token("scope/.default")
    assert caught.value.kind is IdentityFailure.BAD_ANSWER
    assert str(caught.value.message) == "the identity endpoint answered HTTP 500 instead of a token"
    assert len(built.made) == 2 and credential.current is built.made[1]  # the failed one is gone
    assert credential.get_token("scope/.default").token == StaticCredential().token


@pytest.mark.parametrize(("error", "status", "kind", "said"), [
    (ServiceRequestError("Connection refused", error=ConnectionRefusedError(111, "refused")), None,
     IdentityFailure.UNREACHABLE, "could not be reached (ConnectionRefusedError)"),
    (CredentialUnavailableError(MISLEADING), 400, IdentityFailure.REFUSED, "refused to give a token (HTTP 400)"),
    (CredentialUnavailableError(MISLEADING), 503, IdentityFailure.BAD_ANSWER, "answered HTTP 503 instead of a token"),
    (ClientAuthenticationError("bad json"), 200, IdentityFailure.BAD_ANSWER, "answer held no token"),
    (CredentialUnavailableError("No managed identity endpoint found. \nmore"), None, IdentityFailure.UNAVAILABLE,
     "no identity to ask (No managed identity endpoint found.)"),
])
def test_the_answer_says_what_failed_with_retry_after(error: Exception, status: int | None, kind: IdentityFailure,
                                                      said: str) -> None:
    client = _client(RenewingCredential(Built(error, status=status)), FakeMonotonic())
    with pytest.raises(IdentityError) as caught:
        client.token()
    problem = identity_problem(caught.value)
    assert caught.value.kind is kind and said in problem.detail
    assert "configuration not found" not in problem.detail and "\n" not in problem.detail
    assert (problem.status, problem.kind, problem.retry_after) == (502, "identity-unavailable",
                                                                   IDENTITY_BACKOFF_SECONDS[0])
