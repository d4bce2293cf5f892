"""The function app's storage account as a Table client.

Azurite's connection string locally, a managed identity in Azure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import AzureError
from azure.data.tables import TableClient, UpdateMode

from shared.configuration import ConfigurationError
from shared.tables.errors import described, status_of
from shared.tables.settings import StorageSettings

#: Fail fast (the rate limiter's tables and the best-effort ones): an unreachable table must turn into a refusal in
#: about 2 s, not minutes of SDK retries. One retry covers a pooled connection the server closed; 5xx answers are
#: not retried here.
CLIENT_OPTIONS: Mapping[str, Any] = {
    "connection_timeout": 1.0,
    "read_timeout": 1.0,
    "retry_total": 1,
    "retry_connect": 1,
    "retry_read": 1,
    "retry_status": 0,
    "retry_backoff_factor": 0.1,
    "retry_backoff_max": 1,
}

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
            raise ConfigurationError(f"AzureWebJobsStorage is not a usable connection string: {exc}",
                                     setting="AzureWebJobsStorage") from None
    from azure.identity import ManagedIdentityCredential  # ~120 ms to import: only where needed

    assert storage.table_endpoint is not None  # load_storage_settings sets one or the other
    return TableClient(storage.table_endpoint, table_name,
                       credential=ManagedIdentityCredential(client_id=storage.client_id), **options)


def create_table(client: TableClient) -> bool:
    """Create `client`'s table; True when it exists now (another instance may have created it meanwhile)."""
    try:
        client.create_table()
    except AzureError as error:
        return status_of(error) == 409
    return True


def upsert_best_effort(client: TableClient, entity: Mapping[str, Any], log: logging.Logger, what: str) -> bool:
    """Write `entity` (replacing it), creating a missing table once; False when the store failed (logged as `what`).

    For tables whose entries only save work (answers, hash mappings): a failed write never fails the caller.
    """
    for attempt in range(2):
        try:
            client.upsert_entity(dict(entity), mode=UpdateMode.REPLACE)
            return True
        except AzureError as error:
            if attempt == 0 and status_of(error) == 404 and create_table(client):
                continue
            log.warning("%s: store failed (%s)", what, described(error))
        return False
    return False
