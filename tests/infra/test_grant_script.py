"""scripts/grant-defender-roles.sh against a fake az CLI and a fake Microsoft Graph (tests/infra/fake_az.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from shared.defender.facts import API_FACTS
from tests.infra import bicep_model as bm
from tests.infra.fake_az import (
    DEFENDER_SP,
    FILE_ROLE,
    PRINCIPAL,
    READ_ROLE,
    ROLE_VALUES,
    UA_PRINCIPAL,
    WRITE_ROLE,
    FakeCloud,
    fake_cloud,
)
from tests.support.requirements import require

SCRIPT = bm.REPO / "scripts" / "grant-defender-roles.sh"
FAKE_AZ = Path(__file__).with_name("fake_az.py")



@pytest.fixture(autouse=True)
def bash() -> None:
    require(shutil.which("bash") is not None, "bash", "apt-get install bash")


@pytest.fixture(params=["https://graph.microsoft.com/"])
def cloud(tmp_path: Path, request: pytest.FixtureRequest) -> FakeCloud:
    return fake_cloud(tmp_path, str(request.param), SCRIPT)


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
