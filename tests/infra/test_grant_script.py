"""scripts/grant-defender-roles.sh against a fake az CLI and a fake Microsoft Graph (tests/infra/fake_az.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.defender.facts import API_FACTS
from tests.infra import bicep_model as bm

SCRIPT = bm.REPO / "scripts" / "grant-defender-roles.sh"
FAKE_AZ = Path(__file__).with_name("fake_az.py")

DEFENDER_SP = "11111111-2222-4333-8444-555555555555"
READ_ROLE = "aaaaaaaa-0000-4000-8000-000000000001"
WRITE_ROLE = "aaaaaaaa-0000-4000-8000-000000000002"
FILE_ROLE = "aaaaaaaa-0000-4000-8000-000000000004"
ROLE_VALUES = {READ_ROLE: "Alert.Read.All", WRITE_ROLE: "Alert.ReadWrite.All", FILE_ROLE: "File.Read.All"}
PRINCIPAL = "99999999-8888-4777-8666-555555555555"
UA_PRINCIPAL = "77777777-8888-4777-8666-555555555555"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _initial_state(graph: str) -> dict[str, Any]:
    return {
        "tenant": "tenant-id",
        "graph": graph,
        "defender_sp": {
            "id": DEFENDER_SP,
            "appId": "fc780465-2017-40d4-a0c5-307022471b92",
            "appRoles": [
                {"id": "aaaaaaaa-0000-4000-8000-000000000009", "value": "Alert.Read.All",
                 "allowedMemberTypes": ["User"]},  # same value, not for applications: must be ignored
                {"id": READ_ROLE, "value": "Alert.Read.All", "allowedMemberTypes": ["Application"]},
                {"id": WRITE_ROLE, "value": "Alert.ReadWrite.All", "allowedMemberTypes": ["Application"]},
                {"id": "aaaaaaaa-0000-4000-8000-000000000003", "value": "Machine.Isolate",
                 "allowedMemberTypes": ["Application"]},
                {"id": FILE_ROLE, "value": "File.Read.All", "allowedMemberTypes": ["Application"]},
            ],
        },
        "principals": [PRINCIPAL, UA_PRINCIPAL],
        "functionapps": {
            "rg/func-sa": {"type": "SystemAssigned", "principalId": PRINCIPAL, "userAssignedIdentities": None},
            "rg/func-ua": {"type": "UserAssigned", "principalId": None,
                           "userAssignedIdentities": {"/subscriptions/x/id-ua": {"principalId": UA_PRINCIPAL,
                                                                                   "clientId": "c"}}},
        },
        "assignments": [],
    }


@dataclass
class FakeCloud:
    """The fake az on PATH and its state file."""

    bin_dir: Path
    state_file: Path

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))

    def update(self, **changes: Any) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **changes}))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "FAKE_AZ_STATE": str(self.state_file), "LC_ALL": "C"}
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60,
                              check=False)

    def posts(self) -> list[dict[str, Any]]:
        calls = self.state().get("calls", [])
        return [json.loads(c[c.index("--body") + 1]) for c in calls if c[:3] == ["rest", "--method", "post"]]


@pytest.fixture(params=["https://graph.microsoft.com/"])
def cloud(tmp_path: Path, request: pytest.FixtureRequest) -> FakeCloud:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_AZ}" "$@"\n')
    az.chmod(0o755)
    azd = bin_dir / "azd"  # no azd environment here
    azd.write_text("#!/bin/sh\nexit 1\n")
    azd.chmod(0o755)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(_initial_state(str(request.param))))
    return FakeCloud(bin_dir, state_file)


def test_grants_the_alert_roles_and_file_read_all_looked_up_by_value(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL)
    assert result.returncode == 0, result.stderr
    assert cloud.posts() == [
        {"principalId": PRINCIPAL, "resourceId": DEFENDER_SP, "appRoleId": READ_ROLE},
        {"principalId": PRINCIPAL, "resourceId": DEFENDER_SP, "appRoleId": WRITE_ROLE},
        {"principalId": PRINCIPAL, "resourceId": DEFENDER_SP, "appRoleId": FILE_ROLE},
    ]
    assert f"granted: File.Read.All ({FILE_ROLE}) to {PRINCIPAL}" in result.stdout
    assert "done: 3 granted, 0 already in place" in result.stdout


def test_default_roles_cover_every_defender_api_and_match_the_bicep_module(cloud: FakeCloud) -> None:
    """The script and infra/defender-roles.bicep make the same assignments, enough for every API in shared/defender."""
    assert cloud.run("--principal-id", PRINCIPAL).returncode == 0
    granted = {ROLE_VALUES[post["appRoleId"]] for post in cloud.posts()}
    uncovered = {api.value: facts.roles for api, facts in API_FACTS.items() if not granted & set(facts.roles)}
    assert not uncovered, f"the default roles allow no call of {uncovered}"
    bicep_default = bm.parse(bm.INFRA / "defender-roles.bicep")["parameters"]["appRoleValues"]["default"]
    assert granted == set(bicep_default)


def test_is_idempotent(cloud: FakeCloud) -> None:
    assert cloud.run("--principal-id", PRINCIPAL).returncode == 0
    again = cloud.run("--principal-id", PRINCIPAL)
    assert again.returncode == 0, again.stderr
    assert len(cloud.posts()) == 3  # none on the second run
    assert again.stdout.count("already granted") == 3
    assert "done: 0 granted, 3 already in place" in again.stdout


def test_only_the_missing_role_is_granted(cloud: FakeCloud) -> None:
    """An identity set up before File.Read.All was added gets just that role."""
    assert cloud.run("--principal-id", PRINCIPAL, "--roles", "Alert.Read.All,Alert.ReadWrite.All").returncode == 0
    again = cloud.run("--principal-id", PRINCIPAL)
    assert again.returncode == 0, again.stderr
    assert [p["appRoleId"] for p in cloud.posts()] == [READ_ROLE, WRITE_ROLE, FILE_ROLE]
    assert "done: 1 granted, 2 already in place" in again.stdout


def test_an_assignment_made_meanwhile_counts_as_granted(cloud: FakeCloud) -> None:
    assert cloud.run("--principal-id", PRINCIPAL).returncode == 0
    cloud.update(hide_assignments=True)  # the read misses them; Graph answers 'already exists'
    again = cloud.run("--principal-id", PRINCIPAL)
    assert again.returncode == 0, again.stderr
    assert "done: 0 granted, 3 already in place" in again.stdout
    assert len(cloud.state()["assignments"]) == 3


def test_dry_run_changes_nothing(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert cloud.posts() == []
    assert cloud.state()["assignments"] == []
    assert result.stdout.count("would grant") == 3
    assert f"would grant: File.Read.All ({FILE_ROLE})" in result.stdout
    assert "done: 0 granted, 0 already in place (dry run)" in result.stdout


def test_dry_run_names_only_what_is_missing(cloud: FakeCloud) -> None:
    assert cloud.run("--principal-id", PRINCIPAL, "--roles", "Alert.ReadWrite.All").returncode == 0
    result = cloud.run("--principal-id", PRINCIPAL, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert len(cloud.posts()) == 1
    assert result.stdout.count("would grant") == 2
    assert "already granted: Alert.ReadWrite.All" in result.stdout


def test_roles_can_be_narrowed_to_read_only(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--roles", "Alert.Read.All")
    assert result.returncode == 0, result.stderr
    assert [p["appRoleId"] for p in cloud.posts()] == [READ_ROLE]


@pytest.mark.parametrize("roles", ["Alert.Delete.All", "Alert.Read.All,Alert.Delete.All"])
def test_unknown_role_fails_before_granting(cloud: FakeCloud, roles: str) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--roles", roles)
    assert result.returncode != 0
    assert "no application role 'Alert.Delete.All'" in result.stderr
    assert cloud.posts() == []  # not even the known role before it


def test_a_tenant_without_file_read_all_fails_before_granting(cloud: FakeCloud) -> None:
    sp = cloud.state()["defender_sp"]
    cloud.update(defender_sp={**sp, "appRoles": [r for r in sp["appRoles"] if r["value"] != "File.Read.All"]})
    result = cloud.run("--principal-id", PRINCIPAL)
    assert result.returncode != 0
    assert "no application role 'File.Read.All'" in result.stderr
    assert cloud.posts() == []


def test_no_role_to_grant_is_refused(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--roles", " , ")
    assert result.returncode != 0
    assert "no app role to grant" in result.stderr


@pytest.mark.parametrize("app,principal", [("func-sa", PRINCIPAL), ("func-ua", UA_PRINCIPAL)])
def test_identity_of_a_function_app(cloud: FakeCloud, app: str, principal: str) -> None:
    result = cloud.run("--function-app", app, "--resource-group", "rg")
    assert result.returncode == 0, result.stderr
    assert {p["principalId"] for p in cloud.posts()} == {principal}


@pytest.mark.parametrize(
    "args,message",
    [
        ((), "no identity"),
        (("--principal-id", "not-a-guid"), "is not an object id"),
        (("--principal-id", f"{PRINCIPAL}/../x"), "is not an object id"),
        (("--roles", "x' || true || '", "--principal-id", PRINCIPAL), "not an app role value"),
        (("--function-app", "func-sa"), "needs --resource-group"),
        (("--bogus",), "unknown argument"),
    ],
)
def test_bad_input_is_refused(cloud: FakeCloud, args: tuple[str, ...], message: str) -> None:
    result = cloud.run(*args)
    assert result.returncode != 0
    assert message in result.stderr
    assert cloud.posts() == []


def test_needs_a_signed_in_cli(cloud: FakeCloud) -> None:
    cloud.update(logged_in=False)
    result = cloud.run("--principal-id", PRINCIPAL)
    assert result.returncode != 0
    assert "az login" in result.stderr


def test_tenant_without_defender_for_endpoint(cloud: FakeCloud) -> None:
    cloud.update(defender_onboarded=False)
    result = cloud.run("--principal-id", PRINCIPAL)
    assert result.returncode != 0
    assert "WindowsDefenderATP" in result.stderr


@pytest.mark.parametrize("cloud", ["https://graph.microsoft.us/"], indirect=True)
def test_uses_the_graph_endpoint_of_the_signed_in_cloud(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL)
    assert result.returncode == 0, result.stderr  # the fake refuses any other Graph host or resource
    assert len(cloud.posts()) == 3


def test_help_prints_the_header() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    assert "AppRoleAssignment.ReadWrite.All" in result.stdout
    assert "set -euo pipefail" not in result.stdout
