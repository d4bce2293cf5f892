"""With Entra ID in front (GATEWAY_AUTH=entra), the caller cannot be forged: the gateway serves only while the
platform's authentication is on, validates the bearer token itself (the local token endpoint's published keys,
through PyJWT's PyJWKClient over TLS), requires the app role of each call, checks the allowed callers again, and
shows an operation only to the principal it was stored for.

The local host plays App Service authentication when WEBSITE_AUTH_ENABLED=True (localdev.functions_host,
PlatformAuthentication): a bearer token of GATEWAY_TOKEN_ISSUER (the local token endpoint), for the local audience,
becomes the X-MS-CLIENT-PRINCIPAL headers, and whatever such headers a caller sends are dropped, as the platform
does.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from localdev.azurite import Azurite
from localdev.functions_host import DEFAULT_LOCAL_AUDIENCE, encode_principal
from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import Services
from localdev.tokens import issue_token
from shared.http.settings import Role
from tests.support.inputs import VALID
from tests.support.servers import (
    FUNCTION_KEY,
    GatewayClient,
    HostFactory,
    IdentityAdmin,
    RequestQueue,
    SimulatorAdmin,
    assert_problem,
    entra_bearer,
)

ALICE = "5f9a1c2e-0000-4000-8000-0000000a11ce"
BOB = "5f9a1c2e-0000-4000-8000-000000000b0b"
PLAYBOOK_APP = "0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"
OTHER_APP = "6d4c3a9e-0f7b-4c43-8a4e-2b1f7b8f0e11"
#: What a playbook's managed identity is assigned: look up and create alerts, read its operations.
PLAYBOOK_ROLES = (Role.ALERTS_READ.value, Role.ALERTS_CREATE.value, Role.OPERATIONS_READ.value)
_services: list[Services] = []


@pytest.fixture(scope="module", autouse=True)
def _token_issuer(services: Services) -> None:
    _services[:] = [services]


def bearer(object_id: str, app_id: str = PLAYBOOK_APP, audience: str = DEFAULT_LOCAL_AUDIENCE,
           roles: tuple[str, ...] = PLAYBOOK_ROLES) -> dict[str, str]:
    """A caller's token from the local token endpoint, the issuer the test hosts trust."""
    return entra_bearer(_services[0], object_id, app_id, roles, audience=audience)


def forged(object_id: str) -> dict[str, str]:
    """What a caller could send itself if nothing stood in front: the platform's headers, made up."""
    claims = {"http://schemas.microsoft.com/identity/claims/objectidentifier": object_id, "appid": PLAYBOOK_APP}
    return {"X-MS-CLIENT-PRINCIPAL-ID": object_id, "X-MS-CLIENT-PRINCIPAL": encode_principal(claims)}


def lookup(gateway: GatewayClient, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{gateway.url}/api/files/{SEED_FILE_SHA1}/alerts", headers=headers, timeout=60)


@pytest.fixture(scope="module")
def entra_gateway(host_factory: HostFactory) -> GatewayClient:
    return host_factory(GATEWAY_AUTH="entra", WEBSITE_AUTH_ENABLED="True",
                        GATEWAY_ALLOWED_APPLICATIONS=PLAYBOOK_APP)


def test_without_the_platforms_authentication_entra_mode_serves_nothing(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """Authentication off (a portal toggle, a redeploy without it): made-up principal headers get nothing."""
    gateway = host_factory(GATEWAY_AUTH="entra")
    for answer in (lookup(gateway, forged(ALICE)),
                   requests.post(f"{gateway.url}/api/alerts/CreateAlertByReference", json=VALID,
                                 headers=forged(ALICE), timeout=60),
                   requests.get(f"{gateway.url}/api/operations/{uuid.uuid4().hex}", headers=forged(ALICE),
                                timeout=60)):
        problem = assert_problem(answer, 503)
        assert problem["type"].endswith(":gateway-misconfigured")
        assert "settings" not in problem  # no key checked: which settings are wrong is for the key holder
    health = assert_problem(requests.get(f"{gateway.url}/api/health", headers={"x-functions-key": FUNCTION_KEY},
                                         timeout=60), 503)
    assert [entry["setting"] for entry in health["settings"]] == ["WEBSITE_AUTH_ENABLED"]
    assert sim.calls() == []


def test_forged_principal_headers_are_dropped_and_a_token_is_needed(
        entra_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    assert lookup(entra_gateway, forged(ALICE)).status_code == 401  # the platform: no token
    wrong_audience = bearer(ALICE, audience="api://someone-else")
    assert lookup(entra_gateway, wrong_audience).status_code == 401
    # Signed with a key the issuer does not publish (the local identity endpoint's HS256 key).
    unpublished = {"Authorization": "Bearer " + issue_token(DEFAULT_LOCAL_AUDIENCE, app_id=PLAYBOOK_APP,
                                                            object_id=ALICE, roles=PLAYBOOK_ROLES)[0]}
    assert lookup(entra_gateway, unpublished).status_code == 401
    assert sim.calls() == []
    assert lookup(entra_gateway, {**bearer(ALICE), **forged(BOB)}).status_code == 200  # Alice, whatever she adds


def test_a_caller_needs_the_app_role_of_the_call(
        entra_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """Empty allow-lists (here: principals) do not mean everyone: a token for the audience without the role is 403."""
    for roles in ((), (Role.ALERTS_CREATE.value, Role.OPERATIONS_READ.value)):
        problem = assert_problem(lookup(entra_gateway, bearer(ALICE, roles=roles)), 403)
        assert problem["type"].endswith(":caller-not-allowed") and Role.ALERTS_READ.value in problem["detail"]
    created = requests.post(f"{entra_gateway.url}/api/alerts/CreateAlertByReference", json=VALID, timeout=60,
                            headers=bearer(ALICE, roles=(Role.ALERTS_READ.value,)))
    assert Role.ALERTS_CREATE.value in assert_problem(created, 403)["detail"]
    assert sim.calls() == []
    health = requests.get(f"{entra_gateway.url}/api/health", timeout=60,
                          headers={**bearer(ALICE, roles=()), "x-functions-key": entra_gateway.key})
    assert_problem(health, 403)  # health runs the caller check too
    healthy = requests.get(f"{entra_gateway.url}/api/health", timeout=60,
                           headers={**bearer(ALICE), "x-functions-key": entra_gateway.key})
    assert healthy.status_code == 200, healthy.text


def test_the_gateway_validates_the_token_itself_when_the_platform_lets_one_through(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """The platform accepts an audience the gateway does not (a portal change): the gateway still refuses it."""
    gateway = host_factory(GATEWAY_AUTH="entra", WEBSITE_AUTH_ENABLED="True", LOCAL_AUTH_AUDIENCE="api://widened")
    problem = assert_problem(lookup(gateway, bearer(ALICE, audience="api://widened")), 401)
    assert "GATEWAY_TOKEN_AUDIENCES" in problem["detail"]
    assert sim.calls() == []


def test_an_application_the_gateway_does_not_allow_is_403_even_when_the_platform_lets_it_in(
        entra_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    answer = lookup(entra_gateway, bearer(ALICE, app_id=OTHER_APP))  # holding the role: the list narrows further
    problem = assert_problem(answer, 403)
    assert problem["type"].endswith(":caller-not-allowed") and "GATEWAY_ALLOWED_APPLICATIONS" in problem["detail"]
    assert sim.calls() == []


def test_an_operation_is_read_only_by_the_principal_that_asked(
        entra_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    accepted = requests.post(f"{entra_gateway.url}/api/alerts/CreateAlertByReference", json=VALID,
                             headers={**bearer(ALICE), "Prefer": "respond-async"}, timeout=60)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    for stranger in (bearer(BOB), {**bearer(BOB), **forged(ALICE)}):
        assert_problem(requests.get(location, headers=stranger, timeout=60), 404)
    assert requests.get(location, headers=forged(ALICE), timeout=60).status_code == 401
    own = poll(location, bearer(ALICE))
    assert own.status_code == 200 and own.json()["title"] == VALID["title"]


def test_a_queued_operation_is_read_only_by_the_caller_its_message_names(
        entra_gateway: GatewayClient, azurite: Azurite, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    queue = RequestQueue(azurite.connection_string, entra_gateway_queue(entra_gateway))
    named, unnamed = uuid.uuid4().hex, uuid.uuid4().hex
    queue.put({"version": 1, "id": named, "operation": "GetFileRelatedAlerts", "fileHash": SEED_FILE_SHA1,
               "caller": ALICE.upper()})
    queue.put({"version": 1, "id": unnamed, "operation": "GetFileRelatedAlerts", "fileHash": SEED_FILE_SHA1})
    sim.wait_for_calls(2, "file_alerts", timeout=60)

    def read(operation_id: str, who: str) -> requests.Response:
        return requests.get(f"{entra_gateway.url}/api/operations/{operation_id}", headers=bearer(who), timeout=60)

    assert poll(f"{entra_gateway.url}/api/operations/{named}", bearer(ALICE), queued=True).status_code == 200
    assert read(named, BOB).status_code == 404
    assert read(unnamed, ALICE).status_code == read(unnamed, BOB).status_code == 404


def poll(location: str, headers: dict[str, str], *, queued: bool = False, timeout: float = 60) -> requests.Response:
    """The operation's answer once it is no longer pending (404 too while a queued message is not taken yet)."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(location, headers=headers, timeout=60)
        if response.status_code != 202 and not (queued and response.status_code == 404):
            return response
        assert time.monotonic() < deadline, f"{location} still pending: {response.text}"
        time.sleep(0.2)


def entra_gateway_queue(gateway: GatewayClient) -> str:
    """The request queue the host was started with (its log names it)."""
    for line in gateway.host.log().splitlines():
        if "ProcessRequestMessage: queue " in line:
            return line.split("queue ", 1)[1].split()[0]
    raise AssertionError("the host named no request queue")
