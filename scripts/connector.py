"""The Power Platform custom connector (connector/) built from the gateway's OpenAPI document: apiProperties.json
for each authentication mode, and every file of the directory as text. Used by scripts/export_connector.py (and
the tests that check the committed files are current); nothing of the app imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from shared.http.openapi import document
from shared.http.openapi_blocks import JsonObject
from shared.http.settings import AuthMode

#: The connector's host: a placeholder that can never resolve (RFC 6761 `.invalid`), which whoever imports the
#: connector replaces with the function app's host name (General tab, or `--host` of the export script).
CONNECTOR_HOST: Final = "function-app-hostname.invalid"
#: Power Platform's name for the OAuth connection parameter; its user-filled resource goes in `token:ResourceUri`.
OAUTH_PARAMETER: Final = "token"
RESOURCE_URI_PARAMETER: Final = "token:ResourceUri"
API_KEY_PARAMETER: Final = "api_key"
#: The Power Platform consent redirect every connector with the global redirect uses.
CONSENT_REDIRECT_URL: Final = "https://global.consent.azure-apim.net/redirect"
#: The connector variants: directory below connector/ (empty: the top) -> authentication mode.
CONNECTOR_VARIANTS: Final[Mapping[str, AuthMode]] = {"": AuthMode.ENTRA, "api-key": AuthMode.FUNCTION_KEY}
DEFINITION_FILE: Final = "apiDefinition.swagger.json"
PROPERTIES_FILE: Final = "apiProperties.json"


def api_properties(auth: AuthMode, *, client_id: str = "", resource_uri: str | None = None) -> JsonObject:
    """apiProperties.json of the connector for `auth`.

    Entra ID: the `aad` identity provider with `client_id` (the connector's own app registration; empty: fill it in
    the Security tab). The resource the token is for is the gateway's App ID URI: `resource_uri` when given, else a
    required connection parameter (`token:ResourceUri`) that whoever creates a connection fills in.
    Function key: one secure connection parameter, sent as x-functions-key.
    """
    if auth is AuthMode.FUNCTION_KEY:
        parameters: JsonObject = {API_KEY_PARAMETER: {"type": "securestring", "uiDefinition": {
            "displayName": "Function Key",
            "description": "A function key of the gateway's function app (sent as x-functions-key).",
            "tooltip": "az functionapp keys list -g RESOURCE_GROUP -n FUNCTION_APP --query functionKeys.default -o tsv",
            "constraints": {"tabIndex": 1, "clearText": False, "required": "true"}}}}
    else:
        custom: JsonObject = {"loginUri": {"value": "https://login.microsoftonline.com"},
                              "tenantId": {"value": "common"}}
        if resource_uri is not None:
            custom["resourceUri"] = {"value": resource_uri}
        custom["enableOnbehalfOfLogin"] = {"value": "false"}
        parameters = {OAUTH_PARAMETER: {"type": "oauthSetting", "oAuthSettings": {
            "identityProvider": "aad", "clientId": client_id, "scopes": [], "redirectMode": "Global",
            "redirectUrl": CONSENT_REDIRECT_URL, "properties": {"IsFirstParty": "False"},
            "customParameters": custom}}}
        if resource_uri is None:
            parameters[RESOURCE_URI_PARAMETER] = {"type": "string", "uiDefinition": {
                "displayName": "Gateway App ID URI",
                "description": "The Application ID URI of the gateway's Entra ID app registration: api:// followed by "
                               "its client id (docs/deploy.md: Entra ID in front of the functions).",
                "tooltip": "az ad app show --id API_APP_ID --query identifierUris[0] -o tsv",
                "constraints": {"tabIndex": 1, "clearText": True, "required": "true"}}}
        parameters["token:TenantId"] = {"type": "string", "metadata": {"sourceType": "AzureActiveDirectoryTenant"},
                                        "uiDefinition": {"constraints": {"required": "false", "hidden": "true"}}}
    return {"properties": {"connectionParameters": parameters, "iconBrandColor": "#0078d4", "capabilities": [],
                           "policyTemplateInstances": []}}


def connector_document(auth: AuthMode, host: str = CONNECTOR_HOST) -> JsonObject:
    """apiDefinition.swagger.json of the connector for `auth` (https only, the host a placeholder by default)."""
    return document(auth, host)


def connector_files(*, host: str = CONNECTOR_HOST, client_id: str = "",
                    resource_uri: str | None = None) -> dict[str, str]:
    """Every file of the connector directory: relative path -> its text. Entra ID at the top, function key in
    api-key/ (Power Platform takes one security definition per connector)."""
    files: dict[str, str] = {}
    for directory, auth in CONNECTOR_VARIANTS.items():
        prefix = f"{directory}/" if directory else ""
        files[prefix + DEFINITION_FILE] = render(connector_document(auth, host))
        files[prefix + PROPERTIES_FILE] = render(api_properties(auth, client_id=client_id, resource_uri=resource_uri))
    return files


def render(spec: Mapping[str, Any]) -> str:
    """Stable JSON text (two-space indent, key order as built, non-ASCII kept, a final newline)."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
