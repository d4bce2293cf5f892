"""The app settings the templates set, checked both ways against shared.catalogue.CATALOGUE."""

from __future__ import annotations

import re
from typing import Any

from shared.catalogue import CATALOGUE, CATALOGUE_BY_NAME
from tests.infra import bicep_model as bm

# Settings the templates set that the gateway's code does not read, so they are not in the
# catalogue: the Functions host, its Python worker and the platform read them.
HOST_SETTINGS = {
    # Identity-based host storage (AzureWebJobsStorage__*): the blob, table and queue endpoints and
    # __credential / __clientId are in the catalogue because the gateway reads them too.
    # Telemetry to Application Insights, authenticated with the app's identity (local auth is off).
    # The Python worker's threads for synchronous functions (tests/infra/test_flex_concurrency.py).
    "PYTHON_THREADPOOL_THREAD_COUNT": "Python worker",
}

# Settings a Flex Consumption app must not have: it rejects or ignores them (the runtime comes from
# functionAppConfig.runtime, the package from functionAppConfig.deployment), and a storage
# connection string would need an account key, which the storage account does not allow.
FORBIDDEN_SETTINGS = re.compile(
    r"^(FUNCTIONS_WORKER_RUNTIME|FUNCTIONS_EXTENSION_VERSION|WEBSITE_RUN_FROM_PACKAGE|WEBSITE_CONTENT\w*"
    r"|WEBSITE_NODE_DEFAULT_VERSION|AzureWebJobsStorage|AzureWebJobsDashboard|AzureWebJobsSecretStorageType)$"
)

# Settings set only with a user-assigned identity (which identity to use).
USER_ASSIGNED_ONLY = {"AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId"}


def _settings() -> list[tuple[str, Any, bool]]:
    return bm.app_settings(bm.main())


def test_every_setting_is_catalogued_or_read_by_the_host() -> None:
    names = [name for name, _, _ in _settings()]
    assert len(names) == len(set(names)), "a setting is set twice"
    unknown = set(names) - set(CATALOGUE_BY_NAME) - set(HOST_SETTINGS)
    assert not unknown, f"settings neither in shared.catalogue.CATALOGUE nor HOST_SETTINGS: {sorted(unknown)}"


def test_host_settings_list_does_not_shadow_the_catalogue() -> None:
    assert not set(HOST_SETTINGS) & set(CATALOGUE_BY_NAME)
    assert set(HOST_SETTINGS) <= {name for name, _, _ in _settings()}, "HOST_SETTINGS lists a setting never set"


def test_every_setting_the_catalogue_marks_for_templates_is_always_set() -> None:
    always = {name for name, _, unconditional in _settings() if unconditional}
    required = {spec.name for spec in CATALOGUE if spec.set_by_templates}
    assert required, "the catalogue marks no setting as set_by_templates"
    missing = required - always
    assert not missing, f"set_by_templates=True but not set (unconditionally) by infra/main.bicep: {sorted(missing)}"


def test_every_catalogued_setting_the_templates_always_set_is_marked_so() -> None:
    """The other direction: docs/configuration.md's "set by templates" column comes from the catalogue's flag."""
    always = {name for name, _, unconditional in _settings() if unconditional}
    unmarked = {spec.name for spec in CATALOGUE if not spec.set_by_templates} & always
    assert not unmarked, f"set unconditionally by infra/main.bicep but set_by_templates=False: {sorted(unmarked)}"


def test_only_the_user_assigned_identity_settings_are_conditional() -> None:
    conditional = {name for name, _, unconditional in _settings() if not unconditional}
    assert conditional == USER_ASSIGNED_ONLY
    assert set(CATALOGUE_BY_NAME) >= USER_ASSIGNED_ONLY
    assert bm.operator(bm.main()["variables"]["userAssignedAppSettings"]["value"], "conditional") is not None


def test_no_setting_that_flex_consumption_forbids() -> None:
    names = {name for name, _, _ in _settings()}
    assert not {name for name in names if FORBIDDEN_SETTINGS.match(name)}
    for path in bm.bicep_files():
        code = bm.code_lines(path)
        for name in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                     "WEBSITE_CONTENT"):
            assert name not in code, f"{path.name} mentions {name}"


def test_settings_bound_to_parameters_default_like_the_catalogue() -> None:
    """A deployment with default parameters behaves like the code's defaults."""
    params = bm.main()["parameters"]
    bound = {name: value for name, value, _ in _settings() if isinstance(value, str) and value in params}
    assert set(bound) == {"MDE_CLOUD", "GATEWAY_AUTH", "RATE_LIMIT_FILE_ALERTS", "RATE_LIMIT_CREATE_ALERT",
                          "RATE_LIMIT_FILE_INFO", "RATE_LIMIT_HUNTING", "RATE_LIMIT_TABLE", "ANSWER_CACHE_TABLE",
                          "FILE_HASH_TABLE", "REQUESTS_QUEUE", "OPERATIONS_TABLE", "MAINTENANCE_SCHEDULE",
                          "GATEWAY_TENANT_CALLERS"}
    for setting, param in bound.items():
        assert params[param]["default"] == CATALOGUE_BY_NAME[setting].default, setting
    # Bound through a conversion or a module's output, the default still is the code's.
    values = {name: value for name, value, _ in _settings()}
    for setting, param in {"FILE_ALERTS_CACHE_SECONDS": "fileAlertsCacheSeconds",
                           "HUNTING_SHARE_SECONDS": "huntingShareSeconds"}.items():
        assert bm.function_call(values[setting], "string") == {"value_to_convert": param}, setting
        assert str(params[param]["default"]) == CATALOGUE_BY_NAME[setting].default, setting
    assert bm.module_output(values["RESULTS_CONTAINER"]) == ("storage", "resultsContainerName")
    assert params["resultsContainerName"]["default"] == CATALOGUE_BY_NAME["RESULTS_CONTAINER"].default
    assert bm.module_params("storage")["resultsContainerName"] == "resultsContainerName"


def test_fixed_values() -> None:
    values = {name: value for name, value, _ in _settings()}
    assert values["MDE_CREDENTIAL"] == "managed-identity"
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        assert values[f"AzureWebJobsStorage__{service}ServiceUri"] == (
            f"https://${{storage.outputs.name}}.{service}.${{environment().suffixes.storage}}"
        )
    auth = bm.operator(values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"], "conditional")
    assert auth is not None
    assert auth["false_value"] == "Authorization=AAD"
    assert auth["true_value"] == "ClientId=${userAssignedIdentity.properties.clientId};Authorization=AAD"
    for name in USER_ASSIGNED_ONLY:
        assert str(values[name]).count("userAssignedIdentity") == 1
