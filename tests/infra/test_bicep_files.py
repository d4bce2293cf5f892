"""The deployment files parse and hang together: Bicep, bicepparam, bicepconfig.json, azure.yaml."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra import bicep_model as bm

# playbooks.bicep deploys the Sentinel playbooks (ARM JSON templates under playbooks/) as modules; it has no
# resource of its own. tests/playbooks checks its modules against those templates.
EXPECTED_BICEP_FILES = {"main.bicep", "storage.bicep", "monitoring.bicep", "function-app.bicep", "roles.bicep",
                        "observability.bicep", "entra-auth.bicep", "defender-roles.bicep", "playbooks.bicep",
                        "federated-credential.bicep", "gateway-app-roles.bicep"}


def test_the_expected_bicep_files_exist() -> None:
    assert {path.name for path in bm.bicep_files()} == EXPECTED_BICEP_FILES


@pytest.mark.parametrize("path", bm.bicep_files(), ids=lambda p: p.name)
def test_every_bicep_file_parses(path: Path) -> None:
    tree = bm.parse(path)
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares no resources and no modules"


@pytest.mark.parametrize("path", bm.bicep_files(), ids=lambda p: p.name)
def test_every_param_and_output_has_a_description(path: Path) -> None:
    tree = bm.parse(path)
    undescribed = [
        f"{kind} {name}"
        for kind in ("parameters", "outputs")
        for name, element in tree.get(kind, {}).items()
        if not str(bm.decorators(element).get("description") or "").strip()
    ]
    assert not undescribed, f"{path.name}: no @description on {', '.join(undescribed)}"


@pytest.mark.parametrize("path", bm.bicep_files(), ids=lambda p: p.name)
def test_no_secure_params_and_no_secret_plumbing(path: Path) -> None:
    """Nothing secret goes through the templates: no keys, no list*() calls, no @secure inputs."""
    tree = bm.parse(path)
    code = bm.code_lines(path)
    assert not re.search(r"\blist[A-Za-z]*\(", code), "list*() (listKeys, listSecrets, ...) hands out secrets"
    assert "AccountKey=" not in code and "SharedAccessSignature" not in code
    assert not [name for name, p in tree.get("parameters", {}).items() if "secure" in bm.decorators(p)]


def test_modules_point_at_files_that_exist() -> None:
    modules = bm.main().get("modules", {})
    paths = {module["detail"]["path"] for module in modules.values()}
    # gateway-app-roles.bicep is entra-auth.bicep's module (test_gateway_roles.py), not main's.
    assert paths == EXPECTED_BICEP_FILES - {"main.bicep", "gateway-app-roles.bicep"}
    for path in paths:
        assert (bm.INFRA / path).is_file()


def test_module_params_are_declared_by_the_module() -> None:
    for name, module in bm.main().get("modules", {}).items():
        target = bm.parse(bm.INFRA / module["detail"]["path"])
        passed = set(bm.body(module)["params"])
        declared = set(target.get("parameters", {}))
        required = {p for p, spec in target.get("parameters", {}).items() if spec.get("default") is None}
        assert passed <= declared, f"module {name} passes undeclared params {passed - declared}"
        assert required <= passed, f"module {name} misses required params {required - passed}"


def test_bicepparam_uses_main_and_names_only_its_params() -> None:
    assert bm.bicepparam_using(bm.PARAMS_FILE) == ["main.bicep"]
    names = bm.bicepparam_names(bm.PARAMS_FILE)
    declared = set(bm.main()["parameters"])
    assert names, "main.bicepparam sets no parameter"
    assert len(names) == len(set(names)), "a parameter is set twice"
    assert set(names) <= declared, f"main.bicepparam sets undeclared params {set(names) - declared}"
    required = {name for name, spec in bm.main()["parameters"].items() if spec.get("default") is None}
    assert required <= set(names), f"main.bicepparam leaves required params unset: {required - set(names)}"


def test_bicepparam_reads_only_prefixed_or_azd_environment_variables() -> None:
    """Deployment inputs never pick up the app's own settings a developer may have in the shell."""
    variables = set(re.findall(r"readEnvironmentVariable\('([^']+)'", bm.code_lines(bm.PARAMS_FILE)))
    assert variables
    stray = {v for v in variables if not (v.startswith("MDEGW_") or v == "AZURE_ENV_NAME")}
    assert not stray, f"unprefixed environment variables: {stray}"


def test_bicepconfig_pins_the_graph_extension_alias_that_defender_roles_uses() -> None:
    config = json.loads((bm.INFRA / "bicepconfig.json").read_text())
    used = set(bm.parse(bm.INFRA / "defender-roles.bicep").get("extensions", {}))
    assert used == {"microsoftGraphV1"}
    reference = config["extensions"]["microsoftGraphV1"]
    assert re.fullmatch(r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+", reference)


def _azure_yaml() -> dict[str, str]:
    """azure.yaml flattened to dotted keys (a small file of plain scalars; no YAML library needed)."""
    flat: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for raw in (bm.REPO / "azure.yaml").read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        if value.strip():
            flat[path] = value.strip()
        else:
            stack.append((indent, key))
    return flat


def test_azure_yaml_deploys_the_repo_root_as_python_function_service_api() -> None:
    config = _azure_yaml()
    assert config["infra.provider"] == "bicep"
    assert config["infra.path"] == "infra"
    assert config["infra.module"] == "main"
    assert config["services.api.project"] == "."
    assert config["services.api.language"] == "python"
    assert config["services.api.host"] == "function"
    # azd finds the app to deploy 'api' to by this tag.
    _, site = bm.the_resource(bm.module("functionApp"), "Microsoft.Web/sites")
    tags = site["tags"]
    assert bm.function_call(tags, "union") is not None
    assert {"azd-service-name": "api"} in list(bm.walk(bm.unquote_keys(tags)))
