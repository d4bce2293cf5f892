"""The function app's storage account as a Table client.

Azurite's connection string locally, a managed identity in Azure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.data.tables import TableClient

from shared.ratelimit import CLIENT_OPTIONS
from shared.settings import ConfigurationError, StorageSettings

#: For records that must be written (operations): more patience than the rate limiter's fail-fast options.
DURABLE_CLIENT_OPTIONS: Mapping[str, Any] = {
    "connection_timeout": 2.0, "read_timeout": 5.0, "retry_total": 3, "retry_connect": 3, "retry_read": 2,
    "retry_status": 2, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
}


def table_client(storage: StorageSettings, table_name: str,
                 options: Mapping[str, Any] = CLIENT_OPTIONS) -> TableClient:
    """A TableClient for `table_name` (the rate limiter's fail-fast options by default); no request is made.

    Build it once per process: the identity credential caches its tokens. A connection string that
    cannot be used is a ConfigurationError, so start-up stops on it.
    """
    if storage.connection_string:
        try:
            return TableClient.from_connection_string(storage.connection_string, table_name, **options)
        except ValueError as exc:
            raise ConfigurationError(f"AzureWebJobsStorage is not a usable connection string: {exc}") from None
    from azure.identity import ManagedIdentityCredential  # ~120 ms to import: only where needed

    assert storage.table_endpoint is not None  # load_storage_settings sets one or the other
    return TableClient(storage.table_endpoint, table_name,
                       credential=ManagedIdentityCredential(client_id=storage.client_id), **options)
