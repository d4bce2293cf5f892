"""checkov scans infra/ clean: no failed check, no parsing error, and only the reviewed skips.

checkov lives in its own virtual environment (.checkov-venv: it pins pycep-parser 0.5.1, the app's
tests use 0.7.1). Without it the test is skipped locally and fails under CI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.infra import bicep_model as bm
from tests.support.requirements import require

VENV_BIN = bm.REPO / ".checkov-venv" / ("Scripts" if sys.platform == "win32" else "bin")
CHECKOV = VENV_BIN / "checkov"
CONFIG = bm.INFRA / ".checkov.yaml"

# Each skip is an inline `// checkov:skip=ID: reason` next to the resource; the reasons are the
# review. A new skip (or a skip that no longer applies) must be looked at again, here.
EXPECTED_SKIPS = {
    # storage.bicep
    ("CKV_AZURE_35", "Microsoft.Storage/storageAccounts.storage"),   # network default deny (Flex without VNet)
    ("CKV_AZURE_59", "Microsoft.Storage/storageAccounts.storage"),   # public network access (same)
    ("CKV_AZURE_206", "Microsoft.Storage/storageAccounts.storage"),  # geo-replication of ephemeral data
    ("CKV_AZURE_43", "Microsoft.Storage/storageAccounts.storage"),   # name computed at deployment
    # function-app.bicep
    ("CKV_AZURE_225", "Microsoft.Web/serverfarms.plan"),             # zone redundancy is opt-in (cost)
    ("CKV_AZURE_222", "Microsoft.Web/sites.functionApp"),            # public API by design
    ("CKV_AZURE_17", "Microsoft.Web/sites.functionApp"),             # client certificates
    ("CKV_AZURE_212", "Microsoft.Web/sites.functionApp"),            # numberOfWorkers: not on Flex
    ("CKV_AZURE_213", "Microsoft.Web/sites.functionApp"),            # health check: not on Flex
    # entra-auth.bicep: checks of the 'web' site config that checkov applies to authsettingsV2
    ("CKV_AZURE_13", "Microsoft.Web/sites/config.authSettings"),
    ("CKV_AZURE_63", "Microsoft.Web/sites/config.authSettings"),
    ("CKV_AZURE_65", "Microsoft.Web/sites/config.authSettings"),
    ("CKV_AZURE_66", "Microsoft.Web/sites/config.authSettings"),
    ("CKV_AZURE_80", "Microsoft.Web/sites/config.authSettings"),
    ("CKV_AZURE_88", "Microsoft.Web/sites/config.authSettings"),
    ("CKV_AZURE_222", "Microsoft.Web/sites/config.authSettings"),
    # main.bicep's app settings (a sites/config 'appsettings'): the same checks of the 'web' site config
    ("CKV_AZURE_13", "Microsoft.Web/sites/config.appSettings"),
    ("CKV_AZURE_63", "Microsoft.Web/sites/config.appSettings"),
    ("CKV_AZURE_65", "Microsoft.Web/sites/config.appSettings"),
    ("CKV_AZURE_66", "Microsoft.Web/sites/config.appSettings"),
    ("CKV_AZURE_80", "Microsoft.Web/sites/config.appSettings"),
    ("CKV_AZURE_88", "Microsoft.Web/sites/config.appSettings"),
    ("CKV_AZURE_222", "Microsoft.Web/sites/config.appSettings"),
}

# Checks that must keep passing (the controls this deployment relies on).
REQUIRED_PASSES = {
    ("CKV_AZURE_3", "Microsoft.Storage/storageAccounts.storage"),    # HTTPS only
    ("CKV_AZURE_44", "Microsoft.Storage/storageAccounts.storage"),   # TLS 1.2
    ("CKV_AZURE_34", "Microsoft.Storage/storageAccounts/blobServices/containers.deploymentContainer"),
    ("CKV_AZURE_70", "Microsoft.Web/sites.functionApp"),             # HTTPS only
    ("CKV_AZURE_15", "Microsoft.Web/sites.functionApp"),             # TLS 1.2
    ("CKV_AZURE_78", "Microsoft.Web/sites.functionApp"),             # no FTP
    ("CKV_AZURE_16", "Microsoft.Web/sites.functionApp"),             # managed identity
    ("CKV_AZURE_71", "Microsoft.Web/sites.functionApp"),             # managed identity
    ("CKV_AZURE_56", "Microsoft.Web/sites/config.authSettings"),     # Entra auth enabled
    ("CKV_AZURE_70", "Microsoft.Web/sites/config.authSettings"),     # requireHttps
}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    require(CHECKOV.is_file(), f"checkov in {VENV_BIN.parent}",
            "python3 -m venv .checkov-venv && .checkov-venv/bin/pip install checkov==3.3.30 (or `make setup`)")
    env = {**os.environ, "LOG_LEVEL": "WARNING", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [str(CHECKOV), "--config-file", str(CONFIG.relative_to(bm.REPO))],
        cwd=bm.REPO, capture_output=True, text=True, timeout=900, env=env, check=False,
    )
    # Exit 1 means failed checks (reported below); anything else besides 0 is checkov failing.
    assert result.returncode in (0, 1), f"checkov exited {result.returncode}:\n{result.stderr[-4000:]}"
    try:
        parsed = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON report:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    reports = parsed if isinstance(parsed, list) else [parsed]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep) == 1, f"no bicep report in checkov's output: {result.stdout[:2000]}"
    return dict(bicep[0])


def _list_option(config: str, key: str) -> list[str]:
    """The items of a top-level list option of a (flat) checkov YAML configuration."""
    values: list[str] = []
    inside = False
    for line in config.splitlines():
        if line.startswith(f"{key}:"):
            inside = True
        elif inside and (item := re.match(r"^\s+-\s*(\S+)\s*$", line)):
            values.append(item.group(1))
        elif inside and line.strip() and not line.lstrip().startswith("#"):
            break
    return values


def _ids(checks: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(check["check_id"], check["resource"]) for check in checks}


def test_no_parsing_errors(report: dict[str, Any]) -> None:
    # checkov exits 0 when it cannot parse a file: only the report tells.
    assert report["results"]["parsing_errors"] == []
    assert report["summary"]["parsing_errors"] == 0


def test_no_failed_checks(report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['check_name']} on {c['resource']} ({c['file_path']}:{c['file_line_range']})"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov findings:\n" + "\n".join(failed)
    assert report["summary"]["failed"] == 0


def test_every_file_and_key_resource_was_scanned(report: dict[str, Any]) -> None:
    results = report["results"]
    checks = results["passed_checks"] + results["skipped_checks"]
    # (monitoring.bicep and roles.bicep hold nothing checkov has checks for)
    assert {c["file_path"] for c in checks} == {"/main.bicep", "/storage.bicep", "/function-app.bicep",
                                                "/entra-auth.bicep"}
    assert _ids(results["passed_checks"]) >= REQUIRED_PASSES


def test_only_reviewed_skips_each_with_a_reason(report: dict[str, Any]) -> None:
    skipped = report["results"]["skipped_checks"]
    assert _ids(skipped) == EXPECTED_SKIPS
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) >= 60, f"{check['check_id']} on {check['resource']}: reason too thin: {reason!r}"


@pytest.mark.parametrize("name", ["defender-roles.bicep", "federated-credential.bicep", "gateway-app-roles.bicep"])
def test_the_excluded_files_hold_only_graph_resources(name: str) -> None:
    """The Graph extension's files are excluded (pycep 0.5.1 predates `extension`); they must stay Graph-only."""
    assert _list_option(CONFIG.read_text(), "skip-path") == [r"defender-roles\.bicep$",
                                                             r"federated-credential\.bicep$",
                                                             r"gateway-app-roles\.bicep$"]
    tree = bm.parse(bm.INFRA / name)
    assert tree["resources"]
    assert all(res["type"].startswith("Microsoft.Graph/") for res in tree["resources"].values())
    assert not tree.get("modules")
