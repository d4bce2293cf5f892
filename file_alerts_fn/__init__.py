"""GET /api/files/{fileHash}/alerts — alerts related to a file, as Defender returns them. `fileHash` is the file's
SHA-1, or its SHA-256, which the gateway resolves to the SHA-1 first (Defender's alerts API takes SHA-1 only)."""

import azure.functions as func

from shared.runtime import edge
from shared.validation import FileHash, validate_file_hash

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("GetFileRelatedAlerts")
@bp.route(route="files/{fileHash}/alerts", methods=["GET"])
def get_file_related_alerts(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    def parse() -> FileHash:
        return validate_file_hash(req.route_params.get("fileHash", ""))

    return edge().lookup_file_alerts(req, parse, context=context)
