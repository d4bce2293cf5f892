"""POST /api/alerts/CreateAlertByReference — create an alert from an advanced-hunting event."""

import azure.functions as func

from shared.gateway import CREATE_ALERT, GatewayResponse
from shared.handler import handle
from shared.runtime import gateway
from shared.validation import parse_json_object, validate_create_alert

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("CreateAlertByReference")
@bp.route(route="alerts/CreateAlertByReference", methods=["POST"])
def create_alert_by_reference(req: func.HttpRequest) -> func.HttpResponse:
    def run(correlation_id: str) -> GatewayResponse:
        body = validate_create_alert(parse_json_object(req.get_body(), req.headers.get("Content-Type")))
        return gateway().create_alert(body, correlation_id)

    return handle(req, CREATE_ALERT, run)
