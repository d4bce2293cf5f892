"""Advanced hunting, one Microsoft Graph runHuntingQuery call each: POST /api/advancedqueries/run (Defender for
Endpoint's hunting API) and POST /api/advancedhunting/run (Defender XDR's), with Defender's body (`Query`) and answer
(`Stats`, `Schema`, `Results`), so that a caller of those APIs changes only its base URL; and POST
/api/security/runHuntingQuery with Graph's body (`Query`, `Timespan`) and answer (`schema`, `results`)."""

import azure.functions as func

from shared.runtime import edge
from shared.validation.hunting import HuntingShape

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("RunAdvancedQuery")
@bp.route(route="advancedqueries/run", methods=["POST"])
def run_advanced_query(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return edge().hunt(req, HuntingShape.DEFENDER, context=context)


@bp.function_name("RunAdvancedHuntingQuery")
@bp.route(route="advancedhunting/run", methods=["POST"])
def run_advanced_hunting_query(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return edge().hunt(req, HuntingShape.DEFENDER, context=context)


@bp.function_name("RunHuntingQuery")
@bp.route(route="security/runHuntingQuery", methods=["POST"])
def run_hunting_query(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return edge().hunt(req, HuntingShape.GRAPH, context=context)
