"""GET /api/files/{sha1}/alerts — alerts related to a file (SHA-1 only), as Defender returns them."""

import azure.functions as func

from shared.runtime import edge
from shared.validation import validate_sha1

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("GetFileRelatedAlerts")
@bp.route(route="files/{sha1}/alerts", methods=["GET"])
def get_file_related_alerts(req: func.HttpRequest) -> func.HttpResponse:
    def parse() -> str:
        return validate_sha1(req.route_params.get("sha1", ""))

    return edge().lookup_file_alerts(req, parse)
