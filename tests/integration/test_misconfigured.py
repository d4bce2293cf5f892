"""Bad settings never take the app down silently: the host indexes every HTTP function, each answers 503
gateway-misconfigured naming every bad setting and why (never a secret value), the reason is logged at CRITICAL
once at start, and no queue function takes a message, so nothing queued is poisoned or lost meanwhile.

In Azure an exception while function_app is imported leaves the host with no function at all: every route 404,
no queue listener, the reason in a trace few read. These tests start the local host with bad settings."""

from __future__ import annotations

import time
import uuid

import requests

from localdev.azurite import Azurite
from localdev.simulator.data import SEED_FILE_SHA1
from tests.support.inputs import VALID, lookup_message
from tests.support.servers import FUNCTION_KEY, HostFactory, RequestQueue, SimulatorAdmin, assert_problem

SECRET_ISH = "https://user:hunter2@attacker.example.com"


def test_every_http_function_says_which_settings_are_wrong_and_no_queue_function_runs(
        host_factory: HostFactory, azurite: Azurite, sim: SimulatorAdmin) -> None:
    queue_name = "q" + uuid.uuid4().hex[:20]
    gateway = host_factory(MDE_BASE_URL="https://attacker.example.com", RATE_LIMIT_MARGIN_SECONDS="lots",
                           REQUESTS_QUEUE=queue_name)
    key = {"x-functions-key": FUNCTION_KEY}
    answers = {
        "lookup": requests.get(f"{gateway.url}/api/files/{SEED_FILE_SHA1}/alerts", headers=key, timeout=30),
        "create": requests.post(f"{gateway.url}/api/alerts/CreateAlertByReference", json=VALID, headers=key,
                                timeout=30),
        "operation": requests.get(f"{gateway.url}/api/operations/{uuid.uuid4().hex}", headers=key, timeout=30),
        "health": requests.get(f"{gateway.url}/api/health", headers=key, timeout=30),
        "openapi": requests.get(f"{gateway.url}/api/openapi.json", timeout=30),
    }
    for name, answer in answers.items():
        problem = assert_problem(answer, 503)
        assert problem["type"].endswith(":gateway-misconfigured"), name
        by_setting = {entry["setting"]: entry["problem"] for entry in problem["settings"]}
        assert set(by_setting) == {"MDE_BASE_URL", "RATE_LIMIT_MARGIN_SECONDS"}, name
        assert "not a Defender for Endpoint API host" in by_setting["MDE_BASE_URL"]
        assert "MDE_BASE_URL" in problem["detail"] and "RATE_LIMIT_MARGIN_SECONDS" in problem["detail"]
    assert requests.get(f"{gateway.url}/api/health", timeout=30).status_code == 401  # still behind its key
    assert sim.calls() == []

    log = gateway.host.log()
    assert log.count("CRITICAL") == 1 and "misconfigured" in log
    assert "ProcessRequestMessage" not in log  # no queue function was registered, so none listens

    queue = RequestQueue(azurite.connection_string, queue_name)
    queue.put(lookup_message(uuid.uuid4().hex, SEED_FILE_SHA1))
    time.sleep(3)  # several polling intervals of a listener, were there one
    (waiting,) = queue.service.get_queue_client(queue_name).peek_messages()
    assert waiting.dequeue_count == 0  # untouched: it runs once the settings are fixed
    assert queue.depth(queue_name + "-poison") == 0


def test_a_secret_in_a_bad_setting_is_never_repeated(host_factory: HostFactory) -> None:
    gateway = host_factory(MDE_BASE_URL=SECRET_ISH, AzureWebJobsStorage="AccountName=x;AccountKey=hunter2;nothing")
    answer = requests.get(f"{gateway.url}/api/health", headers={"x-functions-key": FUNCTION_KEY}, timeout=30)
    problem = assert_problem(answer, 503)
    assert {entry["setting"] for entry in problem["settings"]} == {"MDE_BASE_URL", "AzureWebJobsStorage"}
    assert "hunter2" not in answer.text and "hunter2" not in gateway.host.log()
