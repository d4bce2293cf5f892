"""Tenants bounded by configuration, not by claims, in process: the shared answers, the lookups in flight and the
budgets are keyed by the tenant a request was routed to (a token that names no tenant, or another one, fails
closed); an operation read, a queued request and a re-drive are checked against GATEWAY_TENANT_CALLERS as the
routes are."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared.asynchronous.operations import Source, State
from shared.asynchronous.redrive import poisoned
from shared.defender.client import DefenderRequest
from shared.http.settings import Role
from shared.ratelimit import partition_key
from shared.validation import validate_file_hash
from tests.support.rigs import GATEWAY_URL, EdgeRig, bearer, make_edge, response_problem
from tests.support.scripted import (
    APP_ID,
    PRINCIPAL,
    TENANT_ID,
    FakeTable,
    StaticCredential,
    alerts_reply,
    error_reply,
)

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
CONTOSO = "c0c0c0c0-1111-4222-8333-444455556666"
FABRIKAM = "f0f0f0f0-2222-4333-8444-555566667777"
MULTI_APP = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"
ALICE = "5f9a1c2e-0000-4000-8000-0000000a11ce"
MANY = {"MDE_TENANTS": f"contoso={CONTOSO},fabrikam={FABRIKAM}", "MDE_MULTITENANT_CLIENT_ID": MULTI_APP,
        "AZURE_CLIENT_ID": APP_ID}
HOME_ALERT = {"id": "da-home-only", "title": "the home tenant's alert"}
ENTRA_ENV = {"GATEWAY_AUTH": "entra", "WEBSITE_AUTH_ENABLED": "True"}


def principal_headers(oid: str) -> dict[str, str]:
    """An Entra caller `oid` holding every app role of the gateway (here only the tenant boundaries refuse)."""
    return bearer(oid, "0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b", tuple(role.value for role in Role))


def opaque(token: str) -> StaticCredential:
    """An identity that hands out a token that is not a JWT (an opaque or encrypted one)."""
    credential = StaticCredential()
    credential.token = token
    return credential


def tenant_lookup(rig: EdgeRig, tenant: str, *, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """GET /api/tenants/{tenant}/files/{SHA1}/alerts through the edge, as tenants_fn calls it."""
    req = func.HttpRequest("GET", f"{GATEWAY_URL}/api/tenants/{tenant}/files/{SHA1}/alerts",
                           headers=headers or {}, route_params={"tenant": tenant, "fileHash": SHA1}, body=b"")
    return rig.edge.lookup_file_alerts(req, lambda: validate_file_hash(SHA1), tenant)


def alert_ids(response: func.HttpResponse) -> list[str]:
    return [alert["id"] for alert in json.loads(response.get_body()).get("value", [])]


def test_tokens_that_are_not_jwts_fail_closed_and_no_tenant_gets_another_tenants_answer() -> None:
    cache = FakeTable()
    rig = make_edge([alerts_reply(HOME_ALERT)], settings_env=MANY, credential=opaque("opaque-home-token"),
                    tenant_credentials={CONTOSO: opaque("opaque-contoso-token")}, cache_table=cache)
    home = rig.get_alerts(SHA1)
    contoso = tenant_lookup(rig, "contoso")
    assert HOME_ALERT["id"] not in alert_ids(contoso)  # main: contoso got the home tenant's cached answer
    response_problem(home, 502)
    assert "readable" in response_problem(contoso, 502)["detail"]
    assert "opaque" not in home.get_body().decode() + contoso.get_body().decode()  # no token in an answer
    # Fail closed: no shared fallback bucket was read, spent or filled.
    assert rig.transport.calls == [] and cache.entities == {} and cache.reads == 0 and rig.store.writes == []


def test_a_token_naming_another_tenant_than_the_routed_one_is_refused() -> None:
    cache = FakeTable()
    rig = make_edge([alerts_reply(HOME_ALERT)], settings_env=MANY, cache_table=cache,
                    tenant_credentials={CONTOSO: StaticCredential(tenant=TENANT_ID, app=MULTI_APP)})
    assert alert_ids(rig.get_alerts(SHA1)) == [HOME_ALERT["id"]]
    contoso = tenant_lookup(rig, "contoso")
    problem = response_problem(contoso, 502)
    assert CONTOSO in problem["detail"] and HOME_ALERT["id"] not in contoso.get_body().decode()
    assert len(rig.transport.calls) == 1  # the home tenant's call only


def test_the_home_identitys_token_naming_a_customer_tenant_is_refused() -> None:
    rig = make_edge([], settings_env=MANY, credential=StaticCredential(tenant=CONTOSO))
    assert "customer tenant" in response_problem(rig.get_alerts(SHA1), 502)["detail"]
    assert rig.transport.calls == [] and rig.store.writes == []


def test_each_tenant_is_keyed_by_its_routed_tenant_and_the_configured_app_as_state_written_before() -> None:
    cache = FakeTable()
    rig = make_edge([alerts_reply(HOME_ALERT), alerts_reply({"id": "da-contoso"}), alerts_reply()],
                    settings_env=MANY, cache_table=cache, tenant_credentials={
                        CONTOSO: StaticCredential(tenant=CONTOSO, app=MULTI_APP),
                        # A token whose app claim is not the configured app: the key is still the configuration's.
                        FABRIKAM: StaticCredential(tenant=FABRIKAM, app="0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b")})
    assert alert_ids(rig.get_alerts(SHA1)) == [HOME_ALERT["id"]]
    assert alert_ids(tenant_lookup(rig, "contoso")) == ["da-contoso"]  # its own call, not the home tenant's answer
    assert alert_ids(tenant_lookup(rig, "fabrikam")) == []
    assert len(rig.transport.calls) == 3
    # The keys are what the tokens' own claims gave before (home: the identity's tid|appid; a customer: its id and
    # the multi-tenant app), so an instance of this version and one of the last count the same budgets.
    keys = {partition_key(PRINCIPAL), partition_key(f"{CONTOSO}|{MULTI_APP}"), partition_key(f"{FABRIKAM}|{MULTI_APP}")}
    assert {key for key, _, _ in rig.store.writes} == keys
    assert {partition for partition, _ in cache.entities} == keys
    assert alert_ids(tenant_lookup(rig, "contoso")) == ["da-contoso"]  # from its own shared answer: nothing sent
    assert len(rig.transport.calls) == 3


ENTRA_MANY = {**ENTRA_ENV, **MANY}


def test_an_operation_is_not_read_by_its_caller_once_no_longer_allowed_for_its_tenant() -> None:
    rig = make_edge([], settings_env={**ENTRA_MANY, "GATEWAY_TENANT_CALLERS": f"{ALICE}=home"})
    operations = rig.runtime.operations
    for operation_id, tenant in (("op-contoso", CONTOSO), ("op-home", None)):
        operations.create(operations.new(operation_id, DefenderRequest.file_alerts(SHA1).for_tenant(tenant),
                                         caller=ALICE, source=Source.HTTP, correlation_id=operation_id))

    def read(operation_id: str) -> func.HttpResponse:
        req = func.HttpRequest("GET", f"{GATEWAY_URL}/api/operations/{operation_id}",
                               headers=principal_headers(ALICE), route_params={"id": operation_id}, body=b"")
        return rig.edge.operation_status(req, operation_id)

    problem = response_problem(read("op-contoso"), 403)
    assert problem["type"].endswith(":tenant-not-allowed") and CONTOSO in problem["detail"]
    assert read("op-home").status_code == 202  # the tenant it may still act for


def queued(message_id: str, **fields: Any) -> str:
    return json.dumps({"version": 1, "id": message_id, "operation": "GetFileRelatedAlerts", "fileHash": SHA1,
                       **fields})


def test_a_queued_request_naming_a_caller_not_allowed_for_its_tenant_is_403_and_nothing_is_sent() -> None:
    rig = make_edge([alerts_reply({"id": "da-contoso"})], settings_env={
        **ENTRA_MANY, "GATEWAY_TENANT_CALLERS": f"{ALICE}=fabrikam"},
        tenant_credentials={CONTOSO: StaticCredential(tenant=CONTOSO, app=MULTI_APP)})
    rig.runtime.worker.handle(queued("q-refused", caller=ALICE, tenantId="contoso"))
    operation = rig.runtime.operations.get("q-refused")
    assert operation is not None and operation.state is State.DONE and operation.answer is not None
    assert operation.answer.status == 403 and b"tenant-not-allowed" in operation.answer.body
    assert rig.transport.calls == [] and rig.store.writes == []
    # A message that names no caller is the queue writer's own (its data role is the boundary): it runs.
    rig.runtime.worker.handle(queued("q-own", tenantId="contoso"))
    answered = rig.runtime.operations.get("q-own")
    assert answered is not None and answered.answer is not None and answered.answer.status == 200
    assert len(rig.transport.calls) == 1


def test_a_redrive_is_refused_to_an_operator_not_allowed_for_the_requests_tenant() -> None:
    bob = "5f9a1c2e-0000-4000-8000-000000000b0b"
    rig = make_edge([error_reply(404, "NotFound")], settings_env={
        **ENTRA_MANY, "GATEWAY_TENANT_CALLERS": f"{ALICE}=contoso;{bob}=home"},
        tenant_credentials={CONTOSO: StaticCredential(tenant=CONTOSO, app=MULTI_APP)})
    rig.runtime.worker.handle(queued("q-failed", caller=ALICE, tenantId="contoso"))  # Defender's 404: poisoned
    queues = rig.runtime.queues
    (entry,) = poisoned(queues, rig.runtime.operations, [queues.poison_name])
    assert entry.refusal is None

    def redrive_as(oid: str) -> func.HttpResponse:
        body = json.dumps({"queue": queues.poison_name, "messageId": entry.message_id}).encode()
        return rig.edge.operator_redrive(func.HttpRequest(
            "POST", f"{GATEWAY_URL}/api/operator/redrive", headers={
                **principal_headers(oid), "Content-Type": "application/json"}, body=body))

    problem = response_problem(redrive_as(bob), 403)
    assert problem["type"].endswith(":tenant-not-allowed")
    assert queues.depth(queues.poison_name) == 1 and queues.depth(queues.requests_name) == 0  # left as it was
    assert redrive_as(ALICE).status_code == 200
    assert queues.depth(queues.requests_name) == 1


def test_a_queued_request_names_its_caller_so_a_recreated_operation_is_checked_again() -> None:
    """An Entra caller's 202: the message names the caller too, so were its record purged while it waits, the worker
    recreates the operation for that caller and checks GATEWAY_TENANT_CALLERS again (not a caller-less operation that
    skips the check and that its reader can no longer read)."""
    rig = make_edge([alerts_reply({"id": "da-contoso"})], settings_env={
        **ENTRA_MANY, "GATEWAY_TENANT_CALLERS": f"{ALICE}=contoso"},
        tenant_credentials={CONTOSO: StaticCredential(tenant=CONTOSO, app=MULTI_APP)})
    calls = rig.edge.async_calls
    assert calls is not None
    calls.submit("op-alice", DefenderRequest.file_alerts(SHA1).for_tenant(CONTOSO), ALICE, "corr-alice")
    queues = rig.runtime.queues
    (message,) = queues.peek(rig.runtime.settings.asynchronous.requests_queue)
    assert json.loads(message.text)["caller"] == ALICE
    stored = rig.runtime.operations.get("op-alice")
    assert stored is not None and rig.runtime.operations.delete(stored)  # purged while the message waits
    rig.runtime.worker.handle(message.text)
    recreated = rig.runtime.operations.get("op-alice")
    assert recreated is not None and recreated.caller == ALICE
    assert recreated.answer is not None and recreated.answer.status == 200 and len(rig.transport.calls) == 1
