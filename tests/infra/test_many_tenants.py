"""Many tenants in the templates: the customer tenants and the multi-tenant app as app settings, and the user-assigned
identity made a federated credential of that app (federated-credential.bicep, Microsoft Graph)."""

from __future__ import annotations

from tests.infra import bicep_model as bm


def test_the_tenant_settings_come_from_parameters_that_default_to_one_tenant() -> None:
    settings = {name: value for name, value, _ in bm.app_settings(bm.main())}
    tenants = bm.function_call(settings["MDE_TENANTS"], "join")
    assert tenants == {"input_array": "customerTenants", "delimiter": ","}
    client_id = bm.operator(settings["MDE_MULTITENANT_CLIENT_ID"], "conditional")
    assert client_id is not None and client_id["condition"] == bm.resolve("useFederatedCredential", bm.main())
    assert client_id["false_value"] == "multitenantAppClientId"
    assert bm.module_output(client_id["true_value"]) == ("federatedCredential", "appClientId")
    assert bm.main()["parameters"]["multitenantAppClientId"]["default"] == ""
    assert settings["GATEWAY_TENANT_CALLERS"] == "tenantCallers"
    params = bm.main()["parameters"]
    assert params["customerTenants"]["default"] == [] and params["multitenantAppUniqueName"]["default"] == ""


def test_the_federated_credential_is_the_user_assigned_identity_for_the_exchange_audience() -> None:
    module = bm.main()["modules"]["federatedCredential"]
    assert bm.condition(module) == "useFederatedCredential"
    flag = bm.operator(bm.main()["variables"]["useFederatedCredential"]["value"], "and")
    assert flag is not None and "useUserAssigned" in str(flag) and "customerTenants" in str(flag)
    params = bm.module_params("federatedCredential")
    assert bm.property_access(params["identityPrincipalId"])[0] == "userAssignedIdentity"  # type: ignore[index]
    assert params["audience"] == "exchangeAudience" and params["appUniqueName"] == "multitenantAppUniqueName"
    audience = bm.operator(bm.main()["variables"]["exchangeAudience"]["value"], "conditional")
    assert audience is not None
    assert (audience["true_value"], audience["false_value"]) == ("api://AzureADTokenExchangeUSGov",
                                                                 "api://AzureADTokenExchange")
    tree = bm.parse(bm.INFRA / "federated-credential.bicep")
    assert set(tree.get("extensions", {})) == {"microsoftGraphV1"}
    app = tree["resources"]["app"]
    assert app["existing"] is True and bm.body(app) == {"uniqueName": "appUniqueName"}
    _, credential = bm.the_resource(tree, "Microsoft.Graph/applications/federatedIdentityCredentials")
    assert credential["audiences"] == ["audience"] and credential["subject"] == "identityPrincipalId"
    assert credential["issuer"] == "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
