"""Bad settings never take the app down silently: the host indexes every HTTP function, each answers 503
gateway-misconfigured naming every bad setting and why to a caller with a key (never a secret value; an anonymous
caller hears only that the gateway is misconfigured), the reason is logged at CRITICAL
once at start, and no queue function takes a message, so nothing queued is poisoned or lost meanwhile.

In Azure an exception while function_app is imported leaves the host with no function at all: every route 404,
no queue listener, the reason in a trace few read. These tests start the local host with bad settings."""

from __future__ import annotations

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
    }
    for name, answer in answers.items():
        problem = assert_problem(answer, 503)
        assert problem["type"].endswith(":gateway-misconfigured"), name
        by_setting = {entry["setting"]: entry["problem"] for entry in problem["settings"]}
        assert set(by_setting) == {"MDE_BASE_URL", "RATE_LIMIT_MARGIN_SECONDS"}, name
        assert "not a Defender for Endpoint API host" in by_setting["MDE_BASE_URL"]
        assert "MDE_BASE_URL" in problem["detail"] and "RATE_LIMIT_MARGIN_SECONDS" in problem["detail"]
    anonymous = assert_problem(requests.get(f"{gateway.url}/api/openapi.json", timeout=30), 503)
    assert anonymous["type"].endswith(":gateway-misconfigured") and "settings" not in anonymous  # no key: no list
    assert requests.get(f"{gateway.url}/api/health", timeout=30).status_code == 401  # still behind its key
    assert sim.calls() == []

    log = gateway.host.log()
    assert log.count("CRITICAL") == 1 and "misconfigured" in log
    # The host lists what it indexed and every listener it started before it listens (localdev.functions_host.main):
    # the HTTP functions are there, no queue listener is, so no message can be taken however long one waits.
    listing = log[log.index("Worker: "):log.index("Listening on http://")]
    assert "GetFileRelatedAlerts: GET" in listing
    assert ": queue " not in listing and "ProcessRequestMessage" not in log

    queue = RequestQueue(azurite.connection_string, queue_name)
    queue.put(lookup_message(uuid.uuid4().hex, SEED_FILE_SHA1))
    (waiting,) = queue.service.get_queue_client(queue_name).peek_messages()
    assert waiting.dequeue_count == 0  # untouched: it runs once the settings are fixed
    assert queue.depth(queue_name + "-poison") == 0


def test_a_secret_in_a_bad_setting_is_never_repeated(host_factory: HostFactory) -> None:
    gateway = host_factory(MDE_BASE_URL=SECRET_ISH, AzureWebJobsStorage="AccountName=x;AccountKey=hunter2;nothing")
    answer = requests.get(f"{gateway.url}/api/health", headers={"x-functions-key": FUNCTION_KEY}, timeout=30)
    problem = assert_problem(answer, 503)
    assert {entry["setting"] for entry in problem["settings"]} == {"MDE_BASE_URL", "AzureWebJobsStorage"}
    assert "hunter2" not in answer.text and "hunter2" not in gateway.host.log()


PASSWORD = "hunter2pw"
SIGNATURE = "SAS0signature"


def test_secrets_in_url_settings_reach_no_answer_and_no_log_line(host_factory: HostFactory) -> None:
    """A SAS signature and a password in URL settings: absent from every route's answer (anonymous and keyed) and
    from the whole host log; the key holder hears which settings are wrong, named by scheme and host."""
    tenant, app, identity = (f"00000000-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
    gateway = host_factory(
        AzureWebJobsStorage="", AzureWebJobsStorage__tableServiceUri="https://acct.table.core.windows.net",
        AzureWebJobsStorage__queueServiceUri=f"https://acct.queue.core.windows.net/?sv=2022-11-02&sig={SIGNATURE}",
        AzureWebJobsStorage__credential="managedidentity", MDE_TENANTS=f"contoso={tenant}",
        MDE_MULTITENANT_CLIENT_ID=app, AZURE_CLIENT_ID=identity,
        MDE_AUTHORITY_HOST=f"https://user:{PASSWORD}@127.0.0.1:8443")
    routes = [("GET", f"files/{SEED_FILE_SHA1}/alerts", None), ("POST", "alerts/CreateAlertByReference", VALID),
              ("GET", f"tenants/contoso/files/{SEED_FILE_SHA1}/alerts", None),
              ("POST", "tenants/contoso/alerts/CreateAlertByReference", VALID),
              ("GET", f"operations/{uuid.uuid4().hex}", None), ("GET", "health", None), ("GET", "openapi.json", None),
              ("GET", "operator", None), ("GET", "operator/state", None), ("POST", "operator/redrive", {})]
    keyed_and_listed = {"files", "alerts", "tenants", "operations", "health"}
    for method, path, body in routes:
        for headers in ({}, {"x-functions-key": FUNCTION_KEY}):
            answer = requests.request(method, f"{gateway.url}/api/{path}", json=body, headers=headers, timeout=30)
            assert PASSWORD not in answer.text and SIGNATURE not in answer.text, (path, headers)
            if answer.status_code != 503:
                assert answer.status_code == 401, (path, headers)  # the host wants a key: the gateway says nothing
                continue
            problem = assert_problem(answer, 503)
            assert problem["type"].endswith(":gateway-misconfigured")
            if headers and path.split("/")[0] in keyed_and_listed:
                named = {entry["setting"]: entry["problem"] for entry in problem["settings"]}
                assert set(named) == {"AzureWebJobsStorage__queueServiceUri", "MDE_AUTHORITY_HOST"}, path
                assert "'https://acct.queue.core.windows.net'" in named["AzureWebJobsStorage__queueServiceUri"]
                assert "'https://127.0.0.1'" in named["MDE_AUTHORITY_HOST"]
            elif not headers or path == "openapi.json":
                assert "settings" not in problem and "MDE_" not in answer.text, path
    log = gateway.host.log()
    assert log.count("CRITICAL") == 1 and "MDE_AUTHORITY_HOST" in log
    assert PASSWORD not in log and SIGNATURE not in log
