"""Many tenants over the local stack, through the real azure-identity exchange: the host's user-assigned identity
(the local identity endpoint) asserts, the local Entra ID token endpoint (TLS, a test CA) exchanges the assertion
for a customer tenant's token, and the simulator keeps each tenant's data and budgets apart."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from localdev.stack import (
    LOCAL_CUSTOMER_TENANT,
    LOCAL_MULTITENANT_APP_ID,
    LOCAL_UAMI_CLIENT_ID,
    Services,
    many_tenants,
)
from localdev.tokens import ALL_ROLES
from shared.http.settings import Role
from tests.support.servers import (
    GatewayClient,
    HostFactory,
    IdentityAdmin,
    RequestQueue,
    SimulatorAdmin,
    assert_problem,
    entra_bearer,
)

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
NOT_CONSENTED = "f0f0f0f0-2222-4333-8444-555566667777"


def tenant_ids() -> tuple[str, str]:
    """Two fresh customer tenants, consented with every Defender role (fresh: their budgets start empty)."""
    return str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def consent(services: Services) -> Callable[..., None]:
    def grant(*tenants: str) -> None:
        with services.tokens.app.lock:
            for tenant in tenants:
                services.tokens.app.tenants[tenant] = ALL_ROLES
    return grant


def tenant_host(host_factory: HostFactory, *tenants: str, **settings: str) -> GatewayClient:
    listed = ",".join([f"contoso={LOCAL_CUSTOMER_TENANT}", f"fabrikam={NOT_CONSENTED}", *tenants])
    return host_factory(**{**many_tenants(), "MDE_TENANTS": listed, **settings})


def alerts_of(host: GatewayClient, tenant: str, sha1: str = SHA1, **kwargs: Any) -> requests.Response:
    headers = {"x-functions-key": host.key, **kwargs.pop("headers", {})}
    return requests.get(f"{host.url}/api/tenants/{tenant}/files/{sha1}/alerts", headers=headers, timeout=60, **kwargs)


def test_each_tenant_is_called_with_its_own_token_and_sees_its_own_data(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin, services: Services,
        consent: Callable[..., None]) -> None:
    other, _ = tenant_ids()
    consent(other)
    host = tenant_host(host_factory, other, FILE_ALERTS_CACHE_SECONDS="0")
    mine = sim.add_alert(tenant=LOCAL_CUSTOMER_TENANT, sha1=SHA1, title="contoso's alert")
    answer = alerts_of(host, "contoso")
    assert answer.status_code == 200 and [alert["id"] for alert in answer.json()["value"]] == [mine["id"]]
    assert alerts_of(host, other).json()["value"] == []  # another tenant's data is its own
    home = host.get_alerts(SHA1)
    assert home.status_code == 200 and mine["id"] not in {alert["id"] for alert in home.json()["value"]}
    callers = [call["caller"] for call in sim.calls("file_alerts")]
    assert callers[:2] == [f"{LOCAL_CUSTOMER_TENANT}|{LOCAL_MULTITENANT_APP_ID}", f"{other}|{LOCAL_MULTITENANT_APP_ID}"]
    assert callers[2].endswith(f"|{LOCAL_UAMI_CLIENT_ID}") and not callers[2].startswith(LOCAL_CUSTOMER_TENANT)
    # The exchange went through the real azure-identity path: the identity's assertion for the exchange audience.
    assert {"resource": "api://AzureADTokenExchange", "client_id": LOCAL_UAMI_CLIENT_ID} in identity.issued()
    health = host.get("/api/health").json()
    assert {tenant["name"]: tenant["identity"] for tenant in health["tenants"]} == {
        "contoso": True, "fabrikam": False, other: True}


def test_an_unlisted_tenant_is_404_and_spends_nothing(host_factory: HostFactory, sim: SimulatorAdmin,
                                                      identity: IdentityAdmin) -> None:
    host = tenant_host(host_factory)
    problem = assert_problem(alerts_of(host, "nobody"), 404, "route.tenant")
    assert problem["type"].endswith(":tenant-not-found")
    created = requests.post(f"{host.url}/api/tenants/{uuid.uuid4()}/alerts/CreateAlertByReference", json={},
                            headers={"x-functions-key": host.key}, timeout=60)
    assert created.status_code == 404
    assert sim.calls() == []


def test_a_tenant_that_has_not_consented_is_502_naming_it_and_its_consent_link(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    host = tenant_host(host_factory)
    problem = assert_problem(alerts_of(host, "fabrikam"), 502)
    assert problem["type"].endswith(":tenant-not-consented") and problem["tenant"] == NOT_CONSENTED
    assert problem["consentUrl"].endswith(f"/{NOT_CONSENTED}/v2.0/adminconsent?client_id={LOCAL_MULTITENANT_APP_ID}"
                                          "&scope=https://api.securitycenter.microsoft.com/.default")
    assert "fabrikam" in problem["detail"] and "AADSTS7000229" in problem["detail"]
    assert sim.calls() == []


def test_a_queued_request_names_its_tenant_and_an_unknown_one_is_refused(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin, services: Services) -> None:
    name = "mt" + uuid.uuid4().hex[:20]
    host = tenant_host(host_factory, REQUESTS_QUEUE=name)
    queue = RequestQueue(services.azurite.connection_string, name)
    queue.put({"version": 1, "id": "tenant-q-1", "operation": "GetFileRelatedAlerts", "fileHash": SHA1,
               "tenantId": "contoso"})
    queue.put({"version": 1, "id": "tenant-q-2", "operation": "GetFileRelatedAlerts", "fileHash": SHA1,
               "tenantId": "nobody"})
    assert host.wait_for_operation("/api/operations/tenant-q-1", queued=True).status_code == 200
    refused = host.wait_for_operation("/api/operations/tenant-q-2", queued=True)
    assert_problem(refused, 400, "tenantId")
    assert [call["caller"].split("|")[0] for call in sim.calls()] == [LOCAL_CUSTOMER_TENANT]


def test_two_tenants_stormed_at_once_never_hold_up_a_third(host_factory: HostFactory, sim: SimulatorAdmin,
                                                             identity: IdentityAdmin,
                                                             consent: Callable[..., None]) -> None:
    """Defender counts per tenant and application, so does the gateway: tenants A and B spend their own budgets and
    wait, tenant C's call goes through at once, and Defender throttles none of them."""
    stormy, other_stormy = tenant_ids()
    quiet, _ = tenant_ids()
    consent(stormy, other_stormy, quiet)
    sim.reset(limits={"file_alerts": [[5, 4]]})
    host = tenant_host(host_factory, stormy, other_stormy, quiet, RATE_LIMIT_FILE_ALERTS="5/4",
                       FILE_ALERTS_CACHE_SECONDS="0", RATE_LIMIT_MARGIN_SECONDS="1", RATE_LIMIT_NEW_STATE_SHARE="1")
    files = [uuid.uuid4().hex.ljust(40, "0") for _ in range(12)]  # twelve files: no lookup joins another
    accepted = [alerts_of(host, tenant, sha1, headers={"Prefer": "respond-async"})
                for sha1 in files for tenant in (stormy, other_stormy)]
    assert all(answer.status_code == 202 for answer in accepted)
    sim.wait_for_calls(10, "file_alerts")
    assert alerts_of(host, quiet).status_code == 200  # not 429: the storms spent their own tenants' budgets
    for answer in accepted:
        assert host.wait_for_operation(answer.headers["Location"], timeout=180).status_code == 200
    calls = sim.calls("file_alerts")
    assert [call for call in calls if call["status"] == 429] == []  # 0 upstream 429, for every tenant
    assert [sum(call["caller"].startswith(tenant) for call in calls) for tenant in (stormy, other_stormy, quiet)] \
        == [12, 12, 1]
    # C was not queued behind them: its call reached Defender while both storms still had calls to make.
    position = {tenant: [i for i, call in enumerate(calls) if call["caller"].startswith(tenant)]
                for tenant in (stormy, other_stormy, quiet)}
    assert position[quiet][0] < min(position[stormy][-1], position[other_stormy][-1])


def test_with_entra_id_only_the_mapped_callers_act_for_a_tenant(host_factory: HostFactory, sim: SimulatorAdmin,
                                                                identity: IdentityAdmin, services: Services) -> None:
    alice, bob, app = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    host = tenant_host(host_factory, GATEWAY_AUTH="entra", WEBSITE_AUTH_ENABLED="True",
                       GATEWAY_ALLOWED_APPLICATIONS=app, GATEWAY_TENANT_CALLERS=f"{alice}=contoso")

    def bearer(who: str) -> dict[str, str]:
        return entra_bearer(services, who, app, (Role.ALERTS_READ.value,))

    assert alerts_of(host, "contoso", headers=bearer(alice)).status_code == 200
    problem = assert_problem(alerts_of(host, "contoso", headers=bearer(bob)), 403)
    assert problem["type"].endswith(":tenant-not-allowed")
    assert host.get_alerts(SHA1, headers=bearer(bob)).status_code == 200  # unlisted: the home tenant, as before
    confined = assert_problem(host.get_alerts(SHA1, headers=bearer(alice)), 403)  # listed for contoso alone
    assert confined["type"].endswith(":tenant-not-allowed")
    assert [call["caller"].split("|")[0] for call in sim.calls()].count(LOCAL_CUSTOMER_TENANT) == 1


def test_tokens_that_are_not_jwts_fail_closed_and_no_tenant_gets_another_tenants_answer(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin) -> None:
    """The identity endpoint hands out opaque tokens: no tenant's budget or shared answer is keyed by a fallback
    that every tenant would share; nothing is sent, and no answer carries a token."""
    identity.configure(opaque=True)
    host = tenant_host(host_factory, FILE_ALERTS_CACHE_SECONDS="60", ANSWER_CACHE_TABLE="a" + uuid.uuid4().hex[:20])
    home, contoso = host.get_alerts(SHA1), alerts_of(host, "contoso")
    problem = assert_problem(home, 502)
    assert problem["type"].endswith(":identity-unavailable") and "readable" in problem["detail"]
    assert_problem(contoso, 502)  # the exchange refuses an opaque assertion too
    assert "opaque-" not in home.text + contoso.text
    assert sim.calls() == []


def test_with_entra_id_a_caller_no_longer_allowed_for_a_tenant_reads_and_queues_nothing_there(
        host_factory: HostFactory, sim: SimulatorAdmin, identity: IdentityAdmin, services: Services) -> None:
    alice, app = str(uuid.uuid4()), str(uuid.uuid4())
    operations, queue, replies = ("o" + uuid.uuid4().hex[:20], "q" + uuid.uuid4().hex[:20],
                                  "r" + uuid.uuid4().hex[:20])
    entra = {"GATEWAY_AUTH": "entra", "WEBSITE_AUTH_ENABLED": "True", "GATEWAY_ALLOWED_APPLICATIONS": app,
             "OPERATIONS_TABLE": operations}
    alice_token = entra_bearer(services, alice, app, (Role.ALERTS_READ.value, Role.OPERATIONS_READ.value))
    before = tenant_host(host_factory, GATEWAY_TENANT_CALLERS=f"{alice}=contoso", **entra)
    accepted = alerts_of(before, "contoso", headers={**alice_token, "Prefer": "respond-async"})
    assert accepted.status_code == 202
    assert before.wait_for_operation(accepted.headers["Location"], headers=alice_token).status_code == 200
    # The same operations, read where GATEWAY_TENANT_CALLERS no longer lets alice act for contoso.
    after = tenant_host(host_factory, GATEWAY_TENANT_CALLERS=f"{alice}=home", REQUESTS_QUEUE=queue, **entra)
    path = accepted.headers["Location"].removeprefix(before.url)
    refused = assert_problem(after.get(path, headers=alice_token), 403)
    assert refused["type"].endswith(":tenant-not-allowed")
    # A queued request naming her as its caller for contoso is answered 403 there, and nothing is sent.
    RequestQueue(services.azurite.connection_string, queue).put({
        "version": 1, "id": "tenant-q-" + uuid.uuid4().hex, "operation": "GetFileRelatedAlerts", "fileHash": SHA1,
        "tenantId": "contoso", "caller": alice, "replyQueue": replies})
    (reply,) = RequestQueue(services.azurite.connection_string, queue).drain(replies, count=1)
    assert reply["status"] == 403 and reply["body"]["type"].endswith(":tenant-not-allowed")
    assert [call["caller"].split("|")[0] for call in sim.calls()] == [LOCAL_CUSTOMER_TENANT]  # the first lookup
