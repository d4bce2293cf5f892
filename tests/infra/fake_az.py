"""A stand-in for the Azure CLI with a fake Microsoft Graph, for testing scripts/grant-defender-roles.sh (and
scripts/onboard-customer-tenant.sh): the tenant's WindowsDefenderATP and Microsoft Graph service principals, whose
app roles are granted, and other apps' service principals.

It answers exactly the az commands (and JMESPath queries) the script uses, from and to a JSON state
file named by FAKE_AZ_STATE, and records every call there. Anything else fails loudly (exit 2) so a
change in the script cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _options(args: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i].startswith("-"):
            options[args[i]] = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else ""
            i += 2 if options[args[i]] else 1
        else:
            i += 1
    return options


def _fail(code: int, message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def _graph_error(status: str, code: str, message: str) -> None:
    _fail(1, f"ERROR: {status}({json.dumps({'error': {'code': code, 'message': message}})})")


def _query(data: Any, query: str | None) -> Any:
    if query is None:
        return data
    if query in ("id", "tenantId", "principalId"):
        return data.get(query)
    if query == "endpoints.microsoftGraphResourceId":
        return data["endpoints"]["microsoftGraphResourceId"]
    if query == "principalId || values(userAssignedIdentities)[0].principalId":
        user_assigned = list((data.get("userAssignedIdentities") or {}).values())
        return data.get("principalId") or (user_assigned[0]["principalId"] if user_assigned else None)
    role_by_value = r"appRoles\[\?value=='([^']+)' && contains\(allowedMemberTypes, 'Application'\)\]\.id \| \[0\]"
    match = re.fullmatch(role_by_value, query)
    if match:
        ids = [r["id"] for r in data["appRoles"]
               if r["value"] == match.group(1) and "Application" in r["allowedMemberTypes"]]
        return ids[0] if ids else None
    match = re.fullmatch(r"length\(value\[\?resourceId=='([^']+)' && appRoleId=='([^']+)'\]\)", query)
    if match:
        return len([a for a in data["value"] if a["resourceId"] == match.group(1) and a["appRoleId"] == match.group(2)])
    _fail(2, f"fake az: unsupported query {query!r}")
    return None


def _print(value: Any, output: str | None) -> None:
    if output == "none":
        return
    if output == "tsv":
        print("" if value is None else value)
    else:
        print(json.dumps(value))


def _rest(state: dict[str, Any], options: dict[str, str]) -> Any:
    graph = state["graph"].rstrip("/")
    if options.get("--resource", "").rstrip("/") != graph:
        _fail(2, f"fake az: az rest without --resource {graph}")
    method = options["--method"].lower()
    url = options["--url"]
    if not url.startswith(graph + "/v1.0/"):
        _fail(2, f"fake az: not this cloud's Graph v1.0: {url}")
    path = url[len(graph) + len("/v1.0/"):]
    sp = state["defender_sp"]
    graph_sp = state["graph_sp"]
    resources = {sp["id"]: sp, graph_sp["id"]: graph_sp}  # the service principals whose roles are granted
    apps = state.setdefault("service_principals", {})  # other apps' service principals, by appId
    match = re.fullmatch(r"servicePrincipals\(appId='([0-9a-fA-F-]{36})'\)", path)
    if method == "get" and match and match.group(1) not in (DEFENDER_APP_ID, GRAPH_APP_ID):
        if match.group(1) not in apps:
            _graph_error("Not Found", "Request_ResourceNotFound", f"Resource '{match.group(1)}' does not exist")
        return apps[match.group(1)]
    if method == "post" and path == "servicePrincipals":
        app_id = json.loads(options["--body"])["appId"]
        if app_id in state.get("unknown_apps", []):
            _graph_error("Bad Request", "Request_BadRequest", "The appId of the service principal does not reference a "
                         "valid application object.")
        created = apps[app_id] = {"id": f"5e5e5e5e-0000-4000-8000-{len(apps):012d}", "appId": app_id}
        state["principals"].append(created["id"])
        return created
    if method == "get":
        if path == f"servicePrincipals(appId='{DEFENDER_APP_ID}')":
            if not state.get("defender_onboarded", True):
                _graph_error("Not Found", "Request_ResourceNotFound", "Resource not found.")
            return sp
        if path == f"servicePrincipals(appId='{GRAPH_APP_ID}')":
            return graph_sp
        match = re.fullmatch(r"servicePrincipals/([0-9a-f-]{36})", path)
        if match and match.group(1) in resources:
            return resources[match.group(1)]
        match = re.fullmatch(r"servicePrincipals/([0-9a-f-]{36})/appRoleAssignments", path)
        if match:
            if match.group(1) not in state["principals"]:
                _graph_error("Not Found", "Request_ResourceNotFound", f"Resource '{match.group(1)}' does not exist")
            visible = [] if state.get("hide_assignments") else state["assignments"]
            return {"value": [a for a in visible if a["principalId"] == match.group(1)]}
    match = re.fullmatch(r"servicePrincipals/([0-9a-f-]{36})/appRoleAssignedTo", path)
    if method == "post" and match and match.group(1) in resources:
        body = json.loads(options["--body"])
        resource = resources[match.group(1)]
        if body["resourceId"] != resource["id"] or body["appRoleId"] not in {r["id"] for r in resource["appRoles"]}:
            _graph_error("Bad Request", "Request_BadRequest", "Invalid app role or resource.")
        if any(a["principalId"] == body["principalId"] and a["appRoleId"] == body["appRoleId"]
               for a in state["assignments"]):
            _graph_error("Bad Request", "Request_BadRequest",
                         "Permission being assigned already exists on the object")
        state["assignments"].append(body)
        return {"id": "assignment", **body}
    _fail(2, f"fake az: unsupported request {method.upper()} {url}")
    return None



# --- for the tests: the fake cloud on a PATH --------------------------------------------------------------------

DEFENDER_SP = "11111111-2222-4333-8444-555555555555"
READ_ROLE = "aaaaaaaa-0000-4000-8000-000000000001"
WRITE_ROLE = "aaaaaaaa-0000-4000-8000-000000000002"
FILE_ROLE = "aaaaaaaa-0000-4000-8000-000000000004"
GRAPH_SP = "22222222-3333-4444-8555-666666666666"
HUNTING_ROLE = "bbbbbbbb-0000-4000-8000-000000000001"
ROLE_VALUES = {READ_ROLE: "Alert.Read.All", WRITE_ROLE: "Alert.ReadWrite.All", FILE_ROLE: "File.Read.All",
               HUNTING_ROLE: "ThreatHunting.Read.All"}
#: The service principal each role is granted on.
ROLE_RESOURCES = {READ_ROLE: DEFENDER_SP, WRITE_ROLE: DEFENDER_SP, FILE_ROLE: DEFENDER_SP, HUNTING_ROLE: GRAPH_SP}
PRINCIPAL = "99999999-8888-4777-8666-555555555555"
UA_PRINCIPAL = "77777777-8888-4777-8666-555555555555"

def initial_state(graph: str) -> dict[str, Any]:
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
        "graph_sp": {
            "id": GRAPH_SP,
            "appId": GRAPH_APP_ID,
            "appRoles": [
                {"id": "bbbbbbbb-0000-4000-8000-000000000002", "value": "User.Read.All",
                 "allowedMemberTypes": ["Application"]},
                {"id": HUNTING_ROLE, "value": "ThreatHunting.Read.All", "allowedMemberTypes": ["Application"]},
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
    script: Path

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))

    def update(self, **changes: Any) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **changes}))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the script under test with `args`, the fake az first on PATH."""
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "FAKE_AZ_STATE": str(self.state_file), "LC_ALL": "C"}
        return subprocess.run(["bash", str(self.script), *args], capture_output=True, text=True, env=env, timeout=60,
                              check=False)

    def posts(self) -> list[dict[str, Any]]:
        calls = self.state().get("calls", [])
        return [json.loads(c[c.index("--body") + 1]) for c in calls if c[:3] == ["rest", "--method", "post"]]


def fake_cloud(tmp_path: Path, graph: str, script: Path) -> FakeCloud:
    """The fake az (and no azd) on a PATH of its own, over a fresh fake tenant, for running `script`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__)}" "$@"\n')
    az.chmod(0o755)
    azd = bin_dir / "azd"  # no azd environment here
    azd.write_text("#!/bin/sh\nexit 1\n")
    azd.chmod(0o755)
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(initial_state(graph)))
    return FakeCloud(bin_dir, state_file, script)


def main(args: list[str]) -> None:
    state_path = os.environ["FAKE_AZ_STATE"]
    with open(state_path) as f:
        state = json.load(f)
    state.setdefault("calls", []).append(args)
    options = _options(args)
    try:
        if args[:2] == ["account", "show"]:
            if not state.get("logged_in", True):
                _fail(1, "ERROR: Please run 'az login' to setup account.")
            result = {"tenantId": state["tenant"]}
        elif args[:2] == ["cloud", "show"]:
            result = {"endpoints": {"microsoftGraphResourceId": state["graph"]}}
        elif args[:3] == ["functionapp", "identity", "show"]:
            key = f"{options['--resource-group']}/{options['--name']}"
            if key not in state["functionapps"]:
                _fail(3, f"ERROR: (ResourceNotFound) The Resource '{key}' was not found.")
            result = state["functionapps"][key]
        elif args[:1] == ["rest"]:
            result = _rest(state, options)
        else:
            _fail(2, f"fake az: unsupported command {args}")
            return
        _print(_query(result, options.get("--query")), options.get("-o"))
    finally:
        with open(state_path, "w") as f:
            json.dump(state, f)


if __name__ == "__main__":
    main(sys.argv[1:])
