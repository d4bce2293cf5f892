"""The Defender operations for a customer tenant (many tenants: MDE_TENANTS): GET
/api/tenants/{tenant}/files/{fileHash}/alerts, POST /api/tenants/{tenant}/alerts/CreateAlertByReference, and advanced
hunting (POST /api/tenants/{tenant}/advancedqueries/run, .../advancedhunting/run, .../security/runHuntingQuery).
`tenant` is a listed tenant's id or short name; anything else is 404 before anything is spent. The routes without
a tenant mean the home tenant."""

import azure.functions as func

from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.runtime import edge
from shared.validation import FileHash, parse_json_object, validate_create_alert, validate_file_hash
from shared.validation.hunting import HuntingShape

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("GetTenantFileRelatedAlerts")
@bp.route(route="tenants/{tenant}/files/{fileHash}/alerts", methods=["GET"])
def get_tenant_file_related_alerts(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    def parse() -> FileHash:
        return validate_file_hash(req.route_params.get("fileHash", ""))

    return edge().lookup_file_alerts(req, parse, req.route_params.get("tenant", ""), context=context)


@bp.function_name("CreateTenantAlertByReference")
@bp.route(route="tenants/{tenant}/alerts/CreateAlertByReference", methods=["POST"])
def create_tenant_alert_by_reference(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    def parse() -> DefenderRequest:
        body = parse_json_object(req.get_body(), req.headers.get("Content-Type"))
        return DefenderRequest.create_alert(validate_create_alert(body))

    return edge().respond(req, Api.CREATE_ALERT, parse, req.route_params.get("tenant", ""), context=context)


@bp.function_name("RunTenantAdvancedQuery")
@bp.route(route="tenants/{tenant}/advancedqueries/run", methods=["POST"])
def run_tenant_advanced_query(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return edge().hunt(req, HuntingShape.DEFENDER, req.route_params.get("tenant", ""), context=context)


@bp.function_name("RunTenantAdvancedHuntingQuery")
@bp.route(route="tenants/{tenant}/advancedhunting/run", methods=["POST"])
def run_tenant_advanced_hunting_query(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return edge().hunt(req, HuntingShape.DEFENDER, req.route_params.get("tenant", ""), context=context)


@bp.function_name("RunTenantHuntingQuery")
@bp.route(route="tenants/{tenant}/security/runHuntingQuery", methods=["POST"])
def run_tenant_hunting_query(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return edge().hunt(req, HuntingShape.GRAPH, req.route_params.get("tenant", ""), context=context)
