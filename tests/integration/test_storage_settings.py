"""Building the table client and both limiters from the app settings."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from azure.data.tables import TableClient
from azure.identity import ManagedIdentityCredential

from localdev.azurite import Azurite
from shared.configuration import ConfigurationError
from shared.defender.facts import Api
from shared.ratelimit import RateLimiters, Window
from shared.runtime import rate_limiters
from shared.settings import load_settings, load_storage_settings
from shared.tables.clients import table_client

FILE_ALERTS, CREATE_ALERT = Api.FILE_ALERTS, Api.CREATE_ALERT


def table_client_from_env(env: Mapping[str, str], table_name: str) -> TableClient:
    return table_client(load_storage_settings(env), table_name)


def rate_limiters_from_env(env: Mapping[str, str]) -> RateLimiters:
    return rate_limiters(load_settings(env))


def test_connection_string_for_local_use(azurite: Azurite) -> None:
    client = table_client_from_env({"AzureWebJobsStorage": azurite.connection_string}, "limits")
    assert client.table_name == "limits"
    assert client.url.startswith(f"http://127.0.0.1:{azurite.table_port}/")


def test_development_storage_shortcut() -> None:
    client = table_client_from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "limits")
    assert client.url.startswith("http://127.0.0.1:10002/devstoreaccount1")


@pytest.mark.parametrize(("env", "url"), [
    ({"AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.usgovcloudapi.net/",
      "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.usgovcloudapi.net/"},
     "https://acct.table.core.usgovcloudapi.net"),
    ({"AzureWebJobsStorage__accountName": "acct"}, "https://acct.table.core.windows.net"),
])
def test_identity_based_storage_uses_a_managed_identity(env: dict[str, str], url: str) -> None:
    env = {**env, "AzureWebJobsStorage__credential": "managedidentity",
           "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001"}
    client = table_client_from_env(env, "limits")
    assert client.url.startswith(url)
    assert isinstance(client.credential, ManagedIdentityCredential)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "No storage for the rate limits"),
    ({"AzureWebJobsStorage": "not a connection string"}, "AzureWebJobsStorage is not a usable connection string"),
    ({"AzureWebJobsStorage__accountName": "acct"}, "AzureWebJobsStorage__credential must be `managedidentity`"),
    ({"AzureWebJobsStorage__accountName": "acct", "AzureWebJobsStorage__credential": "key"},
     "AzureWebJobsStorage__credential must be `managedidentity`"),
    ({"AzureWebJobsStorage__accountName": "Bad_Name", "AzureWebJobsStorage__credential": "managedidentity"},
     "AzureWebJobsStorage__accountName must be"),
    ({"AzureWebJobsStorage__tableServiceUri": "http://acct.table.core.windows.net",
      "AzureWebJobsStorage__credential": "managedidentity"}, "must be a plain https URL"),
])
def test_storage_settings_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        table_client_from_env(env, "limits")


def test_limiters_from_settings_share_one_client(azurite: Azurite) -> None:
    table_name = "rl" + uuid.uuid4().hex
    limiters = rate_limiters_from_env({
        "AzureWebJobsStorage": azurite.connection_string,
        "RATE_LIMIT_TABLE": table_name,
        "RATE_LIMIT_CREATE_ALERT": "1/60",
    })
    assert limiters.for_api(FILE_ALERTS).policy.windows == (Window(100, 60), Window(1500, 3600))
    assert limiters.for_api(CREATE_ALERT).api == "create_alert"
    assert [limiters.for_api(CREATE_ALERT).acquire("p").admitted for _ in range(2)] == [True, False]
    assert limiters.for_api(FILE_ALERTS).acquire("p").admitted  # each API has its own budget
    first = limiters.for_api(FILE_ALERTS).acquire("p")
    assert first.windows[0].reset_seconds == 62  # default margin 2 s on a 60 s window


def test_bad_rate_limit_settings_fail_before_any_client_is_built() -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_FILE_ALERTS"):
        rate_limiters_from_env({"RATE_LIMIT_FILE_ALERTS": "lots"})

