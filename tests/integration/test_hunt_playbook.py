"""The Hunt-And-Alert-DefenderFile playbook's data path, over loopback: the hunting query its template writes for a
file hash, sent as its HTTP action sends it (Graph's shape, `Prefer: respond-async`) through a local Functions host to
the simulator's runHuntingQuery; the devices picked from the rows as its actions pick them (each once, newest event
first, at most MaxDevices); and a create by reference per device with the row's Timestamp, ReportId and DeviceId,
which the simulator accepts only for an event it returned.

Logic Apps itself does not run here: its expressions are read from the template (tests/playbooks check them
statically) and their few steps (Select, union, take, Filter array, first) are done in Python below.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from localdev.simulator.data import SEED_FILE_SHA1, SEED_FILE_SHA256
from tests.playbooks import actions as pa
from tests.support.servers import GatewayClient, SimulatorAdmin

TEMPLATE = pa.load(pa.PLAYBOOKS / "Hunt-And-Alert-DefenderFile" / "azuredeploy.json")
HUNT, CREATE = pa.http_actions(TEMPLATE)
#: The seed file's DeviceFileEvents in the simulator (localdev/simulator/data.py RECENT_EVENTS): fs-01 two hours
#: ago, ws-0042 three hours ago, newest first.
FS01 = "7c6b3dd4d1f0b0e1a5b3e2c9f6a7d8e9f0a1b2c3"
WS0042 = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


def _query(column: str, file_hash: str, table: str = "DeviceFileEvents") -> str:
    """The playbook's query for one FileHash entity, its template's parameters at their defaults."""
    values = {"parameters('HuntingTable')": table, "items('For_each_hash')?['Column']": column,
              "items('For_each_hash')?['Hash']": file_hash,
              "parameters('LookbackDays')": str(TEMPLATE["parameters"]["LookbackDays"]["defaultValue"]),
              "parameters('MaxEvents')": str(TEMPLATE["parameters"]["MaxEvents"]["defaultValue"])}
    assert HUNT.body is not None
    query = str(HUNT.body["Query"])
    for inner in pa.interpolations(query):
        query = query.replace("@{" + inner + "}", values[inner], 1)
    return query


def _send(gateway: GatewayClient, action: pa.HttpAction, path: str, body: dict[str, Any],
          idempotency_key: str | None = None) -> requests.Response:
    """One of the playbook's HTTP actions: its headers, then the operation polled as Logic Apps polls Location."""
    headers = {key: value for key, value in action.headers.items() if key.lower() != "idempotency-key"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = requests.post(f"{gateway.url}/api{path}", data=json.dumps(body), timeout=60,
                             headers={"x-functions-key": gateway.key, **headers})
    if response.status_code == 202:
        return gateway.wait_for_operation(response.headers["Location"])
    return response


def _latest_event_per_device(rows: list[dict[str, Any]], max_devices: int) -> list[dict[str, Any]]:
    """Select_device_ids, Compose_distinct_devices (union keeps the first of each), Compose_devices (take), and per
    device Filter_array_-_events_of_device then first()."""
    devices = list(dict.fromkeys(str(row["DeviceId"]) for row in rows))[:max_devices]
    return [next(row for row in rows if str(row["DeviceId"]) == device) for device in devices]


@pytest.mark.parametrize(("column", "file_hash"), [("SHA1", SEED_FILE_SHA1), ("SHA256", SEED_FILE_SHA256)])
def test_the_playbooks_hunt_feeds_one_create_per_device_on_its_latest_event(
        gateway: GatewayClient, sim: SimulatorAdmin, column: str, file_hash: str) -> None:
    hunt = _send(gateway, HUNT, "/security/runHuntingQuery", {"Query": _query(column, file_hash)})
    assert hunt.status_code == 200, hunt.text
    answer = hunt.json()
    assert [entry["name"] for entry in answer["schema"]][:3] == ["Timestamp", "ReportId", "DeviceId"]
    rows = answer["results"]
    assert [row["DeviceId"] for row in rows] == [FS01, WS0042]  # order by Timestamp desc
    events = _latest_event_per_device(rows, TEMPLATE["parameters"]["MaxDevices"]["defaultValue"])
    assert [event["DeviceId"] for event in events] == [FS01, WS0042]
    for event in events:
        # Compose_event_reference: string(ReportId), Timestamp as Graph gave it, DeviceId.
        body = {"machineId": event["DeviceId"], "severity": "Low", "title": f"File {file_hash} found by hunting",
                "description": "Found by the hunt playbook's query.", "recommendedAction": "Investigate.",
                "eventTime": event["Timestamp"], "reportId": str(event["ReportId"]), "category": "Malware"}
        created = _send(gateway, CREATE, "/alerts/CreateAlertByReference", body,
                        idempotency_key=f"hunt-incident-{file_hash}-{event['DeviceId']}")
        assert created.status_code == 200, created.text
        assert created.json()["machineId"] == event["DeviceId"]
    assert len(sim.calls("hunting")) == 1 and len(sim.calls("create_alert")) == len(events)


def test_with_max_devices_1_only_the_device_of_the_newest_event_is_alerted(gateway: GatewayClient) -> None:
    hunt = _send(gateway, HUNT, "/security/runHuntingQuery", {"Query": _query("SHA1", SEED_FILE_SHA1)})
    assert hunt.status_code == 200, hunt.text
    (event,) = _latest_event_per_device(hunt.json()["results"], 1)
    assert (event["DeviceId"], str(event["ReportId"])) == (FS01, "7103")
