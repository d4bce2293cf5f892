"""GET /api/health: budget left per API, queue depth, pending operations, storage reachability (function key)."""

import azure.functions as func

from shared.runtime import edge

bp = func.Blueprint()  # type: ignore[no-untyped-call]


# A function key even when Entra ID fronts the app (and then a token with any of the gateway's app roles).
@bp.function_name("GetHealth")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_health(req: func.HttpRequest) -> func.HttpResponse:
    return edge().health(req)
