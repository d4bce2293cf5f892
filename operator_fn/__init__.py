"""The operator page: GET /api/operator (the page), GET /api/operator/state (what it shows) and
POST /api/operator/redrive (send a poisoned request again). The admin (master) key, not a function key: a key handed
to a playbook cannot re-drive or read every caller's operations (with Entra ID, a token with Gateway.Operate too)."""

import azure.functions as func

from shared.runtime import edge

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("GetOperatorPage")
@bp.route(route="operator", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def get_operator_page(req: func.HttpRequest) -> func.HttpResponse:
    return edge().operator_page(req)


@bp.function_name("GetOperatorState")
@bp.route(route="operator/state", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def get_operator_state(req: func.HttpRequest) -> func.HttpResponse:
    return edge().operator_state(req)


@bp.function_name("RedrivePoisoned")
@bp.route(route="operator/redrive", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def redrive_poisoned(req: func.HttpRequest) -> func.HttpResponse:
    return edge().operator_redrive(req)
