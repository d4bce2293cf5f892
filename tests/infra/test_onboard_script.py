"""scripts/onboard-customer-tenant.sh, as a customer tenant's administrator runs it, against the fake az CLI and
Microsoft Graph (tests/infra/fake_az.py): the MSSP's app gets a service principal there, then the Defender roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra import bicep_model as bm
from tests.infra.fake_az import (
    DEFENDER_SP,
    FILE_ROLE,
    GRAPH_SP,
    HUNTING_ROLE,
    READ_ROLE,
    WRITE_ROLE,
    FakeCloud,
    fake_cloud,
)

SCRIPT = bm.REPO / "scripts" / "onboard-customer-tenant.sh"
APP = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5"


def posts(cloud: FakeCloud) -> list[tuple[str, dict[str, str]]]:
    calls = cloud.state().get("calls", [])
    return [(c[c.index("--url") + 1].rsplit("/v1.0/", 1)[1], json.loads(c[c.index("--body") + 1]))
            for c in calls if c[:3] == ["rest", "--method", "post"]]


def test_consents_then_grants_the_defender_roles_and_graphs_hunting_to_the_apps_service_principal(
        cloud: FakeCloud) -> None:
    result = cloud.run("--app-id", APP)
    assert result.returncode == 0, result.stderr
    sp = cloud.state()["service_principals"][APP]["id"]
    assert posts(cloud) == [("servicePrincipals", {"appId": APP})] + [
        (f"servicePrincipals/{resource}/appRoleAssignedTo",
         {"principalId": sp, "resourceId": resource, "appRoleId": role})
        for resource, role in ((DEFENDER_SP, READ_ROLE), (DEFENDER_SP, WRITE_ROLE), (DEFENDER_SP, FILE_ROLE),
                               (GRAPH_SP, HUNTING_ROLE))]  # hunting in this tenant: ThreatHunting.Read.All
    assert f"consented: the app {APP} has the service principal {sp}" in result.stdout
    assert "give the MSSP this tenant id" in result.stdout
    again = cloud.run("--app-id", APP)  # idempotent: nothing more is created or granted
    assert again.returncode == 0 and "already consented" in again.stdout and len(posts(cloud)) == 5


def test_the_graph_roles_can_be_left_out(cloud: FakeCloud) -> None:
    result = cloud.run("--app-id", APP, "--graph-roles", "")
    assert result.returncode == 0, result.stderr
    assert [body["resourceId"] for _, body in posts(cloud)[1:]] == [DEFENDER_SP] * 3


def test_a_dry_run_changes_nothing_and_a_bad_app_id_is_refused(cloud: FakeCloud) -> None:
    dry = cloud.run("--app-id", APP, "--dry-run")
    assert dry.returncode == 0 and "would consent" in dry.stdout and posts(cloud) == []
    bad = cloud.run("--app-id", "not-a-guid")
    assert bad.returncode == 1 and "GUID" in bad.stderr


def test_an_app_that_is_not_multi_tenant_is_reported(cloud: FakeCloud) -> None:
    cloud.update(unknown_apps=[APP])
    result = cloud.run("--app-id", APP)
    assert result.returncode == 1 and "multi-tenant app" in result.stderr


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return fake_cloud(tmp_path, "https://graph.microsoft.com/", SCRIPT)
