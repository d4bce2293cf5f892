"""The document is the contract, and a tool we did not write checks it: schemathesis against the local stack.

Schemathesis's own CLI (`st run`, as anyone would run it; its settings in tests/integration/schemathesis.toml) reads
the gateway's `GET /api/openapi.json` from a local host on the fixtures' Azurite, Defender simulator and identity
endpoint, in function-key mode as `make run` (the function key as the document's api_key; the operator's routes
the master key, their auth level `admin`), with the customer tenant contoso listed as `make run` lists it (the
document's example tenant). It runs every check in all four phases (examples, coverage, fuzzing, stateful) with a
fixed seed and a fixed number of examples per operation, and must report no failure and no warning (a warning such
as "missing test data" means an operation was not really reached).

One check is off, `unsupported_method`: it wants 405 for a method a path does not list, but such a request never
reaches the gateway. Azure's Functions host answers it 404 (it has no 405) and the local host answers as Azure does
(tests/integration/test_local_host.py checks that; docs/api.md says so); no document can change the host.

The re-drive (POST /api/operator/redrive) is exercised, not excluded: it acts only on the host's own poison queue,
and the test first poisons a few lookups (Defender refuses them) so that the state lists entries; the document's
link from the state to the re-drive (`x-links`) lets the stateful phase re-drive them, and the generated requests
get their 400, 404 and 409.

What the tool cannot express stays a test of its own here: that the document the host serves, anonymously, is the
one shared/http/openapi.py generates for it (the tool takes whatever document it is given).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from localdev.simulator.data import SEED_FILE_SHA1
from localdev.stack import LOCAL_CUSTOMER_TENANT, many_tenants
from shared.defender.facts import Api
from shared.http import openapi
from shared.http.settings import AuthMode
from tests.support.servers import (
    FUNCTION_KEY,
    GENEROUS_LIMITS,
    MASTER_KEY,
    GatewayClient,
    HostFactory,
    SimulatorAdmin,
)

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20251
#: Test cases per operation and phase: every operation and status the document lists is reached (about 1,100 cases
#: in all), and the run takes under 1.5 minutes on one core kept busy by another process.
MAX_EXAMPLES = 50
POISONED = 3


@pytest.fixture(scope="module")
def contract_gateway(host_factory: HostFactory) -> GatewayClient:
    """A host of its own (its queues and poison queue are this test's), serving contoso beside the home tenant, with
    the shared answer cache on (its Cache-Control and Age headers are checked too) and a failed queued request
    poisoned at once (QUEUE_MAX_RETRIES=0). Defender's timeouts are generous: on a busy machine a slow simulator must
    not turn into a 504 that the document allows but the tool's not_a_server_error check counts."""
    return host_factory(**many_tenants(), FILE_ALERTS_CACHE_SECONDS="60", MDE_MAX_RETRY_AFTER_SECONDS="2",
                        MDE_READ_TIMEOUT_SECONDS="20", MDE_TOTAL_TIMEOUT_SECONDS="50", QUEUE_MAX_RETRIES="0",
                        RATE_LIMIT_HUNTING="5000/1")


def poison_lookups(gateway: GatewayClient, sim: SimulatorAdmin, count: int) -> None:
    """`count` queued lookups that Defender refuses (400, final), poisoned: entries the re-drive can take."""
    sim.fault("status", status=400, api="file_alerts", count=count)
    for _ in range(count):
        accepted = gateway.get_alerts(SEED_FILE_SHA1, headers={"Prefer": "respond-async", "Cache-Control": "no-cache"})
        assert accepted.status_code == 202, accepted.text
        assert gateway.wait_for_operation(accepted.headers["Location"]).status_code == 400


def schemathesis_run(gateway: GatewayClient, report: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
               f"{gateway.url}/api/openapi.json", "--checks", "all", "--exclude-checks", "unsupported_method",
               "--phases", "examples,coverage,fuzzing,stateful", "--seed", str(SEED),
               "--max-examples", str(MAX_EXAMPLES), "--generation-database", "none", "--workers", "1",
               "--request-timeout", "60", "--no-color", "--report", "json", "--report-json-path", str(report)]
    env = {**os.environ, "GATEWAY_FUNCTION_KEY": FUNCTION_KEY, "GATEWAY_MASTER_KEY": MASTER_KEY}
    return subprocess.run(command, capture_output=True, text=True, timeout=270, check=False, env=env)


def test_schemathesis_finds_no_disagreement_between_the_document_and_the_answers(
        contract_gateway: GatewayClient, sim: SimulatorAdmin, tmp_path: Path) -> None:
    # Hunting as generous as the other APIs (the host's RATE_LIMIT_HUNTING too): each operation must answer more than
    # its 429s, or the tool learns nothing of its answers.
    sim.reset({**GENEROUS_LIMITS, Api.HUNTING.value: [[100000, 60]]})
    sim.add_alert(tenant=LOCAL_CUSTOMER_TENANT, sha1=SEED_FILE_SHA1, title="Contoso: suspicious PowerShell")
    poison_lookups(contract_gateway, sim, POISONED)

    run = schemathesis_run(contract_gateway, tmp_path / "report.json")

    output = f"{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["complete"] and report["failures"] == [] and report["errors"] == [], output
    assert report["operations"]["tested"] == report["operations"]["total"] == report["operations"]["selected"], output
    assert {name: phase["status"] for name, phase in report["phases"].items()} == {
        "examples": "success", "coverage": "success", "fuzzing": "success", "stateful": "success"}, output
    assert all(not found for found in report["warnings"].values()), output
    print(f"schemathesis: {report['test_cases']['generated']} test cases, seed {report['seed']}")


def test_the_host_serves_the_generated_document_without_a_key(contract_gateway: GatewayClient) -> None:
    url = f"{contract_gateway.url}/api/openapi.json"
    response = requests.get(url, timeout=30)  # anonymous: no function key
    assert response.status_code == 200, (
        f"GET /api/openapi.json answered {response.status_code}: is openapi_fn's blueprint registered in "
        "function_app.py?")
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == openapi.served_document(AuthMode.FUNCTION_KEY, url)
