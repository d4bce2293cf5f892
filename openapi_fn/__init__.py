"""GET /api/openapi.json — the gateway's OpenAPI 2.0 document (shared/openapi.py), with the caller's host."""

import json

import azure.functions as func

from shared.openapi import served_document
from shared.runtime import current

bp = func.Blueprint()  # type: ignore[no-untyped-call]


# Anonymous: the document holds no secret. With Entra ID in front, App Service authentication still asks for a token.
@bp.function_name("GetOpenApiDocument")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    spec = served_document(current().settings.auth, req.url)
    return func.HttpResponse(json.dumps(spec), status_code=200, mimetype="application/json",
                             headers={"Cache-Control": "no-store"})
