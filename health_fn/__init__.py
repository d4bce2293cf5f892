"""GET /api/health: budget left per API, queue depth, pending operations, storage reachability (function key)."""

import json

import azure.functions as func

from shared.health import health_report
from shared.runtime import current

bp = func.Blueprint()  # type: ignore[no-untyped-call]


# A function key even when Entra ID fronts the app: operators and monitors, not playbooks, read it.
@bp.function_name("GetHealth")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_health(req: func.HttpRequest) -> func.HttpResponse:
    runtime = current()
    healthy, report = health_report(runtime.gateway, runtime.operations, runtime.queues)
    return func.HttpResponse(json.dumps(report), status_code=200 if healthy else 503, mimetype="application/json",
                             headers={"Cache-Control": "no-store"})
