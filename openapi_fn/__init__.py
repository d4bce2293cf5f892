"""GET /api/openapi.json — the gateway's OpenAPI 2.0 document (shared/http/openapi.py), with the caller's host."""

import azure.functions as func

from shared.runtime import edge

bp = func.Blueprint()  # type: ignore[no-untyped-call]


# Anonymous: the document holds no secret. With Entra ID in front, App Service authentication still asks for a token.
@bp.function_name("GetOpenApiDocument")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return edge().openapi(req)
