"""The customer-tenant operations of the OpenAPI document (many tenants): the two Defender operations again, under
`/tenants/{tenant}`, with the tenant as a path parameter and 404 for a tenant the gateway does not serve (403 for
one the caller may not act for, with Entra ID)."""

from __future__ import annotations

import copy

from shared.defender.tenants import TENANT_NAME
from shared.http.openapi_blocks import JsonObject, ref
from shared.identifiers import GUID

GET_TENANT_FILE_RELATED_ALERTS = "GetTenantFileRelatedAlerts"
CREATE_TENANT_ALERT_BY_REFERENCE = "CreateTenantAlertByReference"
TENANT_PREFIX = "/tenants/{tenant}"
#: The document's example tenant: the customer tenant the local stack lists (localdev.stack), so that a tester
#: driven by the document reaches the tenant routes there.
TENANT_EXAMPLE = "contoso"
#: A listed tenant's id (a GUID) or short name, as MDE_TENANTS names it.
TENANT_PATTERN = f"^({GUID.pattern}|{TENANT_NAME.pattern})$"

_TENANT_PARAMETER: JsonObject = {
    "name": "tenant", "in": "path", "required": True, "type": "string", "x-ms-summary": "Tenant",
    "description": "The customer tenant: its id or the short name the gateway gives it (MDE_TENANTS).",
    "pattern": TENANT_PATTERN, "x-ms-url-encoding": "single", "x-ms-visibility": "important",
    "x-example": TENANT_EXAMPLE,
}


def tenant_operation(operation: JsonObject, operation_id: str, problem_headers: JsonObject) -> JsonObject:
    """`operation` for a customer tenant: the tenant parameter first, 403 and 404 for the tenant."""
    found = copy.deepcopy(operation)
    found["operationId"] = operation_id
    found["summary"] = operation["summary"] + " in a customer tenant"
    found["description"] = operation["description"] + " In the customer tenant the path names (many tenants)."
    found["parameters"] = [dict(_TENANT_PARAMETER), *found["parameters"]]
    responses = found["responses"]
    responses["404"] = {"description": "The gateway serves no such tenant (tenant-not-found; nothing was spent)"
                                       + ("; or " + responses["404"]["description"] if "404" in responses else "."),
                        "schema": ref("Problem"), "headers": copy.deepcopy(problem_headers)}
    responses["403"] = {"description": "With Entra ID: this caller may not act for the tenant "
                                       "(tenant-not-allowed; GATEWAY_TENANT_CALLERS), or its token holds no app role "
                                       "for the call or it is not an allowed caller (caller-not-allowed).",
                        "schema": ref("Problem"), "headers": copy.deepcopy(problem_headers)}
    found["responses"] = dict(sorted(responses.items()))
    return found
