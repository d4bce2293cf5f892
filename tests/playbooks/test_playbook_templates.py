"""The Sentinel playbook templates (playbooks/*/azuredeploy.json) and infra/playbooks.bicep, read statically.

Checks the Azure-Sentinel template shape (metadata, PlaybookName, identity, incident trigger, the
azuresentinel connection with a managed identity), how the playbooks call the gateway (managed
identity for the gateway's audience; the create playbook's asynchronous mode and body), and that the
ARM and workflow expressions are well formed and refer only to what is declared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localdev.simulator import kql
from shared.defender.facts import CATEGORIES, CREATE_ALERT_PATH, CREATE_FIELDS, GATEWAY_GRAPH_HUNTING_PATH
from shared.http import openapi
from shared.http.settings import AuthMode
from tests.infra import bicep_model as bm
from tests.playbooks import actions as pa

ENRICH = "Enrich-Incident-DefenderFileAlerts"
CREATE = "Create-DefenderAlert-FromIncident"
HUNT = "Hunt-And-Alert-DefenderFile"
PLAYBOOKS = {ENRICH, CREATE, HUNT}
#: The gateway's app role of hunting (shared.http.settings.Role.HUNTING_READ).
HUNTING_READ = "Hunting.Read"

METADATA_KEYS = {"title", "description", "prerequisites", "postDeployment", "lastUpdateTime", "entities", "tags",
                 "support", "author"}
GATEWAY_AUTHENTICATION = {"type": "ManagedServiceIdentity", "audience": "[parameters('GatewayAudience')]"}
SENTINEL_CONNECTION = "@parameters('$connections')['azuresentinel']['connectionId']"
PLAYBOOKS_BICEP = bm.INFRA / "playbooks.bicep"


def _template(name: str) -> pa.Template:
    return pa.load(pa.PLAYBOOKS / name / "azuredeploy.json")


def _templates() -> list[tuple[str, pa.Template]]:
    return [(path.parent.name, pa.load(path)) for path in pa.template_paths()]


each_template = pytest.mark.parametrize(("name", "template"), _templates(), ids=[name for name, _ in _templates()])


def _sentinel_calls(template: pa.Template, path: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, action) for name, action in pa.all_actions(template).items()
            if action.get("type") == "ApiConnection" and action["inputs"].get("path") == path]


# --- files and the Azure-Sentinel shape ---------------------------------------------------------------------------


def test_the_expected_playbooks_exist() -> None:
    assert {path.parent.name for path in pa.template_paths()} == PLAYBOOKS


@pytest.mark.parametrize("path", pa.template_paths(), ids=lambda p: p.parent.name)
def test_every_template_parses_as_json(path: Path) -> None:
    template = pa.load(path)
    assert template["$schema"].startswith("https://schema.management.azure.com/schemas/")
    assert template["$schema"].endswith("/deploymentTemplate.json#")
    assert template["contentVersion"] == "1.0.0.0"


@each_template
def test_sentinel_metadata_block(name: str, template: pa.Template) -> None:
    metadata = template["metadata"]
    assert set(metadata) >= METADATA_KEYS, f"missing {METADATA_KEYS - set(metadata)}"
    assert metadata["title"].strip() and len(metadata["description"]) >= 100
    datetime.strptime(metadata["lastUpdateTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert isinstance(metadata["entities"], list) and isinstance(metadata["tags"], list) and metadata["tags"]
    assert metadata["support"]["tier"] in ("community", "microsoft", "partner")
    assert metadata["author"]["name"].strip()
    # The identity wiring, with commands: Sentinel Responder on the workspace, through the gateway's Entra auth.
    post = "\n".join(metadata["postDeployment"])
    for needed in ("Microsoft Sentinel Responder", "az role assignment create", "entraAllowedPrincipalIds",
                   "identity.principalId", "gatewayAuth=entra", "appRoleAssignedTo", "Operations.Read"):
        assert needed in post, f"postDeployment does not mention {needed!r}"
    # The gateway's app role of the playbook's call (shared.http.settings.Role), which its identity must hold.
    assert ("Alerts.Read" if "files/{hash}/alerts" in metadata["description"] else "Alerts.Create") in post
    if "runHuntingQuery" in metadata["description"]:
        assert HUNTING_READ in post and "ThreatHunting.Read.All" in "\n".join(metadata["prerequisites"])


def test_metadata_entities_name_what_the_playbooks_read() -> None:
    assert _template(ENRICH)["metadata"]["entities"] == ["FileHash"]
    assert _template(HUNT)["metadata"]["entities"] == ["FileHash"]


@each_template
def test_playbook_name_parameter_and_hidden_tags(name: str, template: pa.Template) -> None:
    parameter = template["parameters"]["PlaybookName"]
    assert parameter["type"].lower() == "string"
    assert parameter["defaultValue"] == name
    workflow = pa.workflow(template)
    assert workflow["name"] == "[parameters('PlaybookName')]"
    tags = workflow["tags"]
    assert tags["hidden-SentinelTemplateName"] == name
    assert re.fullmatch(r"\d+\.\d+", tags["hidden-SentinelTemplateVersion"])


@each_template
def test_parameters_gateway_url_and_audience_are_required_and_described(name: str, template: pa.Template) -> None:
    parameters = template["parameters"]
    assert {"PlaybookName", "GatewayUrl", "GatewayAudience"} <= set(parameters)
    for required in ("GatewayUrl", "GatewayAudience"):
        assert "defaultValue" not in parameters[required], f"{required} must be given at deployment"
    for parameter, spec in parameters.items():
        assert spec.get("metadata", {}).get("description", "").strip(), f"{parameter} has no description"
        assert not spec["type"].lower().startswith("secure"), f"{parameter}: no secret goes into a playbook"


@each_template
def test_system_assigned_identity(name: str, template: pa.Template) -> None:
    assert pa.workflow(template)["identity"] == {"type": "SystemAssigned"}


@each_template
def test_outputs_the_identity_principal_id(name: str, template: pa.Template) -> None:
    principal = template["outputs"]["principalId"]
    assert principal["type"].lower() == "string"
    assert principal["value"] == ("[reference(resourceId('Microsoft.Logic/workflows', parameters('PlaybookName')), "
                                  "'2017-07-01', 'full').identity.principalId]")


@each_template
def test_sentinel_incident_trigger(name: str, template: pa.Template) -> None:
    triggers = pa.definition(template)["triggers"]
    assert list(triggers) == ["Microsoft_Sentinel_incident"]
    trigger = triggers["Microsoft_Sentinel_incident"]
    assert trigger["type"] == "ApiConnectionWebhook"
    assert trigger["inputs"]["path"] == "/incident-creation"
    assert trigger["inputs"]["body"] == {"callback_url": "@{listCallbackUrl()}"}
    assert trigger["inputs"]["host"]["connection"]["name"] == SENTINEL_CONNECTION


@each_template
def test_azuresentinel_connection_uses_the_managed_identity(name: str, template: pa.Template) -> None:
    connections = pa.resources_of_type(template, "Microsoft.Web/connections")
    assert len(connections) == 1
    connection = connections[0]
    assert connection["properties"]["parameterValueType"] == "Alternative"
    assert connection["properties"]["api"]["id"].endswith("'/managedApis/azuresentinel')]")
    workflow = pa.workflow(template)
    assert f"[resourceId('Microsoft.Web/connections', {connection['name'][1:-1]})]" in workflow["dependsOn"]
    value = workflow["properties"]["parameters"]["$connections"]["value"]
    assert list(value) == ["azuresentinel"]
    assert value["azuresentinel"]["connectionName"] == connection["name"]
    assert value["azuresentinel"]["connectionProperties"] == {"authentication": {"type": "ManagedServiceIdentity"}}
    assert pa.definition(template)["parameters"]["$connections"] == {"defaultValue": {}, "type": "Object"}


@each_template
def test_one_comment_on_the_incident(name: str, template: pa.Template) -> None:
    comments = _sentinel_calls(template, "/Incidents/Comment")
    assert [action_name for action_name, _ in comments] == ["Add_comment_to_incident_(V3)"]
    inputs = comments[0][1]["inputs"]
    assert inputs["method"] == "post"
    assert inputs["host"]["connection"]["name"] == SENTINEL_CONNECTION
    assert inputs["body"]["incidentArmId"] == "@triggerBody()?['object']?['id']"
    assert "variables('Comment')" in inputs["body"]["message"]
    # At the top level, after everything else: it runs once per incident.
    assert "Add_comment_to_incident_(V3)" in pa.definition(template)["actions"]


# --- calls to the gateway -------------------------------------------------------------------------------------------


@each_template
def test_every_http_action_calls_the_gateway_with_the_managed_identity(name: str, template: pa.Template) -> None:
    http = pa.http_actions(template)
    assert http, "no HTTP action"
    for action in http:
        assert action.playbook == name
        assert action.calls_gateway, f"{action.name} calls {action.uri}, not the gateway"
        assert action.uri.startswith(pa.GATEWAY_URL_EXPRESSION)
        assert action.authentication == GATEWAY_AUTHENTICATION, action.name
        retry = action.raw["inputs"].get("retryPolicy", {})
        assert retry.get("type") in ("exponential", "fixed") and int(retry["count"]) >= 3, action.name
        # The asynchronous pattern (202 + Location, polled) stays on.
        assert "DisableAsyncPattern" not in str(action.raw.get("operationOptions", "")), action.name
    # The workflow parameter that starts every URI is given the template's (normalised) GatewayUrl.
    workflow = pa.workflow(template)
    assert pa.definition(template)["parameters"]["GatewayUrl"]["type"] == "String"
    assert workflow["properties"]["parameters"]["GatewayUrl"] == {"value": "[variables('GatewayBaseUrl')]"}


def test_enrich_looks_up_alerts_of_sha1_and_sha256_file_hashes() -> None:
    template = _template(ENRICH)
    http = pa.http_actions(template)
    assert [(a.method, a.path) for a in http] == [("GET", "/api/files/{...}/alerts")]
    lookup = http[0]
    assert lookup.body is None
    assert "encodeUriComponent(items('For_each_hash'))" in lookup.uri
    # The hashes: the incident's FileHash entities, filtered on the algorithm, each looked up once.
    entities = _sentinel_calls(template, "/entities/filehash")
    assert len(entities) == 1
    assert entities[0][1]["inputs"]["body"] == "@triggerBody()?['object']?['properties']?['relatedEntities']"
    actions = pa.all_actions(template)
    assert "createArray('SHA1', 'SHA256')" in actions["Filter_array_-_SHA1_and_SHA256"]["inputs"]["where"]
    assert "['Filehashes']" in actions["Filter_array_-_SHA1_and_SHA256"]["inputs"]["from"]
    assert lookup.name in dict(pa.walk_actions(actions["For_each_hash"]["actions"]))
    # The table's columns; the device falls back to machineId.
    row = actions["Select_alert_rows"]["inputs"]["select"]
    assert set(row) == {"File hash", "Alert id", "Title", "Severity", "Status", "Device"}
    assert row["Device"] == "@{coalesce(item()?['computerDnsName'], item()?['machineId'])}"
    assert actions["Select_alert_rows"]["inputs"]["from"].startswith(f"@coalesce(body('{lookup.name}')?['value']")


def test_create_uses_the_asynchronous_mode_with_an_idempotency_key() -> None:
    http = pa.http_actions(_template(CREATE))
    assert [(a.method, a.path) for a in http] == [("POST", CREATE_ALERT_PATH)]
    create = http[0]
    headers = {key.lower(): value for key, value in create.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["prefer"] == "respond-async"
    key = headers["idempotency-key"]
    assert "systemAlertId" in key and "utcNow" not in key and "guid()" not in key, "the key must be stable"
    # The HTTP action waits for the gateway's final answer (polling Location) at most this long.
    assert re.fullmatch(r"PT\d+[HM]", create.raw["limit"]["timeout"])


def test_create_body_has_exactly_the_documented_fields() -> None:
    create = pa.http_actions(_template(CREATE))[0]
    assert create.body is not None
    assert sorted(create.body) == sorted(CREATE_FIELDS)
    assert len(create.body) == len(CREATE_FIELDS)
    body = create.body
    assert body["category"] == "@{parameters('AlertCategory')}"
    assert body["recommendedAction"] == "@{parameters('RecommendedAction')}"
    for field in ("machineId", "eventTime", "reportId"):
        assert body[field] == f"@{{outputs('Compose_event_reference')?['{field}']}}"
    # Sentinel's severities are Informational, Low, Medium, High: anything but the last three becomes Low.
    assert "createArray('Low', 'Medium', 'High')" in body["severity"] and body["severity"].endswith("'Low')}")


def test_create_reads_the_event_reference_from_the_alerts_custom_details() -> None:
    actions = pa.all_actions(_template(CREATE))
    where = actions["Filter_array_-_alerts_with_event_reference"]["inputs"]["where"]
    for detail in ("ReportId", "Timestamp", "DeviceId"):
        assert f"['{detail}']" in where
    assert "['additionalData']?['Custom Details']" in where
    reference = actions["Compose_event_reference"]["inputs"]
    assert set(reference) == {"reportId", "eventTime", "machineId"}
    assert "['ReportId']" in reference["reportId"]
    assert "['Timestamp']" in reference["eventTime"]
    assert "['DeviceId']" in reference["machineId"]
    assert "['additionalData']?['Custom Details']" in actions["Compose_custom_details"]["inputs"]


def test_create_category_parameter_offers_defenders_categories() -> None:
    parameter = _template(CREATE)["parameters"]["AlertCategory"]
    assert parameter["defaultValue"] == "SuspiciousActivity"
    assert parameter["allowedValues"] == list(CATEGORIES)
    assert "RecommendedAction" in _template(CREATE)["parameters"]


def test_create_comments_every_outcome_including_failures() -> None:
    actions = pa.all_actions(_template(CREATE))
    condition = actions["Condition_-_alert_created"]
    assert set(condition["runAfter"]["Create_Defender_alert"]) == {"Succeeded", "Failed", "TimedOut"}


def test_hunt_runs_one_query_per_file_hash_then_creates_an_alert_per_device() -> None:
    template = _template(HUNT)
    http = pa.http_actions(template)
    assert [(a.method, a.path) for a in http] == [("POST", GATEWAY_GRAPH_HUNTING_PATH), ("POST", CREATE_ALERT_PATH)]
    hunt, create = http
    for action in http:  # both through the gateway's queue, polled: a query may run for minutes
        headers = {key.lower(): value for key, value in action.headers.items()}
        assert headers["content-type"] == "application/json" and headers["prefer"] == "respond-async"
        assert re.fullmatch(r"PT\d+[HM]", action.raw["limit"]["timeout"])
    # Graph's shape, Query alone (the gateway's body: Query and an optional Timespan).
    assert hunt.body is not None and list(hunt.body) == ["Query"]
    # A fresh hunt on each run, but Logic Apps' retries of the hunt (its retryPolicy retries a final 504) get the
    # gateway's kept answer, not a second query at Graph: the hunt's key is the incident, the file and the run.
    hunt_key = {k.lower(): v for k, v in hunt.headers.items()}["idempotency-key"]
    for part in ("triggerBody()?['object']?['name']", "items('For_each_hash')?['Hash']", "workflow()?['run']?['name']"):
        assert part in hunt_key
    assert "utcNow" not in hunt_key and "guid()" not in hunt_key
    # The creates are idempotent per incident, file and device.
    key = {k.lower(): v for k, v in create.headers.items()}["idempotency-key"]
    assert key != hunt_key
    for part in ("triggerBody()?['object']?['name']", "items('For_each_hash')?['Hash']", "items('For_each_device')"):
        assert part in key
    assert "utcNow" not in key and "guid()" not in key
    actions = pa.all_actions(template)
    loop = actions["For_each_hash"]
    assert hunt.name in loop["actions"] and loop["runtimeConfiguration"]["concurrency"]["repetitions"] == 1
    succeeded = loop["actions"]["Condition_-_hunt_succeeded"]
    assert succeeded["expression"] == {"and": [{"equals": ["@outputs('Run_hunting_query')?['statusCode']", 200]}]}
    assert set(succeeded["runAfter"][hunt.name]) == {"Succeeded", "Failed", "TimedOut"}  # a failure is commented
    assert create.name in dict(pa.walk_actions(succeeded["actions"]["For_each_device"]["actions"]))


def test_hunt_creates_on_at_most_max_devices_each_on_its_latest_event() -> None:
    template = _template(HUNT)
    actions = pa.all_actions(template)
    results = "coalesce(body('Run_hunting_query')?['results'], json('[]'))"
    assert actions["Select_device_ids"]["inputs"]["from"] == f"@{results}"
    assert actions["Compose_distinct_devices"]["inputs"] == (
        "@union(body('Select_device_ids'), body('Select_device_ids'))")  # each device once, in the rows' order
    assert actions["Compose_devices"]["inputs"] == (
        "@take(outputs('Compose_distinct_devices'), parameters('MaxDevices'))")
    assert actions["For_each_device"]["foreach"] == "@outputs('Compose_devices')"
    # The rows are newest first (order by Timestamp desc): a device's first row is its latest event.
    events = actions["Filter_array_-_events_of_device"]["inputs"]
    assert events["from"] == f"@{results}"
    assert events["where"] == "@equals(string(item()?['DeviceId']), items('For_each_device'))"
    reference = actions["Compose_event_reference"]["inputs"]
    latest = "first(body('Filter_array_-_events_of_device'))"
    assert reference == {"reportId": f"@{{string({latest}?['ReportId'])}}",
                         "eventTime": f"@{{{latest}?['Timestamp']}}", "machineId": "@{items('For_each_device')}"}
    create = pa.http_actions(template)[1]
    assert create.body is not None and sorted(create.body) == sorted(CREATE_FIELDS)
    for field in ("machineId", "eventTime", "reportId"):
        assert create.body[field] == f"@{{outputs('Compose_event_reference')?['{field}']}}"
    parameter = template["parameters"]["MaxDevices"]
    assert parameter["type"] == "int" and parameter["defaultValue"] == 10 and parameter["minValue"] == 1
    assert template["parameters"]["AlertCategory"]["allowedValues"] == list(CATEGORIES)
    assert pa.definition(template)["parameters"]["MaxDevices"]["type"] == "Int"


#: "Now" for the hunt query's `ago()` (ticks), fixed: the rows below are placed around it.
_NOW = kql.ticks_of(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))


def _event(table: str, ticks: int, report_id: int, **values: str) -> kql.Row:
    """A row of `table` with every column the simulator knows (strings empty unless given)."""
    blank = {name: "" if kind is kql.ColumnType.STRING else 0 for name, kind in kql.TABLES[table]}
    return {**blank, "Timestamp": kql.format_ticks(ticks), "ReportId": report_id, **values}


@pytest.mark.parametrize("table", ["DeviceFileEvents", "DeviceProcessEvents", "DeviceEvents"])
@pytest.mark.parametrize(("column", "file_hash"), [("SHA1", "a" * 40), ("SHA256", "b" * 64)])
def test_hunt_query_is_one_the_simulators_own_parser_runs(table: str, column: str, file_hash: str) -> None:
    """The hunt playbook's query, its parameters filled in, parsed by the simulator's KQL parser
    (localdev.simulator.kql, the subset it answers, as Graph parses it) and run over events: the file's events
    within the lookback, newest first, at most MaxEvents, with the columns a create by reference needs. A query
    outside the subset fails here with the parser's message, so the playbook and the simulator cannot drift."""
    template = _template(HUNT)
    assert sorted(template["parameters"]["HuntingTable"]["allowedValues"]) == sorted(kql.TABLES)
    hunt = pa.http_actions(template)[0]
    assert hunt.body is not None
    samples = {"parameters('HuntingTable')": table, "items('For_each_hash')?['Column']": column,
               "items('For_each_hash')?['Hash']": file_hash, "parameters('LookbackDays')": "7",
               "parameters('MaxEvents')": "2"}
    text = str(hunt.body["Query"])
    for inner in pa.interpolations(text):
        text = text.replace("@{" + inner + "}", samples[inner], 1)
    query = kql.parse(text, _NOW)  # KqlError (Graph's 400 locally) when the simulator could not run it
    assert query.table == table
    assert {"Timestamp", "ReportId", "DeviceId"} <= {name for name, _ in query.schema}  # what a create needs
    day = 86_400 * kql.TICKS_PER_SECOND
    events = [_event(table, _NOW - 1 * day, 1, **{column: file_hash.upper()}),  # the hash in any case
              _event(table, _NOW - 2 * day, 2, **{column: file_hash}),
              _event(table, _NOW - 1 * day + 1, 3, **{column: file_hash}),  # the newest
              _event(table, _NOW - 8 * day, 4, **{column: file_hash}),  # beyond LookbackDays
              _event(table, _NOW - 1 * day, 5, **{column: "c" * len(file_hash)})]  # another file
    assert [row["ReportId"] for row in kql.run(query, events)] == [3, 1]  # newest first, MaxEvents of them
    for name, low, high in (("LookbackDays", 1, 30), ("MaxEvents", 1, 10000)):
        parameter = template["parameters"][name]
        assert parameter["type"] == "int" and (parameter["minValue"], parameter["maxValue"]) == (low, high)


def test_hunt_puts_only_well_formed_hashes_into_its_query() -> None:
    """A FileHash entity's value goes into a KQL string literal: anything that could end it is removed, and only a
    value of a SHA-1's or SHA-256's length is hunted."""
    actions = pa.all_actions(_template(HUNT))
    assert "createArray('SHA1', 'SHA256')" in actions["Filter_array_-_SHA1_and_SHA256"]["inputs"]["where"]
    cleaned = actions["Select_hashes"]["inputs"]["select"]["Hash"]
    for removed in ("'\"'", "'\\'", "''''"):  # a double quote, a backslash, a single quote
        assert f"{removed}, '')" in cleaned, removed
    where = actions["Filter_array_-_well_formed_hashes"]["inputs"]["where"]
    assert where == "@equals(length(item()?['Hash']), if(equals(item()?['Column'], 'SHA256'), 64, 40))"
    assert actions["Compose_distinct_hashes"]["inputs"].startswith("@union(body('Filter_array_-_well_formed_hashes')")
    assert actions["For_each_hash"]["foreach"] == "@outputs('Compose_distinct_hashes')"


# --- expressions ----------------------------------------------------------------------------------------------------


@each_template
@pytest.mark.parametrize("expressions_of", [pa.arm_expressions, pa.workflow_expressions], ids=["arm", "workflow"])
def test_expressions_are_balanced(name: str, template: pa.Template,
                                  expressions_of: Callable[[pa.Template], Iterator[tuple[str, str]]]) -> None:
    expressions = list(expressions_of(template))
    assert expressions
    problems = [f"{where}: {problem}: {text}" for where, text in expressions
                if (problem := pa.balance_problem(text))]
    assert not problems, "\n".join(problems)


@each_template
def test_every_parameter_and_variable_used_is_declared(name: str, template: pa.Template) -> None:
    arm = [text for _, text in pa.arm_expressions(template)]
    arm_parameters = {p for text in arm for p in pa.called_with(text, "parameters")}
    arm_variables = {v for text in arm for v in pa.called_with(text, "variables")}
    assert arm_parameters <= set(template["parameters"]), arm_parameters - set(template["parameters"])
    assert arm_variables <= set(template.get("variables", {})), arm_variables - set(template.get("variables", {}))
    assert set(template["parameters"]) <= arm_parameters, "a template parameter is never used"

    definition = pa.definition(template)
    workflow = [text for _, text in pa.workflow_expressions(template)]
    workflow_parameters = {p for text in workflow for p in pa.called_with(text, "parameters")}
    assert workflow_parameters <= set(definition["parameters"]), workflow_parameters - set(definition["parameters"])
    # Each workflow parameter is given a value by the template.
    given = set(pa.workflow(template)["properties"]["parameters"])
    assert set(definition["parameters"]) == given

    initialized = {variable["name"] for action in pa.all_actions(template).values()
                   if action["type"] == "InitializeVariable" for variable in action["inputs"]["variables"]}
    used = {v for text in workflow for v in pa.called_with(text, "variables")}
    set_or_appended = {action["inputs"]["name"] for action in pa.all_actions(template).values()
                       if action["type"] in ("SetVariable", "AppendToArrayVariable", "AppendToStringVariable")}
    assert used | set_or_appended <= initialized, (used | set_or_appended) - initialized


@each_template
def test_workflow_expressions_refer_to_actions_that_exist(name: str, template: pa.Template) -> None:
    actions = pa.all_actions(template)
    loops = {action_name for action_name, action in actions.items() if action["type"] == "Foreach"}
    for _, text in pa.workflow_expressions(template):
        for function in ("body", "outputs", "actions"):
            for target in pa.called_with(text, function):
                assert target in actions, f"{function}('{target}') names no action"
        for target in pa.called_with(text, "items"):
            assert target in loops, f"items('{target}') names no Foreach"
    for action_name, action in actions.items():
        for before in action.get("runAfter", {}):
            assert before in actions, f"{action_name} runs after {before}, which does not exist"


def test_interpolations_and_paths_of_the_helper() -> None:
    assert pa.interpolations("a@{f('}')}b@{g({x})}c@@{literal}") == ["f('}')", "g({x})"]
    assert pa.gateway_path("@{parameters('GatewayUrl')}/api/files/@{encodeUriComponent(items('x'))}/alerts") == (
        "/api/files/{...}/alerts")
    assert pa.gateway_path("https://example.com/api/files/x/alerts") is None
    assert pa.balance_problem("concat('a(', parameters('x'))") is None
    assert pa.balance_problem("concat('it''s', parameters('x')") == "unclosed '('"
    assert pa.called_with("parameters('A') and parameters( 'it''s' )", "parameters") == ["A", "it's"]
    with pytest.raises(ValueError, match="unclosed"):
        pa.interpolations("@{concat('a'")


# --- infra/playbooks.bicep ------------------------------------------------------------------------------------------


def test_playbooks_bicep_deploys_each_template_as_a_module() -> None:
    tree = bm.parse(PLAYBOOKS_BICEP)
    assert not tree.get("resources")
    modules = tree["modules"]
    paths = {module["detail"]["path"] for module in modules.values()}
    assert paths == {f"../playbooks/{name}/azuredeploy.json" for name in PLAYBOOKS}
    for module_name, module in modules.items():
        target = pa.load((bm.INFRA / module["detail"]["path"]).resolve())
        passed = set(bm.body(module)["params"])
        declared = set(target["parameters"])
        required = {p for p, spec in target["parameters"].items() if "defaultValue" not in spec}
        assert passed <= declared, f"module {module_name} passes undeclared params {passed - declared}"
        assert required <= passed, f"module {module_name} misses required params {required - passed}"
        assert "PlaybookName" in passed


def test_playbooks_bicep_outputs_the_principal_ids_the_templates_output() -> None:
    tree = bm.parse(PLAYBOOKS_BICEP)
    modules = tree["modules"]
    principal_outputs = {name: output for name, output in tree["outputs"].items() if name.endswith("PrincipalId")}
    assert len(principal_outputs) == len(modules)
    for output in principal_outputs.values():
        module_name, rest = bm.property_access(output["value"]) or (None, None)
        assert module_name in modules
        assert bm.property_access(rest) == ("outputs", "principalId")
        target = pa.load((bm.INFRA / modules[module_name]["detail"]["path"]).resolve())
        assert "principalId" in target["outputs"]


def test_playbooks_bicep_category_choices_match_defender() -> None:
    parameter = bm.parse(PLAYBOOKS_BICEP)["parameters"]["alertCategory"]
    assert bm.decorators(parameter)["allowed"] == list(CATEGORIES)
    assert parameter["default"] == "SuspiciousActivity"


@pytest.mark.parametrize("name", sorted(PLAYBOOKS))
def test_each_playbook_acts_for_the_home_tenant_or_the_customer_tenant_it_is_given(name: str) -> None:
    """Many tenants: CustomerTenant (empty by default: the home tenant) chooses /api or /api/tenants/<tenant>, and
    each gateway call's tenant form is an operation of the gateway's document too."""
    template = _template(name)
    assert template["parameters"]["CustomerTenant"]["defaultValue"] == ""
    assert template["variables"]["GatewayApiPath"] == ("[if(empty(parameters('CustomerTenant')), '/api', "
                                                       "concat('/api/tenants/', parameters('CustomerTenant')))]")
    calls = [action for action in pa.http_actions(template) if action.calls_gateway]
    assert calls and all(pa.GATEWAY_API_EXPRESSION in action.uri for action in calls)
    documented = set(openapi.document(AuthMode.ENTRA)["paths"])
    for action in calls:
        tenant_path = pa.gateway_path(action.uri, "/api/tenants/" + pa.DYNAMIC_SEGMENT)
        assert tenant_path is not None
        shape = re.sub(r"\{[^}]*\}", "{}", tenant_path.removeprefix("/api"))
        assert shape in {re.sub(r"\{[^}]*\}", "{}", known) for known in documented}, tenant_path
