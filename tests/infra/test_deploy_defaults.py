"""Deploy defaults that a region accepts, and a Python version that the requirements install.

Documented facts these tests hold the Bicep to (Microsoft Learn, checked 2026-12; sources also in the Bicep's
comments):

* Flex Consumption runs Python 3.10 to 3.13 (`functionAppConfig.runtime`); Azure Functions supports a Python
  version until Python's own end of life: 3.11 until October 2027, 3.12 until October 2028, 3.13 until October
  2029.
* `maximumInstanceCount` is 1-1000 per the resource schema, but the lowest value Flex accepts is 40 outside a few
  preview regions (Azure/azure-functions-host#10523, MicrosoftDocs/azure-docs PR 128255).
* Instance memory: 2048 MB (the default) or 4096 MB; 512 MB only in some regions.
* A scheduled query rule's query is validated at creation with the rule's identity, which gets its Reader role only
  once the rule exists: a first deployment needs `skipQueryValidation`.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.infra import bicep_model as bm
from tests.support.pythons import supported_pythons

ROOT = Path(__file__).resolve().parents[2]
FLEX_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
END_OF_SUPPORT = {"3.11": "October 2027", "3.12": "October 2028", "3.13": "October 2029"}
# What each pinned azure-functions release declares (Requires-Python in its wheel's metadata, read from PyPI).
AZURE_FUNCTIONS_REQUIRES_PYTHON = {"1.26.0": ">=3.10,<3.13", "2.3.0": ">=3.13"}
AZURE_FUNCTIONS_RUNTIME_REQUIRES_PYTHON = {"1.3.0": ">=3.13"}


def _main_param(name: str) -> dict[str, Any]:
    param: dict[str, Any] = bm.main()["parameters"][name]
    return param


def _module_param(name: str) -> dict[str, Any]:
    param: dict[str, Any] = bm.module("functionApp")["parameters"][name]
    return param


def requirement_lines(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def pins_for(requirements: list[Requirement], name: str, python: str) -> list[str]:
    """The versions of `name` the requirements pin for one Python (markers evaluated as pip would)."""
    environment = {"python_version": python, "python_full_version": f"{python}.0"}
    return [next(iter(req.specifier)).version for req in requirements
            if req.name == name and (req.marker is None or req.marker.evaluate(environment))]


# --- Python ------------------------------------------------------------------------------------------------


def test_pyproject_names_the_supported_pythons_as_a_closed_range() -> None:
    assert supported_pythons() == ["3.11", "3.12", "3.13"]


def test_the_bicep_offers_every_python_that_flex_runs_and_the_requirements_support_and_defaults_to_the_newest() -> None:
    param = _main_param("pythonVersion")
    offered = bm.decorators(param)["allowed"]
    assert offered == [version for version in FLEX_PYTHONS if version in supported_pythons()]
    assert param["default"] == max(offered, key=lambda version: tuple(map(int, version.split("."))))
    # The module takes the same list and puts the value where Flex reads it.
    assert bm.decorators(_module_param("pythonVersion"))["allowed"] == offered
    assert bm.module_params("functionApp")["pythonVersion"] == "pythonVersion"
    _, site = bm.the_resource(bm.module("functionApp"), "Microsoft.Web/sites")
    assert site["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "pythonVersion"}


def test_the_requirements_pin_one_azure_functions_release_per_python_that_installs_there() -> None:
    """azure-functions splits its lines at 3.13 (1.x: < 3.13, 2.x: >= 3.13): each Python the Bicep offers gets
    exactly one pin, and a release that declares that Python."""
    requirements = requirement_lines(ROOT / "requirements.txt")
    for python in bm.decorators(_main_param("pythonVersion"))["allowed"]:
        pins = pins_for(requirements, "azure-functions", python)
        assert len(pins) == 1, (python, pins)
        assert python + ".0" in SpecifierSet(AZURE_FUNCTIONS_REQUIRES_PYTHON[pins[0]]), (python, pins)


def test_the_local_host_gets_azure_functions_runtime_only_where_it_installs() -> None:
    """The worker's library (item 2 of the local host) is a development requirement, on 3.13 and later only."""
    requirements = requirement_lines(ROOT / "requirements-dev.txt")
    for python in supported_pythons():
        pins = pins_for(requirements, "azure-functions-runtime", python)
        expected = [version for version, spec in AZURE_FUNCTIONS_RUNTIME_REQUIRES_PYTHON.items()
                    if python + ".0" in SpecifierSet(spec)]
        assert pins == expected, (python, pins)
    # Not deployed: in Azure the worker brings its own.
    assert not pins_for(requirement_lines(ROOT / "requirements.txt"), "azure-functions-runtime", "3.13")


def test_this_interpreter_has_the_azure_functions_release_its_markers_choose() -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert [metadata.version("azure-functions")] == pins_for(requirement_lines(ROOT / "requirements.txt"),
                                                             "azure-functions", python)


def test_every_marker_in_the_requirements_parses_and_names_only_python_version() -> None:
    for path in (ROOT / "requirements.txt", ROOT / "requirements-dev.txt"):
        for requirement in requirement_lines(path):
            if requirement.marker is not None:
                assert isinstance(requirement.marker, Marker)
                assert set(re.findall(r"[a-z_]+(?= *[<>=!])", str(requirement.marker))) == {"python_version"}


def test_deploy_md_gives_the_default_python_and_each_end_of_support_date() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    default = _main_param("pythonVersion")["default"]
    assert f"| `pythonVersion` | `{default}` |" in text
    for python, date in END_OF_SUPPORT.items():
        assert re.search(rf"{re.escape(python)}[^|\n]*\|[^|\n]*{date}", text), (python, date)


# --- Scale and memory --------------------------------------------------------------------------------------


def test_maximum_instance_count_defaults_to_and_starts_at_the_lowest_value_flex_accepts_in_most_regions() -> None:
    for param in (_main_param("maximumInstanceCount"), _module_param("maximumInstanceCount")):
        decorators = bm.decorators(param)
        assert (decorators["min_value"], decorators["max_value"]) == (40, 1000)
    assert _main_param("maximumInstanceCount")["default"] == 40
    params_file = bm.PARAMS_FILE.read_text()
    assert "40 instances" in params_file and "maximumInstanceCount =" not in params_file
    assert "azure-functions-host#10523" in bm.MAIN.read_text()


def test_instance_memory_offers_the_sizes_documented_for_every_region() -> None:
    for param in (_main_param("instanceMemoryMB"), _module_param("instanceMemoryMB")):
        assert bm.decorators(param)["allowed"] == [2048, 4096]
    assert _main_param("instanceMemoryMB")["default"] == 2048


# --- Alert rules -------------------------------------------------------------------------------------------


def test_alert_rules_deploy_on_a_first_run_without_validating_their_query_with_an_identity_not_yet_a_reader() -> None:
    rules = bm.resources_of_type(bm.module("observability"), "Microsoft.Insights/scheduledQueryRules")
    assert rules
    for rule in rules.values():
        properties = bm.body(rule)["properties"]
        assert properties["skipQueryValidation"] is True
        assert bm.body(rule)["identity"] == {"type": "SystemAssigned"}
