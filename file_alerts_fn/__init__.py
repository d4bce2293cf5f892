"""GET /api/files/{sha1}/alerts — alerts related to a file (SHA-1 only), as Defender returns them."""

import azure.functions as func

from shared.gateway import FILE_ALERTS, GatewayResponse
from shared.handler import handle
from shared.runtime import gateway
from shared.validation import validate_sha1

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("GetFileRelatedAlerts")
@bp.route(route="files/{sha1}/alerts", methods=["GET"])
def get_file_related_alerts(req: func.HttpRequest) -> func.HttpResponse:
    def run(correlation_id: str) -> GatewayResponse:
        sha1 = validate_sha1(req.route_params.get("sha1", ""))
        return gateway().file_alerts(sha1, correlation_id)

    return handle(req, FILE_ALERTS, run)
