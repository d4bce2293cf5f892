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
    GRAPH_SP,
    HUNTING_ROLE,
    PRINCIPAL,
    READ_ROLE,
    ROLE_RESOURCES,
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


def test_grants_the_alert_roles_file_read_all_and_graphs_threat_hunting_looked_up_by_value(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL)
    assert result.returncode == 0, result.stderr
    assert cloud.posts() == [
        {"principalId": PRINCIPAL, "resourceId": DEFENDER_SP, "appRoleId": READ_ROLE},
        {"principalId": PRINCIPAL, "resourceId": DEFENDER_SP, "appRoleId": WRITE_ROLE},
        {"principalId": PRINCIPAL, "resourceId": DEFENDER_SP, "appRoleId": FILE_ROLE},
        {"principalId": PRINCIPAL, "resourceId": GRAPH_SP, "appRoleId": HUNTING_ROLE},  # on Microsoft Graph's
    ]
    assert f"granted: File.Read.All ({FILE_ROLE}) to {PRINCIPAL}" in result.stdout
    assert f"granted: ThreatHunting.Read.All ({HUNTING_ROLE}) to {PRINCIPAL}" in result.stdout
    assert "done: 4 granted, 0 already in place" in result.stdout


def test_default_roles_cover_every_api_and_match_the_bicep_module(cloud: FakeCloud) -> None:
    """The script and infra/defender-roles.bicep make the same assignments, enough for every API in shared/defender,
    each on the service principal of the service that serves it."""
    assert cloud.run("--principal-id", PRINCIPAL).returncode == 0
    granted = {ROLE_VALUES[post["appRoleId"]] for post in cloud.posts()}
    uncovered = {api.value: facts.roles for api, facts in API_FACTS.items() if not granted & set(facts.roles)}
    assert not uncovered, f"the default roles allow no call of {uncovered}"
    assert all(post["resourceId"] == ROLE_RESOURCES[post["appRoleId"]] for post in cloud.posts())
    parameters = bm.parse(bm.INFRA / "defender-roles.bicep")["parameters"]
    on_defender = {ROLE_VALUES[p["appRoleId"]] for p in cloud.posts() if p["resourceId"] == DEFENDER_SP}
    on_graph = {ROLE_VALUES[p["appRoleId"]] for p in cloud.posts() if p["resourceId"] == GRAPH_SP}
    assert on_defender == set(parameters["appRoleValues"]["default"])
    assert on_graph == set(parameters["graphAppRoleValues"]["default"])


def test_is_idempotent(cloud: FakeCloud) -> None:
    assert cloud.run("--principal-id", PRINCIPAL).returncode == 0
    again = cloud.run("--principal-id", PRINCIPAL)
    assert again.returncode == 0, again.stderr
    assert len(cloud.posts()) == 4  # none on the second run
    assert again.stdout.count("already granted") == 4
    assert "done: 0 granted, 4 already in place" in again.stdout


def test_only_the_missing_role_is_granted(cloud: FakeCloud) -> None:
    """An identity set up before File.Read.All and ThreatHunting.Read.All were added gets just those roles."""
    assert cloud.run("--principal-id", PRINCIPAL, "--roles", "Alert.Read.All,Alert.ReadWrite.All",
                     "--graph-roles", "").returncode == 0
    assert [p["appRoleId"] for p in cloud.posts()] == [READ_ROLE, WRITE_ROLE]
    again = cloud.run("--principal-id", PRINCIPAL)
    assert again.returncode == 0, again.stderr
    assert [p["appRoleId"] for p in cloud.posts()] == [READ_ROLE, WRITE_ROLE, FILE_ROLE, HUNTING_ROLE]
    assert "done: 2 granted, 2 already in place" in again.stdout


def test_an_assignment_made_meanwhile_counts_as_granted(cloud: FakeCloud) -> None:
    assert cloud.run("--principal-id", PRINCIPAL).returncode == 0
    cloud.update(hide_assignments=True)  # the read misses them; Graph answers 'already exists'
    again = cloud.run("--principal-id", PRINCIPAL)
    assert again.returncode == 0, again.stderr
    assert "done: 0 granted, 4 already in place" in again.stdout
    assert len(cloud.state()["assignments"]) == 4


def test_dry_run_changes_nothing(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert cloud.posts() == []
    assert cloud.state()["assignments"] == []
    assert result.stdout.count("would grant") == 4
    assert f"would grant: File.Read.All ({FILE_ROLE})" in result.stdout
    assert f"would grant: ThreatHunting.Read.All ({HUNTING_ROLE})" in result.stdout
    assert "done: 0 granted, 0 already in place (dry run)" in result.stdout


def test_dry_run_names_only_what_is_missing(cloud: FakeCloud) -> None:
    assert cloud.run("--principal-id", PRINCIPAL, "--roles", "Alert.ReadWrite.All").returncode == 0
    result = cloud.run("--principal-id", PRINCIPAL, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert len(cloud.posts()) == 2
    assert result.stdout.count("would grant") == 2
    assert "already granted: Alert.ReadWrite.All" in result.stdout
    assert "already granted: ThreatHunting.Read.All" in result.stdout


def test_roles_can_be_narrowed_to_read_only(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--roles", "Alert.Read.All", "--graph-roles", "")
    assert result.returncode == 0, result.stderr
    assert [p["appRoleId"] for p in cloud.posts()] == [READ_ROLE]


def test_graph_roles_alone(cloud: FakeCloud) -> None:
    """A hunting-only identity: no Defender role asked, so not even WindowsDefenderATP is looked up."""
    cloud.update(defender_onboarded=False)
    result = cloud.run("--principal-id", PRINCIPAL, "--roles", "", "--graph-roles", "ThreatHunting.Read.All")
    assert result.returncode == 0, result.stderr
    assert cloud.posts() == [{"principalId": PRINCIPAL, "resourceId": GRAPH_SP, "appRoleId": HUNTING_ROLE}]


def test_a_role_microsoft_graph_lacks_fails_before_granting(cloud: FakeCloud) -> None:
    result = cloud.run("--principal-id", PRINCIPAL, "--graph-roles", "ThreatHunting.ReadWrite.All")
    assert result.returncode != 0
    assert "Microsoft Graph has no application role 'ThreatHunting.ReadWrite.All'" in result.stderr
    assert cloud.posts() == []  # not the Defender roles resolved before it either


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
    result = cloud.run("--principal-id", PRINCIPAL, "--roles", " , ", "--graph-roles", " ")
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
    assert len(cloud.posts()) == 4


def test_help_prints_the_header() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    assert "AppRoleAssignment.ReadWrite.All" in result.stdout
    assert "set -euo pipefail" not in result.stdout
