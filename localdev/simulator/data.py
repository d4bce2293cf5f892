"""Seed alerts and events, and the alert entities the simulator returns (shaped like Defender's)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# A copy of the documented sample alert (shared/reference/sample-alert.json beside the repo).
SAMPLE_ALERT = Path(__file__).resolve().parent / "sample_alert.json"

# The file the documentation's example asks about, and two more with alerts.
SEED_FILE_SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
SEED_MACHINE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SEED_EVENT = {"reportId": "20776", "eventTime": "2018-08-03T16:45:21.7115183Z", "machineId": SEED_MACHINE_ID}

_counter = itertools.count(1364969609)


def now_iso() -> str:
    """Defender's time format: UTC with 7 fractional digits."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def normalise_time(value: str) -> str | None:
    """`2018-08-03T16:45:21.7115183Z` with the fraction padded to 7 digits; None if not such a time."""
    text = value.strip().upper()
    if not text.endswith("Z") or "T" not in text:
        return None
    head, _, fraction = text[:-1].partition(".")
    if len(head) != 19 or (fraction and (not fraction.isdigit() or len(fraction) > 7)):
        return None
    try:
        datetime.strptime(head, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return f"{head}.{fraction.ljust(7, '0')}Z"


def new_alert_id() -> str:
    return f"da{random.randint(10**17, 10**18 - 1)}_{next(_counter)}"


def _template() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(SAMPLE_ALERT.read_text())
    return template


def file_evidence(sha1: str, file_name: str, path: str = "c:\\temp") -> dict[str, Any]:
    evidence: dict[str, Any] = copy.deepcopy(_template()["evidence"][0])
    evidence.update({
        "entityType": "File", "evidenceCreationTime": now_iso(), "sha1": sha1,
        "sha256": hashlib.sha256(sha1.encode()).hexdigest(), "fileName": file_name, "filePath": path,
        "detectionStatus": "Detected",
    })
    return evidence


def make_alert(**fields: Any) -> dict[str, Any]:
    """An alert entity with every documented field; `fields` override the template."""
    alert = copy.deepcopy(_template())
    stamp = now_iso()
    alert.update({"id": new_alert_id(), "alertCreationTime": stamp, "lastUpdateTime": stamp, "comments": []})
    alert.update(fields)
    return alert


def seed_alerts() -> list[dict[str, Any]]:
    return [
        _template(),
        make_alert(title="Suspicious PowerShell command line", severity="Medium", category="Execution",
                   machineId=SEED_MACHINE_ID, computerDnsName="ws-0042.contoso.com", incidentId=1126101,
                   mitreTechniques=["T1059.001"],
                   evidence=[file_evidence(SEED_FILE_SHA1, "invoice.ps1", "c:\\users\\alice\\downloads")]),
        make_alert(title="Ransomware behavior detected in the file system", severity="High", category="Ransomware",
                   machineId="7c6b3dd4d1f0b0e1a5b3e2c9f6a7d8e9f0a1b2c3", computerDnsName="fs-01.contoso.com",
                   incidentId=1126102, mitreTechniques=["T1486"],
                   evidence=[file_evidence(SEED_FILE_SHA1, "invoice.ps1", "d:\\share")]),
    ]


def seed_events() -> list[dict[str, Any]]:
    """Events that CreateAlertByReference can find, as advanced hunting would return them."""
    return [
        dict(SEED_EVENT, computerDnsName="ws-0042.contoso.com", sha1=SEED_FILE_SHA1, fileName="invoice.ps1"),
        {"reportId": "31337", "eventTime": "2026-11-20T08:15:42.1234567Z",
         "machineId": "111e6dd8c833c8a052ea231ec1b19adaf497b625",
         "computerDnsName": "temp123.middleeast.corp.microsoft.com",
         "sha1": "8563f95b2f8a284fc99da44500cd51a77c1ff36c", "fileName": "suspicious.dll"},
    ]
