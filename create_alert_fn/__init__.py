"""POST /api/alerts/CreateAlertByReference — create an alert from an advanced-hunting event."""

import azure.functions as func

from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.runtime import edge
from shared.validation import parse_json_object, validate_create_alert

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("CreateAlertByReference")
@bp.route(route="alerts/CreateAlertByReference", methods=["POST"])
def create_alert_by_reference(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    def parse() -> DefenderRequest:
        body = parse_json_object(req.get_body(), req.headers.get("Content-Type"))
        return DefenderRequest.create_alert(validate_create_alert(body))

    return edge().respond(req, Api.CREATE_ALERT, parse, context=context)
