"""A stand-in for the Azure CLI with a fake Microsoft Graph, for testing scripts/grant-defender-roles.sh.

It answers exactly the az commands (and JMESPath queries) the script uses, from and to a JSON state
file named by FAKE_AZ_STATE, and records every call there. Anything else fails loudly (exit 2) so a
change in the script cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"


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
    if method == "get":
        if path == f"servicePrincipals(appId='{DEFENDER_APP_ID}')":
            if not state.get("defender_onboarded", True):
                _graph_error("Not Found", "Request_ResourceNotFound", "Resource not found.")
            return sp
        if path == f"servicePrincipals/{sp['id']}":
            return sp
        match = re.fullmatch(r"servicePrincipals/([0-9a-f-]{36})/appRoleAssignments", path)
        if match:
            if match.group(1) not in state["principals"]:
                _graph_error("Not Found", "Request_ResourceNotFound", f"Resource '{match.group(1)}' does not exist")
            visible = [] if state.get("hide_assignments") else state["assignments"]
            return {"value": [a for a in visible if a["principalId"] == match.group(1)]}
    if method == "post" and path == f"servicePrincipals/{sp['id']}/appRoleAssignedTo":
        body = json.loads(options["--body"])
        if body["resourceId"] != sp["id"] or body["appRoleId"] not in {r["id"] for r in sp["appRoles"]}:
            _graph_error("Bad Request", "Request_BadRequest", "Invalid app role or resource.")
        if any(a["principalId"] == body["principalId"] and a["appRoleId"] == body["appRoleId"]
               for a in state["assignments"]):
            _graph_error("Bad Request", "Request_BadRequest",
                         "Permission being assigned already exists on the object")
        state["assignments"].append(body)
        return {"id": "assignment", **body}
    _fail(2, f"fake az: unsupported request {method.upper()} {url}")
    return None


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
