"""What the templates deploy: identity, roles, hardening, Flex Consumption, Entra ID, Defender roles."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.asynchronous.queue_names import MAX_REQUESTS_QUEUE_LENGTH, POISON_SUFFIX, waiting_suffix
from shared.catalogue import CATALOGUE_BY_NAME
from shared.defender.clouds import CLOUDS
from shared.defender.facts import API_FACTS, GRAPH_APP_ID, Api, Service
from tests.infra import bicep_model as bm

# Built-in Azure role definitions (the same ids in every tenant and cloud).
BUILT_IN_ROLES = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
# The Defender app roles the deployment grants: the alert roles, and File.Read.All for the file information API
# (GET /api/files/{id}) that resolves a SHA-256 to its SHA-1.
DEFENDER_APP_ROLES = ["Alert.Read.All", "Alert.ReadWrite.All", "File.Read.All"]
PLAYBOOKS_BICEP = bm.INFRA / "playbooks.bicep"


def _param(name: str) -> dict[str, Any]:
    return dict(bm.main()["parameters"][name])


def _var(name: str) -> Any:
    return bm.main()["variables"][name]["value"]


def _site() -> dict[str, Any]:
    return bm.the_resource(bm.module("functionApp"), "Microsoft.Web/sites")[1]


def test_main_composes_one_module_per_concern_and_passes_each_its_own_names() -> None:
    """Storage, monitoring, the function app and the roles each in a module of their own; every setting-like value
    goes to the module under the name main knows it by (the assertions below read it there)."""
    modules = bm.main()["modules"]
    assert {name: module["detail"]["path"] for name, module in modules.items()} == {
        "storage": "storage.bicep", "monitoring": "monitoring.bicep", "functionApp": "function-app.bicep",
        "entraAuth": "entra-auth.bicep", "playbooks": "playbooks.bicep", "roles": "roles.bicep",
        "observability": "observability.bicep", "federatedCredential": "federated-credential.bicep",
        "defenderAppRoles": "defender-roles.bicep"}
    for symbol in ("storage", "monitoring", "functionApp", "roles", "observability"):
        assert bm.condition(modules[symbol]) is None, f"{symbol} is conditional"
    same_names = {
        "storage": ["storageAccountName", "location", "deploymentContainerName", "rateLimitTableName",
                    "answerCacheTableName", "fileHashTableName", "operationsTableName", "requestsQueueName"],
        "monitoring": ["logAnalyticsName", "appInsightsName", "location", "logRetentionInDays"],
        "functionApp": ["functionAppName", "planName", "location", "identityType", "deploymentContainerName",
                        "pythonVersion", "maximumInstanceCount", "instanceMemoryMB", "httpPerInstanceConcurrency",
                        "waitingFunctionsAlwaysReady", "zoneRedundant"],
        "roles": ["identityPrincipalId", "identityKey"],
    }
    for symbol, names in same_names.items():
        params = bm.module_params(symbol)
        assert {name: params[name] for name in names} == {name: name for name in names}, symbol
    assert bm.module_params("storage")["skuName"] == "storageSkuName"
    for symbol in ("storage", "monitoring", "functionApp"):
        assert bm.module_params(symbol)["tags"] == "baseTags"
    # The storage account by the storage module's output: the app and the roles wait for it.
    assert bm.module_output(bm.module_params("functionApp")["storageAccountName"]) == ("storage", "name")
    assert bm.module_output(bm.module_params("roles")["storageAccountName"]) == ("storage", "name")
    assert bm.module_output(bm.module_params("roles")["appInsightsName"]) == ("monitoring", "appInsightsName")
    # Main deploys no storage, monitoring, app or role resource itself: the identity, the settings and references.
    kinds = {resource["type"] for resource in bm.main()["resources"].values()}
    assert kinds == {"Microsoft.ManagedIdentity/userAssignedIdentities", "Microsoft.Web/sites/config",
                     "Microsoft.Web/sites", "Microsoft.Insights/components"}
    assert all(bm.main()["resources"][name].get("existing") for name in ("site", "appInsights"))


def test_main_targets_a_resource_group() -> None:
    assert bm.main()["globals"]["scope"]["value"] == "resourceGroup"


# --- identity -------------------------------------------------------------------------------------


def test_identity_is_system_assigned_by_default_and_user_assigned_on_request() -> None:
    identity_type = _param("identityType")
    assert identity_type["default"] == "SystemAssigned"
    assert set(bm.decorators(identity_type)["allowed"]) == {"SystemAssigned", "UserAssigned"}
    assert bm.operator(_var("useUserAssigned"), "equals") == {"operand_1": "identityType", "operand_2": "UserAssigned"}

    identity = bm.unquote_keys(_site()["identity"])
    assert identity["type"] == "identityType"
    user_assigned = bm.operator(identity["userAssignedIdentities"], "conditional")
    assert user_assigned is not None and user_assigned["condition"] == "useUserAssigned"
    assert user_assigned["true_value"] == {"${userAssignedIdentityId}": {}}
    assert user_assigned["false_value"] is None
    app = bm.module("functionApp")
    assert bm.operator(app["variables"]["useUserAssigned"]["value"], "equals") == {
        "operand_1": "identityType", "operand_2": "UserAssigned"}
    passed = bm.operator(bm.module_params("functionApp")["userAssignedIdentityId"], "conditional")
    assert passed is not None and passed["condition"] == "useUserAssigned" and passed["false_value"] == ""
    assert bm.property_access(passed["true_value"]) == ("userAssignedIdentity", "id")

    uami = bm.resources_of_type(bm.main(), "Microsoft.ManagedIdentity/userAssignedIdentities")
    assert list(uami) == ["userAssignedIdentity"]
    assert bm.condition(uami["userAssignedIdentity"]) == "useUserAssigned"


def test_identity_principal_and_key_follow_the_identity_type() -> None:
    principal = bm.operator(_var("identityPrincipalId"), "conditional")
    assert principal is not None and principal["condition"] == "useUserAssigned"
    assert bm.property_access(principal["false_value"]) == (
        "functionApp",
        {"operator": {"type": "property_accessor", "operands": {"operand_1": "outputs", "operand_2": "principalId"}}},
    )
    # The module's principalId is the site's system-assigned identity (empty with a user-assigned one).
    output = bm.operator(bm.module("functionApp")["outputs"]["principalId"]["value"], "conditional")
    assert output is not None and output["condition"] == "useUserAssigned" and output["true_value"] == ""
    assert bm.property_access(output["false_value"]) == (
        "functionApp",
        {"operator": {"type": "property_accessor", "operands": {"operand_1": "identity", "operand_2": "principalId"}}},
    )
    key = bm.operator(_var("identityKey"), "conditional")
    assert key is not None
    assert bm.property_access(key["true_value"]) == ("userAssignedIdentity", "id")
    # The app's resource id, known at the start of the deployment (a module's output is not).
    site_id = bm.function_call(key["false_value"], "resource_id")
    assert site_id is not None
    assert (site_id["resource_type"], site_id["resource_name_1"]) == ("Microsoft.Web/sites", "functionAppName")
    assert bm.body(bm.module("functionApp")["resources"]["functionApp"])["name"] == "functionAppName"


# --- role assignments ----------------------------------------------------------------------------


def test_role_assignments_are_exactly_the_data_and_telemetry_roles_each_on_its_resource() -> None:
    assert bm.resources_of_type(bm.main(), "Microsoft.Authorization/roleAssignments") == {}  # roles.bicep's
    roles = bm.module("roles")
    assignments = bm.resources_of_type(roles, "Microsoft.Authorization/roleAssignments")
    granted: set[tuple[str, str]] = set()
    for name, resource in assignments.items():
        assert bm.condition(resource) is None, f"{name} is conditional"
        spec = bm.body(resource)
        role_var = bm.function_call(spec["properties"]["roleDefinitionId"], "subscription_resource_id")
        assert role_var is not None, f"{name}: roleDefinitionId is not subscriptionResourceId(...)"
        assert role_var["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        role_id = roles["variables"][role_var["resource_name_1"]]["value"]
        role = next((r for r, rid in BUILT_IN_ROLES.items() if rid == role_id), None)
        assert role is not None, f"{name}: unexpected role definition {role_id}"

        # guid(<scope>.id, <identity key>, <role id>): stable across re-deployments, unique per role.
        name_args = bm.function_call(spec["name"], "guid")
        assert name_args == {
            "base_string": {"operator": {"type": "property_accessor",
                                         "operands": {"operand_1": spec["scope"], "operand_2": "id"}}},
            "extra_string_1": "identityKey",
            "extra_string_2": role_var["resource_name_1"],
        }, f"{name}: name is not guid(scope.id, identityKey, roleId)"
        assert spec["properties"]["principalId"] == "identityPrincipalId"
        assert spec["properties"]["principalType"] == "ServicePrincipal"
        granted.add((spec["scope"], role))

    assert granted == {
        ("storage", "Storage Blob Data Owner"),
        ("resultsContainer", "Storage Blob Data Contributor"),  # the gateway's large answers: that container alone
        ("storage", "Storage Queue Data Contributor"),
        ("storage", "Storage Table Data Contributor"),
        ("appInsights", "Monitoring Metrics Publisher"),
    }
    assert len(assignments) == 5
    # The scopes are the gateway's own account, its results container and component, as main passes their names.
    existing = {name: bm.body(resource)["name"] for name, resource in roles["resources"].items()
                if resource.get("existing")}
    assert existing == {"storage": "storageAccountName", "blobService": "default",
                        "resultsContainer": "resultsContainerName", "appInsights": "appInsightsName"}
    assert bm.body(roles["resources"]["blobService"])["parent"] == "storage"
    assert bm.body(roles["resources"]["resultsContainer"])["parent"] == "blobService"
    assert bm.module_output(bm.module_params("roles")["resultsContainerName"]) == ("storage", "resultsContainerName")


def test_results_container_role_is_described_with_the_account_wide_owner_that_reaches_it_too() -> None:
    """The identity's Storage Blob Data Owner is account-wide (the Functions host's), so nothing may say the
    results container is reached through its own Contributor assignment alone."""
    assert bm.body(bm.module("roles")["resources"]["blobDataOwner"])["scope"] == "storage"  # the whole account
    description = bm.decorators(bm.main()["parameters"]["resultsContainerName"])["description"]
    assert "Storage Blob Data Owner" in description and "whole account" in description
    for path in [*bm.bicep_files(), *sorted((bm.INFRA.parent / "docs").glob("*.md"))]:
        text = " ".join(path.read_text(encoding="utf-8").split())
        assert not re.search(r"container alone(?![^.]*Owner)", text), f"{path.name}: 'container alone' unqualified"


# --- storage ---------------------------------------------------------------------------------------


def test_storage_account_is_hardened() -> None:
    name, storage = bm.the_resource(bm.module("storage"), "Microsoft.Storage/storageAccounts")
    assert name == "storage"
    props = storage["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowCrossTenantReplication"] is False
    assert storage["kind"] == "StorageV2"


def test_storage_account_name_is_valid_for_azure() -> None:
    """'st...' + uniqueString(): 3-24 lowercase letters and digits (checkov cannot see it)."""
    _, storage = bm.the_resource(bm.module("storage"), "Microsoft.Storage/storageAccounts")
    assert storage["name"] == "storageAccountName"
    template = bm.resolve(bm.module_params("storage")["storageAccountName"], bm.main())
    match = re.fullmatch(r"([a-z0-9]+)\$\{resourceToken\}", template)
    assert match, template
    token = bm.function_call(_var("resourceToken"), "to_lower")
    assert token is not None and bm.function_call(token["string_to_change"], "unique_string") is not None
    assert 3 <= len(match.group(1)) + 13 <= 24  # uniqueString() is 13 characters


def test_deployment_and_results_containers_and_the_tables_exist() -> None:
    containers = bm.resources_of_type(bm.module("storage"), "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {name: bm.body(container)["name"] for name, container in containers.items()} == {
        "deploymentContainer": "deploymentContainerName", "resultsContainer": "resultsContainerName"}
    for container in containers.values():
        assert bm.body(container)["properties"]["publicAccess"] == "None"
    assert _param("resultsContainerName")["default"] == CATALOGUE_BY_NAME["RESULTS_CONTAINER"].default

    tables = bm.resources_of_type(bm.module("storage"), "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert sorted(bm.body(t)["name"] for t in tables.values()) == [
        "answerCacheTableName", "fileHashTableName", "operationsTableName", "rateLimitTableName"]
    table_param = _param("rateLimitTableName")
    assert table_param["default"] == "mdegatewayratelimits"
    assert table_param["default"] == CATALOGUE_BY_NAME["RATE_LIMIT_TABLE"].default
    assert _param("answerCacheTableName")["default"] == CATALOGUE_BY_NAME["ANSWER_CACHE_TABLE"].default
    assert str(_param("fileAlertsCacheSeconds")["default"]) == CATALOGUE_BY_NAME["FILE_ALERTS_CACHE_SECONDS"].default


# --- monitoring ------------------------------------------------------------------------------------


def test_telemetry_is_entra_only() -> None:
    _, insights = bm.the_resource(bm.module("monitoring"), "Microsoft.Insights/components")
    assert insights["properties"]["DisableLocalAuth"] is True
    assert bm.property_access(insights["properties"]["WorkspaceResourceId"]) == ("logAnalytics", "id")
    _, workspace = bm.the_resource(bm.module("monitoring"), "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True


# --- Flex Consumption plan and the function app -----------------------------------------------------


def test_plan_is_flex_consumption_on_linux() -> None:
    _, plan = bm.the_resource(bm.module("functionApp"), "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True


def test_function_app_is_python_on_flex_with_identity_authenticated_deployment_storage() -> None:
    """The Python version, the instance count and the memory are parameters (test_deploy_defaults.py: their
    defaults and ranges)."""
    site = _site()
    assert site["kind"] == "functionapp,linux"
    assert bm.property_access(site["properties"]["serverFarmId"]) == ("plan", "id")
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"] == "${storage.properties.primaryEndpoints.blob}${deploymentContainerName}"
    auth = bm.operator(storage["authentication"], "conditional")
    assert auth is not None and auth["condition"] == "useUserAssigned"
    assert auth["false_value"] == {"type": "SystemAssignedIdentity"}
    assert auth["true_value"]["type"] == "UserAssignedIdentity"
    assert auth["true_value"]["userAssignedIdentityResourceId"] == "userAssignedIdentityId"

    scale = config["scaleAndConcurrency"]
    assert {key: scale[key] for key in ("maximumInstanceCount", "instanceMemoryMB")} == {
        "maximumInstanceCount": "maximumInstanceCount", "instanceMemoryMB": "instanceMemoryMB"}
    assert scale["triggers"] == {"http": {"perInstanceConcurrency": "httpPerInstanceConcurrency"}}


def test_function_app_transport_and_publishing_are_locked_down() -> None:
    site = _site()
    props = site["properties"]
    assert props["httpsOnly"] is True
    site_config = props["siteConfig"]
    assert site_config["minTlsVersion"] == "1.2"
    assert site_config["scmMinTlsVersion"] == "1.2"
    assert site_config["ftpsState"] == "Disabled"

    policies = bm.resources_of_type(bm.module("functionApp"), "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    by_name = {bm.body(p)["name"]: bm.body(p) for p in policies.values()}
    assert set(by_name) == {"ftp", "scm"}
    for policy in by_name.values():
        assert policy["parent"] == "functionApp"
        assert policy["properties"] == {"allow": False}
        assert bm.condition(next(p for p in policies.values() if bm.body(p) is policy)) is None


def test_mde_cloud_parameter_offers_exactly_the_clouds_the_code_knows() -> None:
    cloud = _param("mdeCloud")
    assert set(bm.decorators(cloud)["allowed"]) == set(CLOUDS)
    assert cloud["default"] == CATALOGUE_BY_NAME["MDE_CLOUD"].default


def test_tags_mark_the_environment_and_the_azd_service() -> None:
    base_tags = bm.unquote_keys(_var("baseTags"))
    assert {"azd-env-name": "environmentName"} in list(bm.walk(base_tags))
    assert {"azd-service-name": "api"} in list(bm.walk(bm.unquote_keys(_site()["tags"])))


def test_outputs_tell_what_was_deployed() -> None:
    outputs = set(bm.main()["outputs"])
    assert {
        "FUNCTION_APP_NAME", "FUNCTION_APP_HOSTNAME", "FUNCTION_APP_URL", "IDENTITY_PRINCIPAL_ID",
        "IDENTITY_CLIENT_ID", "STORAGE_ACCOUNT_NAME", "APPLICATIONINSIGHTS_NAME", "RATE_LIMIT_TABLE",
        "GATEWAY_AUTH",
    } <= outputs
    assert not [name for name in outputs if re.search(r"KEY|SECRET|PASSWORD|CONNECTION", name)]


# --- Entra ID (App Service authentication) ----------------------------------------------------------


def test_entra_auth_is_deployed_only_with_gateway_auth_entra() -> None:
    gateway_auth = _param("gatewayAuth")
    assert set(bm.decorators(gateway_auth)["allowed"]) == {"function-key", "entra"}
    assert gateway_auth["default"] == CATALOGUE_BY_NAME["GATEWAY_AUTH"].default == "function-key"
    assert bm.operator(_var("useEntra"), "equals") == {"operand_1": "gatewayAuth", "operand_2": "entra"}

    module = bm.main()["modules"]["entraAuth"]
    assert module["detail"]["path"] == "entra-auth.bicep"
    assert bm.condition(module) == "useEntra"
    params = bm.body(module)["params"]
    assert params["clientId"] == "entraClientId"
    assert params["allowedApplications"] == "entraAllowedApplications"
    assert params["allowedAudiences"] == "entraAudiences"
    # The user's principals first, then the playbooks' (test_playbook_identities_are_allowed_through_entra_auth).
    assert params["allowedPrincipalIds"] == "allowedPrincipalIds"
    principals = bm.function_call(_var("allowedPrincipalIds"), "concat")
    assert principals is not None and principals["arg_1"] == "entraAllowedPrincipalIds"
    # No auth config in main: the module is the only way Entra ID gets switched on (main's own is the app settings).
    configs = bm.resources_of_type(bm.main(), "Microsoft.Web/sites/config")
    assert [bm.body(config)["name"] for config in configs.values()] == ["appsettings"]


def test_entra_auth_validates_tokens_returns_401_and_needs_no_secret() -> None:
    path = bm.INFRA / "entra-auth.bicep"
    tree = bm.parse(path)
    _, auth = bm.the_resource(tree, "Microsoft.Web/sites/config")
    assert auth["name"] == "authsettingsV2"
    assert auth["parent"] == "functionApp"
    props = auth["properties"]
    assert props["platform"] == {"enabled": True}
    assert props["globalValidation"] == {"requireAuthentication": True, "unauthenticatedClientAction": "Return401"}
    assert props["httpSettings"] == {"requireHttps": True}
    assert props["login"]["tokenStore"] == {"enabled": False}
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"] == {"clientId": "clientId", "openIdIssuer": "openIdIssuer"}
    validation = aad["validation"]
    assert validation["allowedAudiences"] == "allowedAudiences"
    assert validation["defaultAuthorizationPolicy"] == {
        "allowedApplications": "allowedApplications",
        "allowedPrincipals": {"identities": "allowedPrincipalIds"},
    }
    assert "clientSecret" not in bm.code_lines(path)
    client_id = bm.decorators(tree["parameters"]["clientId"])
    assert client_id["min_length"] == client_id["max_length"] == 36  # an empty client id fails the deployment


# --- Defender for Endpoint app roles (Microsoft Graph) ---------------------------------------------


def test_defender_roles_are_optional_in_main() -> None:
    module = bm.main()["modules"]["defenderAppRoles"]
    assert module["detail"]["path"] == "defender-roles.bicep"
    assert bm.condition(module) == "grantDefenderAppRoles"
    assert _param("grantDefenderAppRoles")["default"] is False
    assert bm.body(module)["params"] == {"principalId": "identityPrincipalId"}


#: Each service principal the upstream roles are granted on: its appId, the parameter listing the roles, and the
#: roles granted by default.
UPSTREAM_ROLE_GRANTS = {
    Service.DEFENDER: (DEFENDER_APP_ID, "appRoleValues", DEFENDER_APP_ROLES),
    Service.GRAPH: (GRAPH_APP_ID, "graphAppRoleValues", ["ThreatHunting.Read.All"]),
}


@pytest.mark.parametrize("service", list(UPSTREAM_ROLE_GRANTS))
def test_defender_roles_grants_each_services_roles_on_its_service_principal_by_value(service: Service) -> None:
    """WindowsDefenderATP's roles on its service principal, Microsoft Graph's (ThreatHunting.Read.All: advanced
    hunting through Graph) on Graph's: each role id looked up by value, never hard-coded."""
    tree = bm.parse(bm.INFRA / "defender-roles.bicep")
    assert set(tree.get("extensions", {})) == {"microsoftGraphV1"}
    app_id, parameter, default = UPSTREAM_ROLE_GRANTS[service]
    assert tree["parameters"][parameter]["default"] == default

    principals = bm.resources_of_type(tree, "Microsoft.Graph/servicePrincipals")
    assert len(principals) == len(UPSTREAM_ROLE_GRANTS)
    (sp_name,) = [name for name, sp in principals.items() if bm.resolve(bm.body(sp)["appId"], tree) == app_id]
    assert tree["resources"][sp_name]["existing"] is True

    assignments = bm.resources_of_type(tree, "Microsoft.Graph/appRoleAssignedTo")
    assert len(assignments) == len(UPSTREAM_ROLE_GRANTS)
    (element,) = [element for element in assignments.values()
                  if element["config"]["loop_type"]["detail"]["array_name"] == parameter]
    assert element["config"]["loop_type"]["detail"] == {"item_name": "roleValue", "array_name": parameter}
    spec = bm.body(element)
    assert spec["principalId"] == "principalId"
    assert bm.property_access(spec["resourceId"]) == (sp_name, "id")
    # appRoleId = filter(<sp>.appRoles, role => role.value == roleValue)[0].id: looked up, not hard-coded.
    lookups = [n for n in bm.walk(spec["appRoleId"]) if bm.function_call(n, "filter") is not None]
    assert len(lookups) == 1
    lookup = bm.function_call(lookups[0], "filter")
    assert lookup is not None
    assert bm.property_access(lookup["input_array"]) == (sp_name, "appRoles")
    assert {"operand_1": "value", "operand_2": "roleValue"} in [
        bm.operator(n, "equals") for n in bm.walk(lookup["expression"])
    ]
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", str(spec)), "a hard-coded role id"


def test_defender_roles_default_covers_every_api_the_gateway_calls_on_the_service_that_serves_it() -> None:
    """Each API in shared/defender/facts.py needs one of its roles among the defaults of its service's principal
    (File.Read.All: SHA-256 lookups; ThreatHunting.Read.All on Microsoft Graph: hunting)."""
    parameters = bm.parse(bm.INFRA / "defender-roles.bicep")["parameters"]
    granted = {service: set(parameters[parameter]["default"])
               for service, (_, parameter, _) in UPSTREAM_ROLE_GRANTS.items()}
    uncovered = {api.value: facts.roles for api, facts in API_FACTS.items()
                 if not granted[facts.service] & set(facts.roles)}
    assert not uncovered, f"no default app role allows {uncovered}"
    for service, roles in granted.items():
        assert roles == {role for facts in API_FACTS.values() if facts.service is service for role in facts.roles}


# --- Microsoft Sentinel playbooks (playbooks.bicep) -------------------------------------------------


def _playbook_principal_outputs() -> set[str]:
    """The outputs of playbooks.bicep that name a playbook identity."""
    return {name for name in bm.parse(PLAYBOOKS_BICEP)["outputs"] if name.endswith("PrincipalId")}


def _playbooks_output(node: Any) -> str | None:
    """``x`` when ``node`` is ``playbooks.outputs.x`` (pycep drops the ``!`` of ``playbooks!.outputs.x``)."""
    access = bm.property_access(node)
    if access is None or access[0] != "playbooks":
        return None
    rest = bm.property_access(access[1])
    return str(rest[1]) if rest is not None and rest[0] == "outputs" else None


#: Variables true only when the playbooks module is deployed (each implies usePlaybooks; checked below).
_PLAYBOOK_GUARDS = ("usePlaybooks", "addPlaybookPrincipals")


def _unguarded_playbooks_references(node: Any, guarded: bool = False) -> list[Any]:
    """References to the conditional module ``playbooks`` outside the true branch of a guard (``usePlaybooks ?``)."""
    if isinstance(node, str):
        mentions = node == "playbooks" or "${playbooks" in node
        return [node] if mentions and not guarded else []
    if _playbooks_output(node) is not None:
        return [] if guarded else [node]
    conditional = bm.operator(node, "conditional")
    if conditional is not None:
        return (_unguarded_playbooks_references(conditional["condition"], guarded)
                + _unguarded_playbooks_references(conditional["true_value"],
                                                  guarded or conditional["condition"] in _PLAYBOOK_GUARDS)
                + _unguarded_playbooks_references(conditional["false_value"], guarded))
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [found for child in children for found in _unguarded_playbooks_references(child, guarded)]


def test_playbooks_are_deployed_only_on_request_and_only_with_entra_auth() -> None:
    deploy = _param("deployPlaybooks")
    assert deploy["type"] == "bool" and deploy["default"] is False
    description = bm.decorators(deploy)["description"]
    assert "Microsoft Sentinel Responder" in description  # the role this template does not grant
    assert "entraAllowedPrincipalIds" in description  # how the playbooks' identities get through
    assert bm.operator(_var("usePlaybooks"), "and") == {"operand_1": "deployPlaybooks", "operand_2": "useEntra"}

    module = bm.main()["modules"]["playbooks"]
    assert module["detail"]["path"] == "playbooks.bicep"
    assert bm.condition(module) == "usePlaybooks"
    assert "deployPlaybooks" in bm.bicepparam_names(bm.PARAMS_FILE)


def test_playbooks_call_the_gateway_over_https_for_the_audience_entra_auth_accepts() -> None:
    params = bm.body(bm.main()["modules"]["playbooks"])["params"]
    assert params["gatewayUrl"] == "https://${functionApp.outputs.defaultHostName}"
    # The first accepted audience: the user's first, else the App ID URI api://<client id>.
    assert bm.operator(params["gatewayAudience"], "index_accessor") == {"operand_1": "entraAudiences",
                                                                         "operand_2": 0}
    audiences = bm.operator(_var("entraAudiences"), "conditional")
    assert audiences is not None
    assert audiences["condition"] == {"function": {"type": "empty",
                                                   "parameters": {"item_to_test": "entraAllowedAudiences"}}}
    assert audiences["true_value"] == ["api://${entraClientId}", "entraClientId"]
    assert audiences["false_value"] == "entraAllowedAudiences"
    assert bm.body(bm.main()["modules"]["entraAuth"])["params"]["allowedAudiences"] == "entraAudiences"
    # No cycle: entraAuth waits for the playbooks' principal ids, so the playbooks must not wait for entraAuth.
    assert "entraAuth" not in str(params)


def test_playbook_identities_are_allowed_through_entra_auth() -> None:
    params = bm.body(bm.main()["modules"]["entraAuth"])["params"]
    assert params["allowedPrincipalIds"] == "allowedPrincipalIds"
    # The gateway's own check gets the same list (defence in depth), playbooks included.
    settings = {name: value for name, value, _ in bm.app_settings(bm.main())}
    joined = bm.function_call(settings["GATEWAY_ALLOWED_PRINCIPALS"], "join")
    assert joined is not None and joined["delimiter"] == ","
    assert joined["input_array"] == bm.resolve("allowedPrincipalIds", bm.main())
    applications = bm.function_call(settings["GATEWAY_ALLOWED_APPLICATIONS"], "join")
    assert applications == {"input_array": "entraAllowedApplications", "delimiter": ","}
    principals = bm.function_call(_var("allowedPrincipalIds"), "concat")
    assert principals is not None and set(principals) == {"arg_1", "arg_2"}
    assert principals["arg_1"] == "entraAllowedPrincipalIds"
    added = bm.operator(principals["arg_2"], "conditional")
    # Only into a list the user gave: an empty one (anyone with a token) must not become "only the playbooks".
    assert added is not None and added["condition"] == "addPlaybookPrincipals" and added["false_value"] == []
    condition = bm.operator(_var("addPlaybookPrincipals"), "and")
    assert condition is not None and condition["operand_1"] == "usePlaybooks"
    assert "entraAllowedPrincipalIds" in str(condition["operand_2"])
    assert isinstance(added["true_value"], list)
    passed = [_playbooks_output(node) for node in added["true_value"]]
    assert sorted(map(str, passed)) == sorted(_playbook_principal_outputs())  # every playbook identity, once


def test_playbook_principal_outputs_are_empty_without_playbooks() -> None:
    outputs = {
        name: output for name, output in bm.main()["outputs"].items()
        if any(_playbooks_output(node) for node in bm.walk(output["value"]))
    }
    forwarded: set[str | None] = set()
    for name, output in outputs.items():
        assert name.startswith("PLAYBOOK_") and name.endswith("_PRINCIPAL_ID")
        assert output["type"] == "string"
        conditional = bm.operator(output["value"], "conditional")
        assert conditional is not None and conditional["condition"] == "usePlaybooks"
        assert conditional["false_value"] == ""
        forwarded.add(_playbooks_output(conditional["true_value"]))
    assert forwarded == _playbook_principal_outputs()


def test_the_conditional_playbooks_module_is_referenced_only_when_deployed() -> None:
    tree = bm.main()
    elsewhere = [tree["outputs"], tree["variables"],
                 {name: module for name, module in tree["modules"].items() if name != "playbooks"},
                 tree["resources"]]
    assert not _unguarded_playbooks_references(elsewhere)
    assert _unguarded_playbooks_references(tree["outputs"]["PLAYBOOK_ENRICH_PRINCIPAL_ID"]["value"]) == []
    # Self-check of the walker: an unguarded reference is found.
    assert _unguarded_playbooks_references({"x": "${playbooks.outputs.enrichPlaybookPrincipalId}"})
    reference = tree["outputs"]["PLAYBOOK_ENRICH_PRINCIPAL_ID"]["value"]["operator"]["operands"]["true_value"]
    assert _unguarded_playbooks_references([reference]) == [reference]


def test_every_queue_the_gateway_reads_is_created_with_its_poison_queue() -> None:
    """The request queue and one waiting queue per Defender API (as shared/settings.py names them), each with the
    `-poison` queue the Functions host moves failed messages to; the name's length leaves room for all of them."""
    storage = bm.module("storage")
    queues = bm.resources_of_type(storage, "Microsoft.Storage/storageAccounts/queueServices/queues")
    names = set()
    for resource in queues.values():
        config = resource["config"]
        loop = config.get("loop_type")
        if loop is None:
            names.add(config["name"])
            continue
        assert loop["detail"]["array_name"] == "waitingQueueSuffixes"
        for suffix in storage["variables"]["waitingQueueSuffixes"]["value"]:
            names.add(config["config"]["name"].replace("${suffix}", suffix))
    expected = {"requestsQueueName", "${requestsQueueName}" + POISON_SUFFIX}
    for api in Api:
        expected |= {"${requestsQueueName}" + waiting_suffix(api), "${requestsQueueName}" + waiting_suffix(api)
                     + POISON_SUFFIX}
    assert names == expected
    decorators = bm.decorators(_param("requestsQueueName"))
    assert decorators["max_length"] == MAX_REQUESTS_QUEUE_LENGTH
    assert bm.decorators(storage["parameters"]["requestsQueueName"])["max_length"] == MAX_REQUESTS_QUEUE_LENGTH
