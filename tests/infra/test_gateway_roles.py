"""The gateway's app roles in the templates: defined on its app registration with the values the code requires
(shared.http.settings.Role), assignment required, v2.0 tokens, the playbooks' identities assigned what they call,
and the gateway told the issuer and audiences the platform validates against."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.http.settings import Role
from tests.infra import bicep_model as bm

ROLES_BICEP = bm.INFRA / "gateway-app-roles.bicep"
#: The gateway's app role of the hunting routes (shared.http.settings.Role.HUNTING_READ, the edge's).
HUNTING_READ = "Hunting.Read"


def _roles_tree() -> bm.Tree:
    return bm.parse(ROLES_BICEP)


def _gateway_roles() -> list[dict[str, Any]]:
    return list(_roles_tree()["variables"]["gatewayRoles"]["value"])


def test_the_app_roles_are_the_ones_the_gateway_requires_one_per_right() -> None:
    roles = _gateway_roles()
    values = [role["value"] for role in roles]
    assert len(values) == len(set(values))
    assert sorted(values) == sorted(role.value for role in Role)  # Hunting.Read too: the hunting routes' role
    for role in roles:
        assert "Application" in role["allowedMemberTypes"], role["value"]  # playbooks' managed identities
        assert role["displayName"] and len(role["description"]) > 30
    operate = next(role for role in roles if role["value"] == Role.OPERATE.value)
    assert operate["allowedMemberTypes"] == ["Application", "User"]
    assert all(role["allowedMemberTypes"] == ["Application"] for role in roles if role is not operate)


def test_the_app_registration_defines_them_with_stable_ids_and_asks_for_v2_tokens() -> None:
    tree = _roles_tree()
    assert set(tree.get("extensions", {})) == {"microsoftGraphV1"}
    name, app = bm.the_resource(tree, "Microsoft.Graph/applications")
    assert tree["resources"][name]["existing"] is False
    assert app["uniqueName"] == "appUniqueName"
    assert app["api"] == {"requestedAccessTokenVersion": 2}  # issuer .../v2.0: what GATEWAY_TOKEN_ISSUER names
    roles = app["appRoles"]
    assert roles["loop_type"]["detail"] == {"item_name": "role", "array_name": "gatewayRoles"}
    spec = roles["config"]
    assert bm.function_call(spec["id"], "guid") == {"base_string": "appUniqueName",
                                                    "extra_string_1": spec["value"]}  # the same id every deployment
    assert bm.property_access(spec["value"]) == ("role", "value")
    assert spec["isEnabled"] is True


def test_assignment_is_required_and_the_callers_are_assigned_by_role_value() -> None:
    tree = _roles_tree()
    app_name, _ = bm.the_resource(tree, "Microsoft.Graph/applications")
    sp_name, sp = bm.the_resource(tree, "Microsoft.Graph/servicePrincipals")
    assert sp["appRoleAssignmentRequired"] is True  # Entra ID issues tokens for the gateway to assigned callers only
    assert bm.property_access(sp["appId"]) == (app_name, "appId")
    (assignment,) = bm.resources_of_type(tree, "Microsoft.Graph/appRoleAssignedTo").values()
    assert assignment["config"]["loop_type"]["detail"] == {"item_name": "assignment", "array_name": "assignments"}
    spec = bm.body(assignment)
    assert bm.property_access(spec["resourceId"]) == (sp_name, "id")
    assert bm.property_access(spec["principalId"]) == ("assignment", "principalId")
    # The role's id, as the app registration defines it: guid(appUniqueName, <value>).
    guid = bm.function_call(spec["appRoleId"], "guid")
    assert guid is not None and guid["base_string"] == "appUniqueName"
    assert bm.property_access(guid["extra_string_1"]) == ("assignment", "role")


def test_entra_auth_deploys_the_roles_with_the_app_registrations_unique_name() -> None:
    tree = bm.parse(bm.INFRA / "entra-auth.bicep")
    module = tree["modules"]["gatewayAppRoles"]
    assert module["detail"]["path"] == "gateway-app-roles.bicep"
    assert "appUniqueName" in str(bm.condition(module))
    assert bm.body(module)["params"] == {"appUniqueName": "appUniqueName", "appDisplayName": "appDisplayName",
                                         "callerRoles": "callerRoles"}
    params = bm.body(bm.main()["modules"]["entraAuth"])["params"]
    assert params["appUniqueName"] == "entraAppUniqueName"
    assert bm.main()["parameters"]["entraAppUniqueName"]["default"] == ""


def test_the_playbooks_identities_get_the_roles_of_their_calls() -> None:
    main = bm.main()
    callers = bm.operator(bm.body(main["modules"]["entraAuth"])["params"]["callerRoles"], "conditional")
    assert callers is not None and callers["condition"] == "usePlaybooks" and callers["false_value"] == []
    enrich, create, hunt = callers["true_value"]
    assert bm.module_output(enrich["principalId"]) == ("playbooks", "enrichPlaybookPrincipalId")
    assert bm.module_output(create["principalId"]) == ("playbooks", "createPlaybookPrincipalId")
    assert bm.module_output(hunt["principalId"]) == ("playbooks", "huntPlaybookPrincipalId")
    values = {role.value for role in Role}
    enrich_roles = main["variables"][enrich["roles"]]["value"]
    create_roles = main["variables"][create["roles"]]["value"]
    hunt_roles = main["variables"][hunt["roles"]]["value"]
    assert enrich_roles == [Role.ALERTS_READ.value, Role.OPERATIONS_READ.value]
    assert create_roles == [Role.ALERTS_CREATE.value, Role.OPERATIONS_READ.value]
    # Hunting.Read (Role.HUNTING_READ) for its hunting queries, then the create's roles for the alerts they feed.
    assert hunt_roles == [HUNTING_READ, Role.ALERTS_CREATE.value, Role.OPERATIONS_READ.value]
    granted = set(enrich_roles) | set(create_roles) | set(hunt_roles)
    assert granted <= values and Role.OPERATE.value not in granted


def test_the_gateway_checks_tokens_against_the_issuer_and_audiences_the_platform_is_given() -> None:
    main = bm.main()
    settings = {name: value for name, value, _ in bm.app_settings(main)}
    params = bm.body(main["modules"]["entraAuth"])["params"]
    assert params["openIdIssuer"] == "entraIssuer" and params["allowedAudiences"] == "entraAudiences"
    issuer = bm.operator(settings["GATEWAY_TOKEN_ISSUER"], "conditional")
    assert issuer is not None and issuer["false_value"] == ""
    assert issuer["true_value"] == bm.resolve("entraIssuer", main)
    assert "/v2.0" in str(issuer["true_value"])
    audiences = bm.operator(settings["GATEWAY_TOKEN_AUDIENCES"], "conditional")
    assert audiences is not None and audiences["false_value"] == ""
    assert bm.function_call(audiences["true_value"], "join") == {"input_array": bm.resolve("entraAudiences", main),
                                                                 "delimiter": ","}


DEPLOY_DOC = bm.INFRA.parent / "docs" / "deploy.md"


def _doc_role_table() -> dict[str, str]:
    """docs/deploy.md's table of the gateway's app roles: role value -> member types."""
    rows = re.findall(r"^\s*\| `([A-Za-z]+\.[A-Za-z]+)` \| [^|]+ \| ([A-Za-z, ]+) \|$", DEPLOY_DOC.read_text(),
                      re.MULTILINE)
    return {value: members.strip() for value, members in rows}


def _doc_role_json() -> list[dict[str, Any]]:
    """The app roles docs/deploy.md's `az ad app update --app-roles` example defines (each id a `uuidgen`)."""
    text = DEPLOY_DOC.read_text()
    start = text.index("--app-roles '[") + len("--app-roles '")
    block = text[start:text.index("]'", start) + 1].replace("\"'$(uuidgen)'\"", '"generated"')
    roles: list[dict[str, Any]] = json.loads(block)
    return roles


def test_the_deploy_docs_and_the_gatewayauth_description_list_every_role_as_the_bicep_defines_it() -> None:
    """docs/deploy.md's role table and its az CLI example, and main.bicep's gatewayAuth description, name the roles
    the gateway requires (Hunting.Read among them), with the member types gateway-app-roles.bicep gives each."""
    defined = {role["value"]: role["allowedMemberTypes"] for role in _gateway_roles()}
    table = _doc_role_table()
    assert list(table) == [role["value"] for role in _gateway_roles()]
    assert all(table[value] == ", ".join(members) for value, members in defined.items())
    example = _doc_role_json()
    assert [role["value"] for role in example] == list(defined)
    assert all(role["allowedMemberTypes"] == defined[role["value"]] and role["isEnabled"] for role in example)
    described = bm.main()["parameters"]["gatewayAuth"]["decorators"]
    description = next(d["argument"] for d in described if d["type"] == "description")
    assert all(role.value in description for role in Role)
