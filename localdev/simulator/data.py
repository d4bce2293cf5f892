"""Seed alerts, events and files, and the alert and file entities the simulator returns (shaped like Defender's)."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# A copy of the documented sample alert (shared/reference/sample-alert.json beside the repo).
SAMPLE_ALERT = Path(__file__).resolve().parent / "sample_alert.json"

# The file the documentation's example asks about, and two more with alerts.
SEED_FILE_SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
#: The same file's SHA-256, as the seed alerts' evidence names it: Get file information resolves one to the other.
SEED_FILE_SHA256 = "c4bc2cafdb2881be3e6912ac60fad245fcc918f68ced49110166f9dd21603d8a"
#: The file in the evidence of the documented sample alert (sample_alert.json), with the SHA-256 it names.
SAMPLE_FILE_SHA1 = "8563f95b2f8a284fc99da44500cd51a77c1ff36c"
SAMPLE_FILE_SHA256 = "dc0ade0c95d6db98882bc8fa6707e64353cd6f7767ff48d6a81a6c2aef21c608"
#: The file of the documentation's "Get file information" example: Defender knows it, but no seed alert names it.
DOCS_FILE_SHA1 = "4388963aaa83afe2042a46a3c017ad50bdcdafb3"
DOCS_FILE_SHA256 = "413c58c8267d2c8648d8f6384bacc2ae9c929b2b96578b6860b5087cd1bd6462"
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


#: The SHA-256 of each seeded file, so every alert about one of them names the same pair.
_KNOWN_SHA256 = {SEED_FILE_SHA1: SEED_FILE_SHA256, SAMPLE_FILE_SHA1: SAMPLE_FILE_SHA256,
                 DOCS_FILE_SHA1: DOCS_FILE_SHA256}


def sha256_of(sha1: str) -> str:
    """The SHA-256 the simulator pairs with `sha1`: a seeded file's own, else one made up from the SHA-1 (stable)."""
    sha1 = sha1.lower()
    return _KNOWN_SHA256.get(sha1) or hashlib.sha256(sha1.encode()).hexdigest()


def file_evidence(sha1: str, file_name: str, path: str = "c:\\temp", *, sha256: str | None = None) -> dict[str, Any]:
    evidence: dict[str, Any] = copy.deepcopy(_template()["evidence"][0])
    evidence.update({
        "entityType": "File", "evidenceCreationTime": now_iso(), "sha1": sha1,
        "sha256": sha256 or sha256_of(sha1), "fileName": file_name, "filePath": path,
        "detectionStatus": "Detected",
    })
    return evidence


#: The file entity's properties, in the order Defender documents them (files.md).
FILE_FIELDS = (
    "sha1", "sha256", "globalPrevalence", "globalFirstObserved", "globalLastObserved", "size", "fileType",
    "isPeFile", "filePublisher", "fileProductName", "signer", "issuer", "signerHash", "isValidCertificate",
    "determinationType", "determinationValue",
)
#: Extensions of portable executables (the entity's isPeFile).
_PE_EXTENSIONS = frozenset({"exe", "dll", "sys", "scr", "ocx", "cpl", "drv", "efi", "com", "mui"})


def file_entity(sha1: str, sha256: str | None, **fields: Any) -> dict[str, Any]:
    """A file entity with every documented property; `fields` (documented names only) override the defaults."""
    unknown = set(fields) - set(FILE_FIELDS)
    if unknown:
        raise ValueError(f"not a file property: {', '.join(sorted(unknown))}")
    stamp = now_iso()
    entity: dict[str, Any] = {
        "sha1": sha1.lower(), "sha256": sha256.lower() if sha256 else None, "globalPrevalence": 1,
        "globalFirstObserved": stamp, "globalLastObserved": stamp, "size": None, "fileType": None,
        "isPeFile": False, "filePublisher": None, "fileProductName": None, "signer": None, "issuer": None,
        "signerHash": None, "isValidCertificate": False, "determinationType": "Unknown", "determinationValue": None,
    }
    entity.update(fields)
    return entity


def file_from_evidence(sightings: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """The file entity Defender would show for a file seen in these (alert, evidence) pairs (at least one).

    Hashes from the evidence; prevalence is the number of devices; first and last observed span the evidence;
    type from the file name's extension. What evidence does not tell (size, signer, determination) is unknown.
    """
    evidence = [e for _, e in sightings]
    sha1 = next(str(e["sha1"]) for e in evidence if e.get("sha1"))
    sha256 = next((str(e["sha256"]) for e in evidence if e.get("sha256")), None)
    times = sorted(str(e["evidenceCreationTime"]) for e in evidence if e.get("evidenceCreationTime")) or [now_iso()]
    name = next((str(e["fileName"]) for e in evidence if e.get("fileName")), "")
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    return file_entity(
        sha1, sha256, globalPrevalence=len({alert.get("machineId") for alert, _ in sightings}),
        globalFirstObserved=times[0], globalLastObserved=times[-1], fileType=extension.upper() or None,
        isPeFile=extension in _PE_EXTENSIONS,
    )


def seed_files() -> list[dict[str, Any]]:
    """Files Defender knows besides those in alerts' evidence: the documentation's example file."""
    return [file_entity(
        DOCS_FILE_SHA1, DOCS_FILE_SHA256, globalPrevalence=180022, globalFirstObserved="2017-09-19T03:51:27.6785431Z",
        globalLastObserved="2020-01-06T03:59:21.3229314Z", size=22139496, fileType="APP", isPeFile=True,
        filePublisher="CHENGDU YIWO Tech Development Co., Ltd.", fileProductName="EaseUS MobiSaver for Android",
        signer="CHENGDU YIWO Tech Development Co., Ltd.", issuer="VeriSign Class 3 Code Signing 2010 CA",
        signerHash="6c3245d4a9bc0244d99dff27af259cbbae2e2d16", isValidCertificate=False, determinationType="Pua",
        determinationValue="PUA:Win32/FusionCore",
    )]


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
                   evidence=[file_evidence(SEED_FILE_SHA1, "invoice.ps1", "c:\\users\\alice\\downloads",
                                           sha256=SEED_FILE_SHA256)]),
        make_alert(title="Ransomware behavior detected in the file system", severity="High", category="Ransomware",
                   machineId="7c6b3dd4d1f0b0e1a5b3e2c9f6a7d8e9f0a1b2c3", computerDnsName="fs-01.contoso.com",
                   incidentId=1126102, mitreTechniques=["T1486"],
                   evidence=[file_evidence(SEED_FILE_SHA1, "invoice.ps1", "d:\\share", sha256=SEED_FILE_SHA256)]),
    ]


def seed_events(now: datetime | None = None) -> list[dict[str, Any]]:
    """Events that CreateAlertByReference can find and advanced hunting returns (the same list: each is a row of
    its `table`, see localdev/simulator/hunting.py): two old ones (a test's fixed event, and one of the sample
    alert's device), then the recent events behind the seed alerts (RECENT_EVENTS), `now` minus their offsets."""
    anchor = (now or datetime.now(UTC)).replace(microsecond=0)
    recent = [dict(event, eventTime=event_time(anchor - timedelta(seconds=int(event.pop("secondsAgo"))),
                                               str(event["reportId"])))
              for event in copy.deepcopy(RECENT_EVENTS)]
    return [
        dict(SEED_EVENT, computerDnsName="ws-0042.contoso.com", sha1=SEED_FILE_SHA1, sha256=SEED_FILE_SHA256,
             fileName="invoice.ps1", table="DeviceFileEvents", folderPath="c:\\users\\alice\\downloads"),
        {"reportId": "31337", "eventTime": "2026-11-20T08:15:42.1234567Z",
         "machineId": "111e6dd8c833c8a052ea231ec1b19adaf497b625",
         "computerDnsName": "temp123.middleeast.corp.microsoft.com",
         "sha1": SAMPLE_FILE_SHA1, "sha256": SAMPLE_FILE_SHA256, "fileName": "suspicious.dll",
         "table": "DeviceFileEvents", "folderPath": "c:\\temp"},
        *recent,
    ]


def event_time(moment: datetime, report_id: str) -> str:
    """A time in the second before `moment` (whole seconds; so never after it) in Defender's form, its seven
    fraction digits made from the report id: stable, and precise, as advanced hunting's times are (Create alert by
    reference wants them exactly)."""
    fraction = (int(report_id) * 7919) % 10**7 if report_id.isdigit() else 0
    return (moment - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{fraction:07d}Z"


_SAMPLE_MACHINE_ID = "111e6dd8c833c8a052ea231ec1b19adaf497b625"
_FS01_MACHINE_ID = "7c6b3dd4d1f0b0e1a5b3e2c9f6a7d8e9f0a1b2c3"
#: The recent events behind the seed alerts (advanced hunting keeps 30 days): their time is the simulator's start
#: (or reset) minus `secondsAgo`; everything else is fixed, so a query's answer is known (docs/local-development.md).
RECENT_EVENTS: tuple[dict[str, Any], ...] = (
    {"reportId": "7101", "secondsAgo": 3 * 3600, "machineId": SEED_MACHINE_ID, "computerDnsName": "ws-0042.contoso.com",
     "table": "DeviceFileEvents", "actionType": "FileCreated", "sha1": SEED_FILE_SHA1, "sha256": SEED_FILE_SHA256,
     "fileName": "invoice.ps1", "folderPath": "c:\\users\\alice\\downloads",
     "initiatingProcessFileName": "msedge.exe"},
    {"reportId": "7102", "secondsAgo": 3 * 3600 - 40, "machineId": SEED_MACHINE_ID,
     "computerDnsName": "ws-0042.contoso.com", "table": "DeviceProcessEvents", "actionType": "ProcessCreated",
     "sha1": SEED_FILE_SHA1, "sha256": SEED_FILE_SHA256, "fileName": "invoice.ps1",
     "folderPath": "c:\\users\\alice\\downloads", "initiatingProcessFileName": "powershell.exe",
     "processCommandLine": "powershell.exe -ExecutionPolicy Bypass -File c:\\users\\alice\\downloads\\invoice.ps1"},
    {"reportId": "7103", "secondsAgo": 2 * 3600, "machineId": _FS01_MACHINE_ID, "computerDnsName": "fs-01.contoso.com",
     "table": "DeviceFileEvents", "actionType": "FileCreated", "sha1": SEED_FILE_SHA1, "sha256": SEED_FILE_SHA256,
     "fileName": "invoice.ps1", "folderPath": "d:\\share", "initiatingProcessFileName": "System"},
    {"reportId": "7104", "secondsAgo": 2 * 3600 - 5, "machineId": _FS01_MACHINE_ID,
     "computerDnsName": "fs-01.contoso.com", "table": "DeviceEvents", "actionType": "AntivirusDetection",
     "sha1": SEED_FILE_SHA1, "sha256": SEED_FILE_SHA256, "fileName": "invoice.ps1", "folderPath": "d:\\share",
     "initiatingProcessFileName": "MsMpEng.exe"},
    {"reportId": "7105", "secondsAgo": 3600, "machineId": _SAMPLE_MACHINE_ID,
     "computerDnsName": "temp123.middleeast.corp.microsoft.com", "table": "DeviceFileEvents",
     "actionType": "FileCreated", "sha1": SAMPLE_FILE_SHA1, "sha256": SAMPLE_FILE_SHA256,
     "fileName": "suspicious.dll", "folderPath": "c:\\temp", "initiatingProcessFileName": "rundll32.exe"},
)


def generated_events(sha1: str, count: int, *, first_report_id: int, start: datetime, spacing_seconds: int = 1,
                     devices: int | None = None, table: str = "DeviceFileEvents", file_name: str = "sample.exe",
                     action_type: str | None = None) -> list[dict[str, Any]]:
    """`count` events about the file `sha1` (POST /_sim/hunting/events): report ids from `first_report_id` up,
    event i at `start` minus i * `spacing_seconds`, on `devices` devices (default: one each), all derived from
    the arguments, so the same call makes the same events."""
    sha1 = sha1.lower()
    anchor = start.replace(microsecond=0)
    events = []
    for index in range(count):
        device = index % (devices or count)
        report_id = str(first_report_id + index)
        events.append({
            "reportId": report_id, "eventTime": event_time(anchor - timedelta(seconds=index * spacing_seconds),
                                                           report_id),
            "machineId": hashlib.sha1(f"{sha1}/{device}".encode(), usedforsecurity=False).hexdigest(),
            "computerDnsName": f"host-{device:05d}.contoso.com", "table": table, "actionType": action_type,
            "sha1": sha1, "sha256": sha256_of(sha1), "fileName": file_name, "folderPath": "c:\\temp",
            "initiatingProcessFileName": "explorer.exe",
        })
    return events
