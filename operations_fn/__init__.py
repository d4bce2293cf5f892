"""GET /api/operations/{id}: an asynchronous operation: 202 while pending, then the synchronous call's answer."""

import azure.functions as func

from shared.runtime import edge

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("GetOperation")
@bp.route(route="operations/{id}", methods=["GET"])
def get_operation(req: func.HttpRequest) -> func.HttpResponse:
    return edge().operation_status(req, req.route_params.get("id", ""))
