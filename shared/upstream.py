"""What a Defender answer means for the gateway's caller: pass it through, or a clear problem."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.problems import ProblemError
from shared.settings import DefenderSettings

DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
REQUIRED_ROLE = {"file_alerts": "Alert.Read.All (or Alert.ReadWrite.All)", "create_alert": "Alert.ReadWrite.All"}


@dataclass(frozen=True)
class UpstreamAnswer:
    """A successful Defender answer, body unchanged."""

    status: int
    body: bytes
    document: Any


@dataclass
class UpstreamThrottledError(ProblemError):
    """Defender said 429: the caller waits `retry_after` seconds, and so does every gateway instance."""

    retry_after: int = 60


def _error_of(document: Any) -> dict[str, str]:
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return {}
    return {key: str(error[key]) for key in ("code", "message", "target") if error.get(key) is not None}


def _retry_after(headers: Mapping[str, str]) -> int:
    try:
        return max(1, int(float(headers.get("Retry-After", "60"))))
    except ValueError:
        return 60


def _bad_gateway(detail: str, kind: str, upstream: dict[str, str] | None = None) -> ProblemError:
    extensions = {"upstreamError": upstream} if upstream else {}
    return ProblemError(502, "Bad answer from Defender", detail, kind, extensions=extensions)


def interpret(operation: str, status: int, headers: Mapping[str, str], content: bytes,
              settings: DefenderSettings) -> UpstreamAnswer:
    """Return the success answer or raise the ProblemError the caller should see."""
    try:
        document: Any = json.loads(content) if content else None
    except ValueError:
        document = None
    upstream = _error_of(document)
    said = f" Defender said: {upstream.get('code', '?')}: {upstream.get('message', '(no message)')}" if upstream else ""

    if status == 200:
        if operation == "file_alerts" and isinstance(document, dict) and isinstance(document.get("value"), list):
            return UpstreamAnswer(status, content, document)
        if operation == "create_alert" and isinstance(document, dict) and isinstance(document.get("id"), str):
            return UpstreamAnswer(status, content, document)
        raise _bad_gateway("Defender answered 200 with a body that is not the documented shape "
                           f"({'not JSON' if document is None else 'unexpected JSON'}).", "upstream-malformed")
    if status == 400:
        raise ProblemError(400, "Defender rejected the request",
                           f"Defender for Endpoint answered 400.{said}", "upstream-bad-request",
                           extensions={"upstreamError": upstream} if upstream else {})
    if status == 404 and operation == "create_alert":
        raise ProblemError(404, "Event not found",
                           "Defender found no event with this reportId, eventTime and machineId. Take all three "
                           "from the same advanced-hunting row, eventTime with its full precision." + said,
                           "event-not-found", extensions={"upstreamError": upstream} if upstream else {})
    if status == 401:
        raise _bad_gateway(
            "Defender rejected the gateway's token (401). The token audience must match the API host: "
            f"MDE_CLOUD={settings.cloud.name} asks for {settings.cloud.scope} and calls {settings.base_url}; "
            "check MDE_CLOUD / MDE_BASE_URL." + said, "upstream-unauthorized", upstream)
    if status == 403:
        message = upstream.get("message", "").lower()
        audience = (f"The token audience must match the API host: MDE_CLOUD={settings.cloud.name} asks for "
                    f"{settings.cloud.scope} and calls {settings.base_url}; check MDE_CLOUD / MDE_BASE_URL.")
        roles = (f"The identity needs the application role {REQUIRED_ROLE[operation]} on WindowsDefenderATP "
                 f"(appId {DEFENDER_APP_ID}): grant it with infra/defender-roles.bicep or "
                 "scripts/grant-defender-roles.sh.")
        if "audience" in message:
            advice = audience
        elif "role" in message:
            advice = roles
        else:
            advice = roles + " " + audience
        raise _bad_gateway(f"Defender refused the gateway's identity (403). {advice}{said}", "upstream-forbidden",
                           upstream)
    if status == 429:
        retry_after = _retry_after(headers)
        raise UpstreamThrottledError(
            429, "Defender is throttling", f"Defender for Endpoint answered 429; retry after {retry_after} s. "
            "Every gateway instance holds calls to this API until then." + said, "upstream-throttled",
            headers={"Retry-After": str(retry_after)}, retry_after=retry_after)
    if status >= 500:
        raise _bad_gateway(f"Defender for Endpoint failed with {status}; retry later." + said, "upstream-error",
                           upstream)
    raise _bad_gateway(f"Defender for Endpoint answered an unexpected {status}." + said, "upstream-unexpected",
                       upstream)
