"""The running gateway answers as its OpenAPI document says (schemathesis, property-based, derandomized).

A local host (Defender is the simulator, so successes happen) serves GET /api/openapi.json (checked to be
what shared/http/openapi.py generates for it); every operation in it gets generated requests, schema-valid and
schema-violating, and every answer is checked: no 5xx, its status code and content type declared for that
operation, its body (and declared headers) matching the schemas. Explicit calls then check the answers that
fuzzing rarely reaches: a file with alerts (by SHA-1 and SHA-256, and from the shared answer), a created
alert, 202 Accepted and its operation, an idempotent repeat and a reused key, a missing function key, health.

Nothing is excluded. Two choices, each for a stated reason: generated requests always carry the function key
(a request without one never reaches the gateway: the host answers 401, which the explicit test checks once,
instead of spending most schema-violating examples on it); and GetHealth and GetOpenApiDocument get no
schema-violating requests, because they take no input to violate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from localdev.simulator.data import SEED_FILE_SHA1, SEED_FILE_SHA256
from shared.http import openapi
from shared.http.settings import AuthMode
from tests.support.inputs import VALID
from tests.support.servers import FUNCTION_KEY, GatewayClient, HostFactory, IdentityAdmin, SimulatorAdmin

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
#: Generated requests per operation and mode: the whole file runs in well under a minute.
EXAMPLES = 40
OPERATION_IDS = [operation["operationId"] for item in openapi.document(AuthMode.FUNCTION_KEY)["paths"].values()
                 for operation in item.values()]


@pytest.fixture(scope="module")
def conformance_gateway(host_factory: HostFactory) -> Iterator[GatewayClient]:
    # The shared answer cache on, so that its Cache-Control and Age headers are checked too.
    gateway = host_factory(FILE_ALERTS_CACHE_SECONDS="60", MDE_MAX_RETRY_AFTER_SECONDS="2",
                           MDE_READ_TIMEOUT_SECONDS="5", MDE_TOTAL_TIMEOUT_SECONDS="20")
    yield gateway
    # Its queue worker would go on sending the operations the run queued to the shared simulator.
    gateway.host.stop()


@pytest.fixture
def api(conformance_gateway: GatewayClient, sim: SimulatorAdmin, identity: IdentityAdmin) -> Any:
    """The document this gateway serves (shared.http.openapi.served_document for its URL), loaded by schemathesis, with
    the simulator and identity reset. test_the_gateway_serves_the_document checks that it serves exactly this."""
    served = openapi.served_document(AuthMode.FUNCTION_KEY, f"{conformance_gateway.url}/api/openapi.json")
    schema = schemathesis.openapi.from_dict(served)
    schema.config.generation.update(with_security_parameters=False)  # every request has the key (see above)
    return schema


def test_the_gateway_serves_the_document(conformance_gateway: GatewayClient) -> None:
    url = f"{conformance_gateway.url}/api/openapi.json"
    response = requests.get(url, timeout=30)  # anonymous: no function key
    assert response.status_code == 200, (
        f"GET /api/openapi.json answered {response.status_code}: is openapi_fn's blueprint registered in "
        "function_app.py?")
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == openapi.served_document(AuthMode.FUNCTION_KEY, url)


def call_and_check(gateway: GatewayClient) -> Callable[[schemathesis.Case[Any]], schemathesis.Response]:
    def run(case: schemathesis.Case[Any]) -> schemathesis.Response:
        headers = {"x-functions-key": FUNCTION_KEY}
        response = case.call(base_url=f"{gateway.url}/api", headers=headers, timeout=60)
        checks = CHECKS
        if response.status_code == 401 and not response.content:
            # Schema-violating requests include ones without the function key: the Functions host refuses them
            # before the gateway runs, with an empty body (documented so), whose Content-Type is the host's own
            # (text/plain locally, none in Azure) and not one of the API's media types. Status and the rest are
            # still checked.
            checks = [check for check in CHECKS if check is not content_type_conformance]
        case.validate_response(response, checks=checks, headers=headers)
        return response

    return run


@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_generated_requests_get_documented_answers(operation_id: str, api: Any,
                                                   conformance_gateway: GatewayClient) -> None:
    operation = api.find_operation_by_id(operation_id)
    check = call_and_check(conformance_gateway)
    fuzz(operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE), check, positive=True)
    if list(operation.iter_parameters()):  # GetHealth and GetOpenApiDocument take no input to get wrong
        fuzz(operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE), check, positive=False)


def fuzz(strategy: st.SearchStrategy[schemathesis.Case[Any]],
         check: Callable[[schemathesis.Case[Any]], schemathesis.Response], *, positive: bool) -> None:
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=strategy)
    def run(case: schemathesis.Case[Any]) -> None:
        response = check(case)
        if positive and response.status_code == 400:
            # What the document allows is not refused as input: a hash (SHA-1 or SHA-256), an operation id, a body,
            # headers. The one exception: a 31st of a short month (or 29-30 February) that the pattern lets through.
            fields = [error["field"] for error in response.json().get("errors", [])]
            body = case.body if isinstance(case.body, dict) else {}
            assert case.operation.label == f"POST {openapi.CREATE_ALERT_PATH}" and fields == ["body.eventTime"] \
                and not calendar_date(str(body["eventTime"])), (case.path_parameters, case.body, response.text)

    run()


def test_documented_examples_get_documented_answers(api: Any, conformance_gateway: GatewayClient) -> None:
    check = call_and_check(conformance_gateway)
    for operation_id in OPERATION_IDS:
        operation = api.find_operation_by_id(operation_id)
        examples = api.get_strategies_from_examples(operation)
        if not examples:
            continue

        @settings(max_examples=10, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(examples))
        def run(case: schemathesis.Case[Any]) -> None:
            check(case)

        run()


def calendar_date(event_time: str) -> bool:
    try:
        datetime.strptime(event_time[:10], "%Y-%m-%d")
    except ValueError:
        return False
    return True


def header(response: schemathesis.Response, name: str) -> str | None:
    values = response.headers.get(name.lower())  # schemathesis keeps every value, under the lower-case name
    return values[0] if values else None


def case(api: Any, operation_id: str, **parts: Any) -> schemathesis.Case[Any]:
    made: schemathesis.Case[Any] = api.make_case(operation=api.find_operation_by_id(operation_id), **parts)
    return made


def test_successes_and_accepted_operations_are_as_documented(api: Any, conformance_gateway: GatewayClient,
                                                             sim: SimulatorAdmin) -> None:
    check = call_and_check(conformance_gateway)

    for file_hash in (SEED_FILE_SHA1, SEED_FILE_SHA256.upper()):
        alerts = check(case(api, openapi.GET_FILE_RELATED_ALERTS, path_parameters={"fileHash": file_hash}))
        assert alerts.status_code == 200 and alerts.json()["value"], alerts.text
    cached = check(case(api, openapi.GET_FILE_RELATED_ALERTS, path_parameters={"fileHash": SEED_FILE_SHA1}))
    assert cached.status_code == 200 and header(cached, "Age") is not None

    created = check(case(api, openapi.CREATE_ALERT_BY_REFERENCE, body=dict(VALID), media_type="application/json"))
    assert created.status_code == 200 and created.json()["id"], created.text

    sim.fault("latency", api="create_alert", delay=5, count=1)  # the operation is still pending when first polled
    accepted = check(case(api, openapi.CREATE_ALERT_BY_REFERENCE, body={**VALID, "title": "conformance, async"},
                          media_type="application/json", headers={"Prefer": "respond-async"}))
    assert accepted.status_code == 202 and header(accepted, "Preference-Applied") == "respond-async", accepted.text
    location = header(accepted, "Location") or ""
    assert location.startswith(f"{conformance_gateway.url}/api/operations/")
    operation_id = location.rsplit("/", 1)[1]
    polled = check(case(api, openapi.GET_OPERATION, path_parameters={"operationId": operation_id}))
    assert polled.status_code == 202, polled.text  # pending: Defender has not answered yet
    conformance_gateway.wait_for_operation(location)
    done = check(case(api, openapi.GET_OPERATION, path_parameters={"operationId": operation_id}))
    assert done.status_code == 200 and done.json()["id"], done.text  # then Defender's answer, as documented

    keyed = {"Idempotency-Key": "conformance-key-1"}
    first = check(case(api, openapi.GET_FILE_RELATED_ALERTS, path_parameters={"fileHash": SEED_FILE_SHA1},
                       headers=keyed))
    again = check(case(api, openapi.GET_FILE_RELATED_ALERTS, path_parameters={"fileHash": SEED_FILE_SHA1},
                       headers=keyed))
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    reused = check(case(api, openapi.GET_FILE_RELATED_ALERTS, path_parameters={"fileHash": "0" * 40}, headers=keyed))
    assert reused.status_code == 422 and reused.json()["type"].endswith(":idempotency-key-reuse"), reused.text

    unknown = check(case(api, openapi.GET_OPERATION, path_parameters={"operationId": "no-such-operation"}))
    assert unknown.status_code == 404 and unknown.json()["type"].endswith(":operation-not-found")

    health = check(case(api, openapi.GET_HEALTH))
    assert health.status_code == 200 and health.json()["status"] == "healthy", health.text


def test_a_missing_function_key_is_the_documented_401(api: Any, conformance_gateway: GatewayClient) -> None:
    known = {"fileHash": SEED_FILE_SHA1, "operationId": "no-such-operation", "tenant": "contoso"}
    for operation_id in OPERATION_IDS:
        operation = api.find_operation_by_id(operation_id)
        body = {"body": dict(VALID), "media_type": "application/json"} \
            if operation_id == openapi.CREATE_ALERT_BY_REFERENCE else {}
        made = case(api, operation_id, path_parameters={name: value for name, value in known.items()
                                                        if "{" + name + "}" in operation.path}, **body)
        response = made.call(base_url=f"{conformance_gateway.url}/api", timeout=60)  # no x-functions-key
        expected = 200 if operation.definition.raw.get("security") == [] else 401  # GetOpenApiDocument: anonymous
        assert response.status_code == expected, (operation_id, response.status_code)
        made.validate_response(response, checks=[status_code_conformance, not_a_server_error])
