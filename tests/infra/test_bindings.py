"""Every `%NAME%` in a binding is an app setting whatever runs the app: the catalogue gives it a default, the
Bicep sets it, local.settings.json.example lists it, and the local stack passes it.

The Functions host resolves a binding expression from app settings only (a default in the Python code never
reaches it) and puts a function whose expression does not resolve in error, silently for a caller. The
connection a trigger names is an app setting too: a connection string locally, identity-based in Azure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from localdev.stack import host_environment
from shared.catalogue import CATALOGUE_BY_NAME
from tests.infra import bicep_model as bm
from tests.support.rigs import function_metadata

ROOT = Path(__file__).resolve().parents[2]
EXPRESSION = re.compile(r"%([^%]+)%")


@pytest.fixture(scope="module")
def bindings() -> list[dict[str, Any]]:
    return [binding for function in function_metadata().values() for binding in function["bindings"]]


@pytest.fixture(scope="module")
def bound_settings(bindings: list[dict[str, Any]]) -> set[str]:
    names = {name for binding in bindings for value in binding.values() if isinstance(value, str)
             for name in EXPRESSION.findall(value)}
    assert names, "no binding expression found: the queue triggers name %REQUESTS_QUEUE%"
    return names


@pytest.fixture(scope="module")
def connections(bindings: list[dict[str, Any]]) -> set[str]:
    return {binding["connection"] for binding in bindings if binding.get("connection")}


def _bicep_settings() -> dict[str, bool]:
    return {name: unconditional for name, _, unconditional in bm.app_settings(bm.main())}


def _example_values() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    return values


def test_every_bound_setting_is_catalogued_with_a_default(bound_settings: set[str]) -> None:
    for name in bound_settings:
        assert name in CATALOGUE_BY_NAME, f"%{name}% is bound but not in shared.catalogue.CATALOGUE"
        assert CATALOGUE_BY_NAME[name].default, f"%{name}% is bound but has no default in the catalogue"
        assert CATALOGUE_BY_NAME[name].set_by_templates, f"%{name}% is bound: the templates must set it"


def test_the_bicep_always_sets_every_bound_setting(bound_settings: set[str]) -> None:
    settings = _bicep_settings()
    missing = {name for name in bound_settings if not settings.get(name)}
    assert not missing, f"bound but not set unconditionally by infra/main.bicep: {sorted(missing)}"


def test_the_example_settings_list_every_bound_setting(bound_settings: set[str]) -> None:
    values = _example_values()
    for name in bound_settings:
        assert values.get(name) == CATALOGUE_BY_NAME[name].default, f"local.settings.json.example lacks {name}"


def test_the_local_stack_passes_every_bound_setting(bound_settings: set[str]) -> None:
    env = host_environment(simulator_url="http://127.0.0.1:1", identity_url="http://127.0.0.1:2",
                           storage_connection="UseDevelopmentStorage=true")
    for name in bound_settings:
        assert env.get(name) == CATALOGUE_BY_NAME[name].default, name


def test_every_connection_is_set_locally_and_identity_based_in_azure(connections: set[str]) -> None:
    assert connections == {"AzureWebJobsStorage"}
    settings, values = _bicep_settings(), _example_values()
    for connection in connections:
        assert values.get(connection, "").startswith("DefaultEndpointsProtocol=http;"), connection
        assert settings.get(f"{connection}__queueServiceUri") and settings.get(f"{connection}__credential"), connection
