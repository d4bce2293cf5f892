"""Valid inputs the tests start from: a create body, and the two kinds of request message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localdev.simulator.data import SEED_EVENT

VALID = {"machineId": SEED_EVENT["machineId"], "severity": "Low", "title": "validation test",
         "description": "example alert", "recommendedAction": "nothing", "eventTime": SEED_EVENT["eventTime"],
         "reportId": SEED_EVENT["reportId"], "category": "Exploit"}


def create_message(message_id: str, body: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "CreateAlertByReference", "body": dict(body or VALID),
            **extra}


def lookup_message(message_id: str, sha1: str, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "GetFileRelatedAlerts", "fileHash": sha1, **extra}
