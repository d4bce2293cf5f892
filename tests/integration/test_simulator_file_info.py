"""The simulator's Get file information (`GET /api/files/{id}`), over loopback HTTP, against Defender's documented
contract: a SHA-1 or a SHA-256 in any case, the file entity or 404 ResourceNotFound, 400 InvalidHashValue for any
other id, role File.Read.All, its own limits (100/min, 1,500/h) answered with 429 + Retry-After.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from localdev.simulator.app import COMMERCIAL_AUDIENCE
from localdev.simulator.data import (
    DOCS_FILE_SHA1,
    DOCS_FILE_SHA256,
    FILE_FIELDS,
    SAMPLE_ALERT,
    SAMPLE_FILE_SHA1,
    SAMPLE_FILE_SHA256,
    SEED_EVENT,
    SEED_FILE_SHA1,
    SEED_FILE_SHA256,
    sha256_of,
)
from localdev.tokens import issue_token
from shared.defender.facts import API_FACTS, Api, file_alerts_path, file_info_path
from tests.support.inputs import VALID
from tests.support.servers import GENEROUS_LIMITS, SimulatorAdmin

ENTITY_CONTEXT = f"{COMMERCIAL_AUDIENCE}/api/$metadata#Files/$entity"
UNKNOWN_SHA1 = "0" * 40
UNKNOWN_SHA256 = "f" * 64


def bearer(roles: tuple[str, ...] | None = None) -> dict[str, str]:
    token = issue_token(COMMERCIAL_AUDIENCE)[0] if roles is None else issue_token(COMMERCIAL_AUDIENCE, roles=roles)[0]
    return {"Authorization": f"Bearer {token}"}


def file_info(sim: SimulatorAdmin, file_id: str, *, roles: tuple[str, ...] | None = None,
              session: requests.Session | None = None) -> requests.Response:
    return (session or requests).get(f"{sim.url}{file_info_path(file_id)}", headers=bearer(roles), timeout=10)


def error_of(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and error["target"]
    return error


@pytest.mark.parametrize("file_id", [SEED_FILE_SHA1, SEED_FILE_SHA1.upper(), SEED_FILE_SHA256,
                                     SEED_FILE_SHA256.upper()], ids=["sha1", "SHA1", "sha256", "SHA256"])
def test_seeded_file_by_either_hash_in_either_case(sim: SimulatorAdmin, file_id: str) -> None:
    response = file_info(sim, file_id)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    entity = response.json()
    assert list(entity) == ["@odata.context", *FILE_FIELDS]
    assert entity["@odata.context"] == ENTITY_CONTEXT
    assert (entity["sha1"], entity["sha256"]) == (SEED_FILE_SHA1, SEED_FILE_SHA256)
    assert entity["globalPrevalence"] == 2  # the two seed alerts about it are on two devices
    assert entity["fileType"] == "PS1" and entity["isPeFile"] is False


def test_seed_hashes_agree_with_the_alerts_evidence(sim: SimulatorAdmin) -> None:
    """Every alert about a seeded file names the pair that file information answers."""
    alerts = requests.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA1)}", headers=bearer(), timeout=5).json()["value"]
    pairs = {(e["sha1"], e["sha256"]) for alert in alerts for e in alert["evidence"]}
    assert pairs == {(SEED_FILE_SHA1, SEED_FILE_SHA256)}
    sample = json.loads(SAMPLE_ALERT.read_text())["evidence"][0]
    assert (sample["sha1"], sample["sha256"]) == (SAMPLE_FILE_SHA1, SAMPLE_FILE_SHA256)
    entity = file_info(sim, SAMPLE_FILE_SHA256).json()
    assert (entity["sha1"], entity["isPeFile"]) == (SAMPLE_FILE_SHA1, True)
    assert sha256_of(SEED_FILE_SHA1.upper()) == SEED_FILE_SHA256


def test_alert_created_by_reference_names_the_same_pair(sim: SimulatorAdmin) -> None:
    created = requests.post(f"{sim.url}/api/alerts/CreateAlertByReference", json=VALID, headers=bearer(), timeout=5)
    assert created.status_code == 200, created.text
    assert created.json()["machineId"] == SEED_EVENT["machineId"]
    assert {(e["sha1"], e["sha256"]) for e in created.json()["evidence"]} == {(SEED_FILE_SHA1, SEED_FILE_SHA256)}
    assert file_info(sim, SEED_FILE_SHA256).json()["sha1"] == SEED_FILE_SHA1


def test_the_documentations_example_file_is_known_without_an_alert(sim: SimulatorAdmin) -> None:
    entity = file_info(sim, DOCS_FILE_SHA1).json()
    assert entity["sha256"] == DOCS_FILE_SHA256
    assert entity["globalPrevalence"] == 180022 and entity["size"] == 22139496
    assert entity["determinationType"] == "Pua" and entity["determinationValue"] == "PUA:Win32/FusionCore"
    assert file_info(sim, DOCS_FILE_SHA256).json() == entity
    alerts = requests.get(f"{sim.url}{file_alerts_path(DOCS_FILE_SHA1)}", headers=bearer(), timeout=5)
    assert alerts.json()["value"] == []


@pytest.mark.parametrize("file_id", [UNKNOWN_SHA1, UNKNOWN_SHA256, UNKNOWN_SHA256.upper()])
def test_unknown_file_is_404_resource_not_found(sim: SimulatorAdmin, file_id: str) -> None:
    error = error_of(file_info(sim, file_id), 404, "ResourceNotFound")
    assert file_id in error["message"]


@pytest.mark.parametrize("file_id", [
    "d41d8cd98f00b204e9800998ecf8427e",  # MD5
    "not-a-hash", SEED_FILE_SHA1[:-1], SEED_FILE_SHA1 + "0", SEED_FILE_SHA256[:-1], SEED_FILE_SHA256 + "0",
    "g" * 40, "g" * 64,
], ids=["md5", "garbage", "sha1-short", "sha1-long", "sha256-short", "sha256-long", "sha1-not-hex", "sha256-not-hex"])
def test_other_ids_are_400_invalid_hash_value(sim: SimulatorAdmin, file_id: str) -> None:
    error_of(file_info(sim, file_id), 400, "InvalidHashValue")


def test_file_read_all_is_required_and_the_alert_roles_do_not_give_it(sim: SimulatorAdmin) -> None:
    assert API_FACTS[Api.FILE_INFO].roles == ("File.Read.All",)
    error = error_of(file_info(sim, SEED_FILE_SHA1, roles=("Alert.Read.All", "Alert.ReadWrite.All")), 403, "Forbidden")
    assert "Missing application roles. API required roles: File.Read.All." in error["message"]
    assert file_info(sim, SEED_FILE_SHA1, roles=("File.Read.All",)).status_code == 200
    # ... and File.Read.All alone does not read alerts
    alerts = requests.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA1)}", headers=bearer(("File.Read.All",)),
                          timeout=5)
    assert alerts.status_code == 403


def test_no_token_is_401(sim: SimulatorAdmin) -> None:
    error_of(requests.get(f"{sim.url}{file_info_path(SEED_FILE_SHA1)}", timeout=5), 401, "Unauthorized")


def test_the_101st_call_in_a_minute_is_429_and_other_apis_are_not_counted(sim: SimulatorAdmin) -> None:
    assert API_FACTS[Api.FILE_INFO].limits == "100/60,1500/3600"  # the simulator keeps the documented limits
    session = requests.Session()
    statuses = [file_info(sim, SEED_FILE_SHA256, session=session).status_code for _ in range(100)]
    assert statuses == [200] * 100
    refused = file_info(sim, SEED_FILE_SHA256, session=session)
    error = error_of(refused, 429, "TooManyRequests")
    assert "100 per 60 second(s)" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # the other APIs have budgets of their own
    alerts = session.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA1)}", headers=bearer(), timeout=5)
    assert alerts.status_code == 200
    assert [c["status"] for c in sim.calls(Api.FILE_INFO.value)][-2:] == [200, 429]


def test_file_alerts_calls_do_not_spend_file_information_budget(sim: SimulatorAdmin) -> None:
    sim.reset(limits={**GENEROUS_LIMITS, "file_alerts": [[2, 60]]})
    for _ in range(3):
        requests.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA1)}", headers=bearer(), timeout=5)
    assert [c["status"] for c in sim.calls("file_alerts")] == [200, 200, 429]
    assert file_info(sim, SEED_FILE_SHA1).status_code == 200


def test_the_hour_window_refuses_with_its_own_retry_after(sim: SimulatorAdmin) -> None:
    sim.reset(limits={**GENEROUS_LIMITS, "file_info": [[100, 60], [3, 3600]]})
    assert [file_info(sim, SEED_FILE_SHA1).status_code for _ in range(3)] == [200, 200, 200]
    refused = file_info(sim, SEED_FILE_SHA1)
    assert "3 per 3600 second(s)" in error_of(refused, 429, "TooManyRequests")["message"]
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600


def test_the_call_log_records_every_answer(sim: SimulatorAdmin) -> None:
    file_info(sim, SEED_FILE_SHA256)
    file_info(sim, UNKNOWN_SHA1)
    file_info(sim, "d41d8cd98f00b204e9800998ecf8427e")
    file_info(sim, SEED_FILE_SHA1, roles=("Alert.Read.All",))
    calls = sim.calls(Api.FILE_INFO.value)
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("GET", f"/api/files/{SEED_FILE_SHA256}", 200), ("GET", f"/api/files/{UNKNOWN_SHA1}", 404),
        ("GET", "/api/files/d41d8cd98f00b204e9800998ecf8427e", 400), ("GET", f"/api/files/{SEED_FILE_SHA1}", 403),
    ]
    assert all(c["body"] is None for c in calls)


def test_faults_apply_to_file_information_alone(sim: SimulatorAdmin) -> None:
    sim.fault("status", api="file_info", status=503, retry_after=7)
    faulted = file_info(sim, SEED_FILE_SHA1)
    assert faulted.status_code == 503 and faulted.headers["Retry-After"] == "7"
    sim.fault("status", api="file_info", status=500)
    alerts = requests.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA1)}", headers=bearer(), timeout=5)
    assert alerts.status_code == 200  # the fault waits for a file-information call
    assert file_info(sim, SEED_FILE_SHA1).status_code == 500
    sim.fault("latency", api="file_info", delay=0.3)
    assert file_info(sim, SEED_FILE_SHA1).status_code == 200  # late, but answered
    assert [call["fault"] for call in sim.calls("file_info")[-2:]] == ["status", "latency"]
    sim.fault("malformed", api="file_info")
    assert file_info(sim, SEED_FILE_SHA1).headers["Content-Type"].startswith("text/html")


def test_file_added_through_the_admin_api_until_reset(sim: SimulatorAdmin) -> None:
    sha1, sha256 = "ab" * 20, "CD" * 32
    added = sim.add_file(sha1=sha1.upper(), sha256=sha256, size=4096, fileType="DLL", isPeFile=True,
                         signer="Contoso Ltd.", determinationType="Clean")
    assert (added["sha1"], added["sha256"]) == (sha1, sha256.lower())
    entity = file_info(sim, sha256).json()
    assert entity == {"@odata.context": ENTITY_CONTEXT, **added}
    assert entity["size"] == 4096 and entity["signer"] == "Contoso Ltd." and entity["isValidCertificate"] is False
    # a second entity with the same SHA-1 replaces the first
    sim.add_file(sha1=sha1, sha256=sha256, size=8192)
    assert file_info(sim, sha1).json()["size"] == 8192
    sim.reset()
    error_of(file_info(sim, sha256), 404, "ResourceNotFound")
    assert file_info(sim, DOCS_FILE_SHA1).status_code == 200  # the seed is back


@pytest.mark.parametrize("body", [
    {"sha256": "cd" * 32}, {"sha1": "d41d8cd98f00b204e9800998ecf8427e"}, {"sha1": "ab" * 20, "sha256": "cd" * 20},
    {"sha1": "ab" * 20, "fileName": "not a file property"},
], ids=["no-sha1", "md5-as-sha1", "short-sha256", "unknown-property"])
def test_admin_refuses_what_is_not_a_file_entity(sim: SimulatorAdmin, body: dict[str, Any]) -> None:
    response = requests.post(f"{sim.url}/_sim/files", json=body, timeout=5)
    assert response.status_code == 400, response.text


def test_a_file_in_a_new_alerts_evidence_is_known(sim: SimulatorAdmin) -> None:
    sha1 = "12" * 20
    error_of(file_info(sim, sha1), 404, "ResourceNotFound")
    sim.add_alert(sha1=sha1, machineId="22" * 20)
    entity = file_info(sim, sha1).json()
    assert (entity["sha1"], entity["sha256"]) == (sha1, sha256_of(sha1))
    assert file_info(sim, sha256_of(sha1)).json() == entity
    assert entity["fileType"] == "EXE" and entity["isPeFile"] is True and entity["globalPrevalence"] == 1


def test_the_admin_listing_names_every_file_file_information_finds(sim: SimulatorAdmin) -> None:
    def listed() -> dict[str, dict[str, Any]]:
        files = requests.get(f"{sim.url}/_sim/files", timeout=5).json()["value"]
        return {entity["sha1"]: entity for entity in files}

    known = listed()
    assert {SEED_FILE_SHA1, DOCS_FILE_SHA1, SAMPLE_FILE_SHA1} <= set(known), sorted(known)
    assert known[SEED_FILE_SHA1]["sha256"] == SEED_FILE_SHA256
    for sha1, entity in known.items():  # what the listing says is what Get file information answers
        assert {k: v for k, v in file_info(sim, sha1).json().items() if k != "@odata.context"} == entity
    sha1 = "34" * 20
    sim.add_alert(sha1=sha1, machineId="22" * 20)
    assert sha1 in listed()


def test_the_file_alerts_route_is_unchanged(sim: SimulatorAdmin) -> None:
    alerts = requests.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA1.upper())}", headers=bearer(), timeout=5)
    assert alerts.status_code == 200
    assert alerts.json()["@odata.context"].endswith("/api/$metadata#Alerts") and len(alerts.json()["value"]) == 2
    by_sha256 = requests.get(f"{sim.url}{file_alerts_path(SEED_FILE_SHA256)}", headers=bearer(), timeout=5)
    error_of(by_sha256, 400, "InvalidHashValue")  # file alerts still take SHA-1 only
    assert [c["api"] for c in sim.calls()] == ["file_alerts", "file_alerts"]


def test_other_methods_on_a_file_are_not_routes(sim: SimulatorAdmin) -> None:
    response = requests.post(f"{sim.url}{file_info_path(SEED_FILE_SHA1)}", headers=bearer(), timeout=5)
    error_of(response, 404, "NotFound")
    assert sim.calls()[0]["api"] is None
