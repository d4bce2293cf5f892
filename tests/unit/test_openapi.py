"""The OpenAPI document (shared/http/openapi.py): valid Swagger 2.0, true to the routes and the validation, and a
Power Platform custom connector by its rules; the committed connector/ is what the generator writes now.

In process, no servers: the routes come from `function_app` imported in a child process (its import reads
settings and starts the runtime, and `get_functions()` may run only once per app object, so the test
session's own objects are left alone).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV2SpecValidator

import openapi_fn
from localdev.stack import LOCAL_CUSTOMER_NAME
from scripts import connector
from shared.answers.correlation import CORRELATION_HEADER, correlation_id_for
from shared.answers.mapping import input_problem, key_reused_problem
from shared.answers.problems import PROBLEM_TYPE_BASE
from shared.asynchronous.operations import OPERATION_ID_PATTERN, State
from shared.defender.facts import CATEGORIES, CREATE_FIELDS, OPERATION_NAMES, SEVERITIES, Api
from shared.http import openapi, openapi_tenants
from shared.http.incoming import Incoming
from shared.http.openapi_blocks import HOST_401_MEDIA_TYPE
from shared.http.openapi_hunting import (
    RUN_ADVANCED_HUNTING_QUERY,
    RUN_ADVANCED_QUERY,
    RUN_HUNTING_QUERY,
    RUN_TENANT_ADVANCED_HUNTING_QUERY,
    RUN_TENANT_ADVANCED_QUERY,
    RUN_TENANT_HUNTING_QUERY,
)
from shared.http.openapi_tenants import CREATE_TENANT_ALERT_BY_REFERENCE, GET_TENANT_FILE_RELATED_ALERTS
from shared.http.settings import AuthMode
from shared.validation import (
    MAX_REPORT_ID,
    MAX_TEXT_LENGTH,
    BodyTooLargeError,
    InvalidInputError,
    UnsupportedMediaTypeError,
    validate_create_alert,
    validate_file_hash,
)
from tests.support.inputs import VALID, pattern_disagreements
from tests.support.rigs import make_edge

ROOT = Path(__file__).resolve().parents[2]
CONNECTOR = ROOT / "connector"
REGENERATE = ".venv/bin/python scripts/export_connector.py"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
VISIBILITIES = {"important", "advanced", "internal"}
#: Words a Title Case summary may keep in lower case (not first).
SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "per", "the", "to", "with"}

Spec = dict[str, Any]


def documents() -> dict[str, Spec]:
    """Every document the gateway gives out: both auth modes, as served and as the connectors."""
    found: dict[str, Spec] = {}
    for auth in AuthMode:
        found[f"document-{auth}"] = openapi.document(auth)
        found[f"served-{auth}"] = openapi.served_document(auth, "https://func-mdegw-x.azurewebsites.net/api/openapi"
                                                                ".json")
        found[f"connector-{auth}"] = connector.connector_document(auth)
    return found


DOCUMENTS = documents()


def operations(spec: Spec) -> Iterator[tuple[str, str, Spec]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(spec: Spec, schema: Spec) -> Spec:
    while "$ref" in schema:
        prefix = "#/definitions/"
        assert schema["$ref"].startswith(prefix), schema
        schema = spec["definitions"][schema["$ref"][len(prefix):]]
    return schema


def properties_of(spec: Spec, schema: Spec, where: str) -> Iterator[tuple[str, Spec]]:
    """Every property below `schema`, recursively (through $ref, properties and items), with where it is."""
    schema = resolve(spec, schema)
    for name, child in schema.get("properties", {}).items():
        yield f"{where}.{name}", child
        yield from properties_of(spec, child, f"{where}.{name}")
    if "items" in schema:
        yield from properties_of(spec, schema["items"], f"{where}[]")


def is_title_case(text: str) -> bool:
    words = text.split()
    return bool(words) and all(
        (index > 0 and word in SMALL_WORDS) or word[0].isupper() or word[0].isdigit() for index, word in
        enumerate(words))


# --- Swagger 2.0 ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_document_is_valid_swagger_2(name: str) -> None:
    errors = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
              for error in OpenAPIV2SpecValidator(DOCUMENTS[name]).iter_errors()]
    assert errors == []
    assert DOCUMENTS[name]["swagger"] == "2.0"


def test_rendering_is_stable_json() -> None:
    for auth in AuthMode:
        text = connector.render(openapi.document(auth))
        assert text == connector.render(openapi.document(auth)) and text.endswith("}\n")
        assert json.loads(text) == openapi.document(auth)


# --- Power Platform custom connector rules -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_connector_rules_hold(name: str) -> None:
    spec = DOCUMENTS[name]
    problems: list[str] = []
    title = spec["info"]["title"]
    if re.search(r"\b(api|connector)\b", title, re.IGNORECASE) or len(title) > 30:
        problems.append(f"info.title {title!r}: at most 30 characters, without the words API and Connector")
    if not 30 <= len(spec["info"].get("description", "")) <= 500:
        problems.append("info.description: 30-500 characters")
    if spec["basePath"] != "/api":
        problems.append("basePath must be /api")
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        for key in ("operationId", "summary", "description"):
            if not isinstance(operation.get(key), str) or not operation[key].strip():
                problems.append(f"{where}: no {key}")
        summary = operation.get("summary", "")
        if len(summary) > 80 or summary.endswith("."):
            problems.append(f"{where}: summary {summary!r} must be at most 80 characters, without a final period")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", operation.get("operationId", "")):
            problems.append(f"{where}: operationId must be alphanumeric")
        if operation.get("x-ms-visibility") not in VISIBILITIES:
            problems.append(f"{where}: x-ms-visibility must be one of {sorted(VISIBILITIES)}")
        for parameter in operation.get("parameters", []):
            label = f"{where} parameter {parameter.get('name')}"
            if not is_title_case(parameter.get("x-ms-summary", "")):
                problems.append(f"{label}: x-ms-summary must be Title Case, got {parameter.get('x-ms-summary')!r}")
            if not parameter.get("description"):
                problems.append(f"{label}: no description")
            visibility = parameter.get("x-ms-visibility")
            if visibility is not None and visibility not in VISIBILITIES:
                problems.append(f"{label}: x-ms-visibility {visibility!r}")
            if visibility == "internal" and parameter.get("required") and "default" not in parameter:
                problems.append(f"{label}: internal and required needs a default")
            if "schema" in parameter:
                for inner, schema in properties_of(spec, parameter["schema"], label):
                    problems.extend(property_problems(inner, schema))
        for status, response in operation["responses"].items():
            if not response.get("description"):
                problems.append(f"{where} {status}: no description")
            if "schema" in response:
                for inner, schema in properties_of(spec, response["schema"], f"{where} {status}"):
                    problems.extend(property_problems(inner, schema))
            for header, definition in response.get("headers", {}).items():
                if not definition.get("description"):
                    problems.append(f"{where} {status} header {header}: no description")
    assert problems == []


def property_problems(where: str, schema: Spec) -> list[str]:
    problems = []
    if "$ref" in schema:
        problems.append(f"{where}: a property that is only a $ref cannot carry x-ms-summary; inline it")
    if not is_title_case(schema.get("x-ms-summary", "")):
        problems.append(f"{where}: x-ms-summary must be Title Case, got {schema.get('x-ms-summary')!r}")
    if not schema.get("description"):
        problems.append(f"{where}: no description")
    return problems


def test_the_title_case_check_itself() -> None:
    assert is_title_case("SHA-1 of the File") and is_title_case("OData Context") and is_title_case("Alert ID")
    assert not is_title_case("alert id") and not is_title_case("") and not is_title_case("Alert for id")


@pytest.mark.parametrize("auth", list(AuthMode))
def test_every_202_follows_the_asynchronous_pattern(auth: AuthMode) -> None:
    spec = openapi.document(auth)
    accepting = {operation["operationId"]: operation for _, _, operation in operations(spec)
                 if "202" in operation["responses"]}
    assert set(accepting) == {openapi.GET_FILE_RELATED_ALERTS, openapi.CREATE_ALERT_BY_REFERENCE,
                              openapi.GET_OPERATION, GET_TENANT_FILE_RELATED_ALERTS,
                              CREATE_TENANT_ALERT_BY_REFERENCE, *HUNTING, *TENANT_HUNTING}
    for operation_id, operation in accepting.items():
        accepted = operation["responses"]["202"]
        assert accepted["schema"] == {"$ref": "#/definitions/Operation"}, operation_id
        assert {"Location", "Retry-After"} <= set(accepted["headers"]), operation_id
        if operation_id != openapi.GET_OPERATION:
            assert "Preference-Applied" in accepted["headers"]
            assert operation["x-ms-long-running-operation"] is True
            assert operation["x-ms-long-running-operation-options"] == {"final-state-via": "location"}
            assert {p["name"] for p in operation["parameters"]} >= {"Prefer", "Idempotency-Key", "X-Correlation-ID"}
    polled = spec["paths"][openapi.OPERATION_PATH]["get"]
    assert polled["operationId"] == openapi.GET_OPERATION and "Location" in polled["description"]


HUNTING = (RUN_ADVANCED_QUERY, RUN_ADVANCED_HUNTING_QUERY, RUN_HUNTING_QUERY)
TENANT_HUNTING = (RUN_TENANT_ADVANCED_QUERY, RUN_TENANT_ADVANCED_HUNTING_QUERY, RUN_TENANT_HUNTING_QUERY)


def test_every_error_is_a_problem() -> None:
    for auth in AuthMode:
        spec = openapi.document(auth)
        for path, method, operation in operations(spec):
            produces = list(operation.get("produces") or spec["produces"])
            for status, response in operation["responses"].items():
                if int(status) < 400 or operation["operationId"] in (openapi.GET_HEALTH, openapi.GET_OPERATOR_STATE):
                    continue
                if status == "401" and "schema" not in response:  # answered by the host or the platform, no body
                    assert "empty body" in response["description"]
                    # Its media type (the local host's; Azure's gives none) is among the operation's: Swagger 2.0
                    # names media types per operation, so a tester checks the 401's against `produces`.
                    assert HOST_401_MEDIA_TYPE in produces, (method, path)
                    continue
                assert response["schema"] == {"$ref": "#/definitions/Problem"}, (method, path, status)
                assert "application/problem+json" in produces
    problem = openapi.document(AuthMode.FUNCTION_KEY)["definitions"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert set(problem["properties"]) >= {"errors", "correlationId", "upstreamError"}
    for made in (input_problem(InvalidInputError([])), input_problem(BodyTooLargeError(1, 0)),
                 input_problem(UnsupportedMediaTypeError("text/plain")), key_reused_problem()):
        body = made.body("correlation-1234")
        assert re.fullmatch(problem["properties"]["type"]["pattern"], body["type"]), body
        assert body["type"].startswith(PROBLEM_TYPE_BASE)


#: The header parameters the gateway may refuse: a malformed Idempotency-Key (400) and, on the routes that ask for it in
#: Entra mode, the function key (the host's 401).
_REFUSABLE_HEADERS = {"Idempotency-Key", openapi.FUNCTION_KEY_HEADER}


def test_optional_headers_the_gateway_never_refuses_have_no_constraint() -> None:
    """X-Correlation-ID (an odd one is replaced), Prefer and Cache-Control (what is not understood is ignored, RFC 7240
    and RFC 9111) accept any value, so their parameters constrain none: a tester sending an empty or odd value must
    not expect a refusal. Each is read without refusing such values."""
    seen = set()
    for name, spec in DOCUMENTS.items():
        for path, method, operation in operations(spec):
            for parameter in operation["parameters"]:
                if parameter["in"] != "header" or parameter["name"] in _REFUSABLE_HEADERS:
                    continue
                seen.add(parameter["name"])
                constraints = set(parameter) & {"enum", "pattern", "minLength", "maxLength", "format"}
                assert not constraints, (name, method, path, parameter["name"], constraints)
    assert seen == {CORRELATION_HEADER, "Prefer", "Cache-Control"}
    for value in ("", "`", "x" * 200, "respond-sync", "[", "s!q(37f"):
        headers = {CORRELATION_HEADER: value, "Prefer": value, "Cache-Control": value}
        incoming = Incoming(func.HttpRequest("GET", "https://gw.example/api/x", headers=headers, body=b""),
                            correlation_id_for(headers), "")
        assert not incoming.asynchronous and not incoming.fresh and incoming.idempotency_key is None


def test_statuses_of_each_operation() -> None:
    paths = openapi.document(AuthMode.ENTRA)["paths"]
    statuses = {operation["operationId"]: sorted(map(int, operation["responses"]))
                for item in paths.values() for operation in item.values()}
    assert statuses == {  # with Entra ID every operation but the document's may be 403 (the app role of the call)
        openapi.GET_FILE_RELATED_ALERTS: [200, 202, 400, 401, 403, 422, 429, 500, 502, 503, 504],
        openapi.CREATE_ALERT_BY_REFERENCE: [200, 202, 400, 401, 403, 404, 413, 415, 422, 429, 500, 502, 503, 504],
        openapi.GET_OPERATION: [200, 202, 400, 401, 403, 404, 422, 429, 500, 502, 503, 504],
        openapi.GET_HEALTH: [200, 401, 403, 503],
        openapi.GET_OPENAPI_DOCUMENT: [200],
        openapi.GET_OPERATOR_PAGE: [200, 401, 403],
        openapi.GET_OPERATOR_STATE: [200, 401, 403, 503],
        openapi.REDRIVE_POISONED: [200, 400, 401, 403, 404, 409, 413, 415, 500, 503],
        GET_TENANT_FILE_RELATED_ALERTS: [200, 202, 400, 401, 403, 404, 422, 429, 500, 502, 503, 504],
        CREATE_TENANT_ALERT_BY_REFERENCE: [200, 202, 400, 401, 403, 404, 413, 415, 422, 429, 500, 502, 503, 504],
        **{name: [200, 202, 400, 401, 403, 413, 415, 422, 429, 500, 502, 503, 504] for name in HUNTING},
        **{name: [200, 202, 400, 401, 403, 404, 413, 415, 422, 429, 500, 502, 503, 504] for name in TENANT_HUNTING},
    }
    assert paths[openapi.OPENAPI_PATH]["get"]["x-ms-visibility"] == "internal"
    keyed = openapi.document(AuthMode.FUNCTION_KEY)["paths"]  # function keys: no app roles, no 403 for them
    assert {operation["operationId"] for item in keyed.values() for operation in item.values()
            if "403" in operation["responses"]} == {openapi.GET_OPERATION, openapi.REDRIVE_POISONED,  # tenant's
                                                    GET_TENANT_FILE_RELATED_ALERTS, CREATE_TENANT_ALERT_BY_REFERENCE,
                                                    *TENANT_HUNTING}
    operator = keyed[openapi.REDRIVE_PATH]["post"]["responses"]["401"]["description"]
    assert "admin (master) key" in operator and "function key" not in operator


def test_security_matches_the_auth_mode() -> None:
    keyed = openapi.document(AuthMode.FUNCTION_KEY)
    assert keyed["securityDefinitions"] == {"api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                                                        "description": "A function key of the function app."}}
    assert keyed["security"] == [{"api_key": []}]
    assert keyed["paths"][openapi.OPENAPI_PATH]["get"]["security"] == []  # anonymous
    assert keyed["paths"][openapi.HEALTH_PATH]["get"]["parameters"] == []  # the connection's key is the key
    entra = openapi.document(AuthMode.ENTRA)
    (definition,) = entra["securityDefinitions"].values()
    assert definition["type"] == "oauth2" and entra["security"] == [{"oauth2_auth": []}]
    assert "security" not in entra["paths"][openapi.OPENAPI_PATH]["get"]  # App Service authentication wants a token
    (key,) = entra["paths"][openapi.HEALTH_PATH]["get"]["parameters"]  # health takes a function key anyway
    assert (key["name"], key["in"], key["required"]) == ("x-functions-key", "header", True)


def test_connectors_are_one_per_auth_mode_with_a_placeholder_host() -> None:
    for directory, auth in connector.CONNECTOR_VARIANTS.items():
        spec = connector.connector_document(auth)
        assert spec["host"] == connector.CONNECTOR_HOST and spec["host"].endswith(".invalid"), directory
        assert spec["schemes"] == ["https"] and spec["basePath"] == "/api"
        assert len(spec["securityDefinitions"]) == 1
        assert {"propertyName": "Categories", "propertyValue": "Security;IT Operations"} in \
            spec["x-ms-connector-metadata"]
    assert connector.CONNECTOR_VARIANTS[""] is AuthMode.ENTRA
    assert connector.CONNECTOR_VARIANTS["api-key"] is AuthMode.FUNCTION_KEY


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_entra_properties_take_the_resource_from_a_parameter_the_user_fills() -> None:
    properties = connector.api_properties(AuthMode.ENTRA)["properties"]
    parameters = properties["connectionParameters"]
    oauth = parameters["token"]["oAuthSettings"]
    assert parameters["token"]["type"] == "oauthSetting" and oauth["identityProvider"] == "aad"
    assert "resourceUri" not in oauth["customParameters"]
    resource = parameters[connector.RESOURCE_URI_PARAMETER]
    assert resource["type"] == "string" and resource["uiDefinition"]["constraints"]["required"] == "true"
    assert "App ID URI" in resource["uiDefinition"]["displayName"] and resource["uiDefinition"]["description"]
    for text in strings_in(properties):  # nothing to search and replace by hand
        assert not re.search(r"[<>{}]|TODO|REPLACE|xxxx", text, re.IGNORECASE), text
    baked = connector.api_properties(AuthMode.ENTRA, client_id="0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b",
                                   resource_uri="api://5f0e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b")["properties"]
    assert baked["connectionParameters"]["token"]["oAuthSettings"]["customParameters"]["resourceUri"] == {
        "value": "api://5f0e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"}
    assert connector.RESOURCE_URI_PARAMETER not in baked["connectionParameters"]
    assert baked["connectionParameters"]["token"]["oAuthSettings"]["clientId"] == \
        "0b7e6a3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"


def test_function_key_properties_ask_for_the_key() -> None:
    parameters = connector.api_properties(AuthMode.FUNCTION_KEY)["properties"]["connectionParameters"]
    assert list(parameters) == ["api_key"]
    assert parameters["api_key"]["type"] == "securestring"
    assert parameters["api_key"]["uiDefinition"]["constraints"]["required"] == "true"


# --- the committed connector files ---------------------------------------------------------------------------------

def test_committed_connector_files_are_what_the_generator_writes() -> None:
    expected = connector.connector_files()
    committed = {path.relative_to(CONNECTOR).as_posix() for path in CONNECTOR.rglob("*") if path.is_file()}
    stale = sorted(name for name, text in expected.items()
                   if not (CONNECTOR / name).is_file() or (CONNECTOR / name).read_text(encoding="utf-8") != text)
    assert not stale, f"connector/ is out of date ({', '.join(stale)}); regenerate it with: {REGENERATE}"
    assert committed == set(expected), f"connector/ holds files the generator does not write; run: {REGENERATE}"


def test_the_export_script_checks_and_writes(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "export_connector.py")]
    assert subprocess.run([*script, "--check"], cwd=ROOT, capture_output=True, check=False).returncode == 0
    stale = subprocess.run([*script, "--check", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                           check=False)
    assert stale.returncode == 1 and REGENERATE in stale.stderr
    subprocess.run([*script, "--out", str(tmp_path), "--host", "func-mdegw-abc.azurewebsites.net"], cwd=ROOT,
                   capture_output=True, check=True)
    written = json.loads((tmp_path / "api-key" / "apiDefinition.swagger.json").read_text(encoding="utf-8"))
    assert written["host"] == "func-mdegw-abc.azurewebsites.net"


# --- the document says what the validation does ---------------------------------------------------------------

KEYED = openapi.document(AuthMode.FUNCTION_KEY)
CREATE_REQUEST = KEYED["definitions"]["CreateAlertRequest"]


def test_the_create_body_is_the_validators() -> None:
    assert list(CREATE_REQUEST["properties"]) == list(CREATE_FIELDS)
    assert CREATE_REQUEST["required"] == list(CREATE_FIELDS) and CREATE_REQUEST["additionalProperties"] is False
    assert CREATE_REQUEST["properties"]["severity"]["enum"] == list(SEVERITIES)
    assert CREATE_REQUEST["properties"]["category"]["enum"] == list(CATEGORIES)
    for name in ("title", "description", "recommendedAction"):
        assert CREATE_REQUEST["properties"][name]["maxLength"] == MAX_TEXT_LENGTH
    assert CREATE_REQUEST["properties"]["reportId"]["type"] == "string"


@pytest.mark.parametrize("name", ["severity", "category"])
def test_each_enum_value_is_accepted_and_others_refused(name: str) -> None:
    for value in CREATE_REQUEST["properties"][name]["enum"]:
        assert validate_create_alert({**VALID, name: value})[name] == value
    with pytest.raises(InvalidInputError) as refused:
        validate_create_alert({**VALID, name: "Critical"})
    assert [error.field for error in refused.value.errors] == [f"body.{name}"]


def test_the_documented_examples_are_valid() -> None:
    example = {name: schema["example"] for name, schema in CREATE_REQUEST["properties"].items() if "example" in schema}
    assert validate_create_alert({**VALID, **example})
    file_hash = KEYED["paths"][openapi.FILE_ALERTS_PATH]["get"]["parameters"][0]
    assert validate_file_hash(file_hash["x-example"]).value == file_hash["x-example"]
    # Every parameter's x-example satisfies the parameter (a tester sends them as they are); the tenant's is the one
    # the local stack lists, so the tenant routes are reached there.
    for path, method, operation in operations(KEYED):
        for parameter in operation["parameters"]:
            if "x-example" in parameter and "pattern" in parameter:
                assert re.fullmatch(parameter["pattern"], parameter["x-example"]), (method, path, parameter["name"])
    tenant = KEYED["paths"][openapi_tenants.TENANT_PREFIX + openapi.FILE_ALERTS_PATH]["get"]["parameters"][0]
    assert tenant["x-example"] == LOCAL_CUSTOMER_NAME
    parameters = {p["name"]: p for p in KEYED["paths"][openapi.FILE_ALERTS_PATH]["get"]["parameters"]}
    assert correlation_id_for({CORRELATION_HEADER: parameters[CORRELATION_HEADER]["x-example"]}) == \
        parameters[CORRELATION_HEADER]["x-example"]
    request = func.HttpRequest("GET", "https://gw.example/api/x", body=b"", headers={
        name: parameters[name]["x-example"] for name in ("Prefer", "Cache-Control")})
    incoming = Incoming(request, "correlation-1", "")
    assert incoming.asynchronous and incoming.fresh


def _case_strategy(path: str, method: str) -> st.SearchStrategy[schemathesis.Case[Any]]:
    operation = schemathesis.openapi.from_dict(openapi.document(AuthMode.FUNCTION_KEY))[path][method]
    return operation.as_strategy()


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(case=_case_strategy(openapi.CREATE_ALERT_PATH, "POST"))
def test_bodies_generated_from_the_schema_pass_the_validator(case: schemathesis.Case[Any]) -> None:
    """Everything the schema allows, the validator accepts."""
    assert isinstance(case.body, dict)
    body: dict[str, Any] = case.body
    assert validate_create_alert(body) == {**body, "machineId": body["machineId"].lower()}  # sent in lower case


@pytest.mark.parametrize("years", [range(1, 2101), (2400, 9996, 9999)])
def test_the_event_time_pattern_has_exactly_the_calendars_days(years: Iterable[int]) -> None:
    """Every day 00-32 of months 00-13: the pattern matches exactly the dates the validator accepts (a 31st of a
    short month, 29 February of a year that is not leap, and 30 February are refused by both)."""
    pattern = re.compile(CREATE_REQUEST["properties"]["eventTime"]["pattern"])
    disagree = []
    for year in years:
        for month in range(14):
            for day in range(33):
                event_time = f"{year:04d}-{month:02d}-{day:02d}T16:45:21.7115183Z"
                try:
                    validate_create_alert({**VALID, "eventTime": event_time})
                    accepted = True
                except InvalidInputError:
                    accepted = False
                if (pattern.fullmatch(event_time) is not None) != accepted:
                    disagree.append(event_time)
    assert disagree == []


def test_the_text_pattern_refuses_exactly_what_the_validator_refuses() -> None:
    """Every character but the surrogates (which JSON-schema tools cannot match; the description names them), alone
    and after a letter: the pattern and the validator agree."""
    pattern = CREATE_REQUEST["properties"]["title"]["pattern"]
    assert pattern_disagreements(pattern, lambda text: validate_create_alert({**VALID, "title": text})) == []


def _pattern(parameter_path: str, name: str) -> str:
    parameters = KEYED["paths"][parameter_path]["get"]["parameters"]
    return str(next(p["pattern"] for p in parameters if p["name"] == name))


@settings(max_examples=300, derandomize=True, database=None)
@given(text=st.text(alphabet="0123456789", min_size=1, max_size=21)
       | st.integers(MAX_REPORT_ID - 10**6, MAX_REPORT_ID + 10**6).map(str)
       | st.integers(0, MAX_REPORT_ID).map(lambda n: str(n).zfill(19)))
def test_the_report_id_pattern_is_exactly_the_validators(text: str) -> None:
    documented = re.fullmatch(CREATE_REQUEST["properties"]["reportId"]["pattern"], text) is not None
    try:
        validate_create_alert({**VALID, "reportId": text})
        accepted = True
    except InvalidInputError:
        accepted = False
    assert documented == accepted, text


@settings(max_examples=200, derandomize=True, database=None)
@given(text=st.text(alphabet="0123456789abcdefABCDEFxyz", min_size=30, max_size=70))
def test_file_hash_and_machine_id_patterns_agree_with_the_validator(text: str) -> None:
    machine_id_documented = re.fullmatch(CREATE_REQUEST["properties"]["machineId"]["pattern"], text) is not None
    try:  # the check production runs on a create's machineId
        validate_create_alert({**VALID, "machineId": text})
        machine_id_accepted = True
    except InvalidInputError:
        machine_id_accepted = False
    assert machine_id_documented == machine_id_accepted, text
    file_hash_documented = re.fullmatch(_pattern(openapi.FILE_ALERTS_PATH, "fileHash"), text) is not None
    try:
        validate_file_hash(text)
        file_hash_accepted = True
    except InvalidInputError:
        file_hash_accepted = False
    assert file_hash_documented == file_hash_accepted, text


@pytest.mark.parametrize("file_hash", [
    "6532ec91d513acc05f43ee0aa3002599729fd3e1", "C4BC2CAFDB2881BE3E6912AC60FAD245FCC918F68CED49110166F9DD21603D8A"])
def test_sha1_and_sha256_are_documented_and_accepted(file_hash: str) -> None:
    assert re.fullmatch(_pattern(openapi.FILE_ALERTS_PATH, "fileHash"), file_hash)
    assert validate_file_hash(file_hash).value == file_hash.lower()


def test_md5_is_documented_as_refused() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    assert re.fullmatch(_pattern(openapi.FILE_ALERTS_PATH, "fileHash"), md5) is None
    with pytest.raises(InvalidInputError):
        validate_file_hash(md5)


@settings(max_examples=200, derandomize=True, database=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=140))
def test_the_correlation_id_pattern_is_what_the_gateway_answers_with(text: str) -> None:
    """The answer's X-Correlation-ID has the documented pattern: the caller's id when it matches it (kept), else a new
    one; the request's parameter takes any value (never refused), so it has no pattern."""
    parameters = KEYED["paths"][openapi.OPERATION_PATH]["get"]["parameters"]
    assert "pattern" not in next(p for p in parameters if p["name"] == CORRELATION_HEADER)
    header = KEYED["paths"][openapi.OPERATION_PATH]["get"]["responses"]["200"]["headers"][CORRELATION_HEADER]
    answered = correlation_id_for({CORRELATION_HEADER: text})
    assert re.fullmatch(header["pattern"], answered)
    assert (re.fullmatch(header["pattern"], text) is not None) == (answered == text), text


@settings(max_examples=200, derandomize=True, database=None)
@given(key=st.from_regex(openapi.IDEMPOTENCY_KEY_PATTERN, fullmatch=True))
def test_documented_idempotency_keys_are_accepted(key: str) -> None:
    request = func.HttpRequest("POST", "https://gw.example/api/x", headers={"Idempotency-Key": key}, body=b"")
    assert Incoming(request, "correlation-1", "").idempotency_key


def test_operation_ids_and_names_are_the_codes() -> None:
    assert f"^{OPERATION_ID_PATTERN}$" == openapi.OPERATION_ID_PARAMETER_PATTERN
    assert _pattern(openapi.OPERATION_PATH, "operationId") == openapi.OPERATION_ID_PARAMETER_PATTERN
    operation = KEYED["definitions"]["Operation"]["properties"]
    assert operation["status"]["enum"] == [State.PENDING.value]
    assert set(operation["operation"]["enum"]) == set(OPERATION_NAMES.values())
    assert {openapi.GET_FILE_RELATED_ALERTS, openapi.CREATE_ALERT_BY_REFERENCE, RUN_HUNTING_QUERY} == \
        set(OPERATION_NAMES.values())
    health_apis = KEYED["definitions"]["Health"]["properties"]["apis"]["properties"]
    assert set(health_apis) == {api.value for api in Api}


# --- the routes the app registers ------------------------------------------------------------------------------

_ROUTES_SCRIPT = """
import json
import function_app
from localdev.functions_host import discover_routes
print(json.dumps([{"name": r.name, "pattern": r.pattern.pattern, "methods": sorted(r.methods), "auth": r.auth_level}
                  for r in discover_routes(function_app.app)]))
"""


def registered_routes(auth: AuthMode) -> list[dict[str, Any]]:
    """function_app's HTTP routes as localdev.functions_host discovers them, imported in a child process with
    settings that make no request (Azurite's well-known account on loopback, a closed Defender port)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MDE_", "RATE_LIMIT_", "AzureWebJobsStorage", "IDENTITY_", "AZURE_", "GATEWAY_"))}
    env.update({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MDE_BASE_URL": "http://127.0.0.1:1",
                "GATEWAY_AUTH": auth.value, "PYTHONPATH": str(ROOT)})
    done = subprocess.run([sys.executable, "-c", _ROUTES_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"importing function_app failed:\n{done.stderr}"
    routes: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return routes


def route_template(pattern: str) -> str:
    """The route template back from localdev.functions_host's regex: `^/api/files/(?P<sha1>[^/]+)/alerts/?$` ->
    `/files/{sha1}/alerts`."""
    inner = pattern.removeprefix("^/api/").removesuffix("/?$")
    inner = re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)\??", r"{\1}", inner)
    return "/" + re.sub(r"\\(.)", r"\1", inner)


def shape(path: str) -> str:
    """A path with its parameter names dropped: the route names them for the code, the document for callers."""
    return re.sub(r"\{[^}]*\}", "{}", path).lower()


@pytest.fixture(scope="module", params=list(AuthMode), ids=[mode.value for mode in AuthMode])
def routes_and_document(request: pytest.FixtureRequest) -> tuple[AuthMode, list[dict[str, Any]], Spec]:
    auth: AuthMode = request.param
    return auth, registered_routes(auth), openapi.document(auth)


def test_route_template_reads_the_hosts_regex() -> None:
    assert route_template(r"^/api/files/(?P<sha1>[^/]+)/alerts/?$") == "/files/{sha1}/alerts"
    assert route_template(r"^/api/openapi\.json/?$") == "/openapi.json"


def test_the_document_has_exactly_the_registered_routes(
        routes_and_document: tuple[AuthMode, list[dict[str, Any]], Spec]) -> None:
    auth, routes, spec = routes_and_document
    registered = {(method, shape(route_template(route["pattern"]))): route["name"]
                  for route in routes for method in route["methods"]}
    documented = {(method.upper(), shape(path)): operation["operationId"]
                  for path, method, operation in operations(spec)}
    missing = {f"{method} {path} ({name})" for (method, path), name in documented.items() if (method, path)
               not in registered}
    undocumented = {f"{method} {path} ({name})" for (method, path), name in registered.items() if (method, path)
                    not in documented}
    assert not missing and not undocumented, (
        f"GATEWAY_AUTH={auth}: documented but not registered in function_app: {sorted(missing) or 'none'}; "
        f"registered but not documented: {sorted(undocumented) or 'none'}")
    wrong_names = {key: (documented[key], name) for key, name in registered.items() if documented[key] != name}
    assert not wrong_names, f"operationId differs from the function name (operationId, function): {wrong_names}"


def test_each_operation_asks_for_what_its_route_requires(
        routes_and_document: tuple[AuthMode, list[dict[str, Any]], Spec]) -> None:
    auth, routes, spec = routes_and_document
    levels = {route["name"]: route["auth"] for route in routes}
    for _, _, operation in operations(spec):
        level = levels.get(operation["operationId"])
        if level is None:
            continue  # reported by test_the_document_has_exactly_the_registered_routes
        security = operation.get("security", spec["security"])
        takes_key = any(p["name"] == openapi.FUNCTION_KEY_HEADER for p in operation["parameters"])
        if auth is AuthMode.FUNCTION_KEY:
            assert (security == []) == (level == "anonymous"), (operation["operationId"], level, security)
        else:  # App Service authentication fronts every route; a function key only where the route wants one
            assert security == spec["security"], operation["operationId"]
            assert takes_key == (level in ("function", "admin")), (operation["operationId"], level)


# --- GET /api/openapi.json ---------------------------------------------------------------------------------------

def test_the_served_document_has_the_requests_host() -> None:
    served = openapi.served_document(AuthMode.FUNCTION_KEY, "http://127.0.0.1:7071/api/openapi.json")
    assert (served["host"], served["schemes"]) == ("127.0.0.1:7071", ["http"])
    assert {key: value for key, value in served.items() if key not in ("host", "schemes")} == \
        {key: value for key, value in KEYED.items() if key != "schemes"}
    odd = openapi.served_document(AuthMode.ENTRA, "https://user:pw@evil.example/api/openapi.json")
    assert "host" not in odd and odd["schemes"] == ["https"]
    assert openapi.served_document(AuthMode.ENTRA, "https://gw.example.net/api/openapi.json")["securityDefinitions"] \
        == openapi.document(AuthMode.ENTRA)["securityDefinitions"]


@pytest.fixture
def openapi_function(monkeypatch: pytest.MonkeyPatch) -> Callable[[AuthMode, str], func.HttpResponse]:
    """The function as the Functions host registers it, with the runtime's settings stubbed to an auth mode."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(openapi_fn.bp)
    (function,) = app.get_functions()
    assert function.get_function_name() == openapi.GET_OPENAPI_DOCUMENT
    handler = function.get_user_function()

    def call(auth: AuthMode, url: str) -> func.HttpResponse:
        entra = {"WEBSITE_AUTH_ENABLED": "True"} if auth is AuthMode.ENTRA else {}
        rig = make_edge(settings_env={"GATEWAY_AUTH": auth.value, **entra})
        monkeypatch.setattr(openapi_fn, "edge", lambda: rig.edge)
        response: func.HttpResponse = handler(func.HttpRequest("GET", url, body=b""))
        return response

    return call


def test_the_function_answers_the_served_document(
        openapi_function: Callable[[AuthMode, str], func.HttpResponse]) -> None:
    for auth in AuthMode:
        url = "https://func-mdegw-x.azurewebsites.net/api/openapi.json"
        response = openapi_function(auth, url)
        assert response.status_code == 200 and response.mimetype == "application/json"
        assert json.loads(response.get_body()) == openapi.served_document(auth, url)
