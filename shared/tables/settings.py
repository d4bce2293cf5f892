"""The storage account the tables and queues live in: values read and checked by shared.settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageSettings:
    """The storage account of the rate-limit table: a connection string (local), or an endpoint and identity."""

    #: `AzureWebJobsStorage` (Azurite locally); wins when set.
    connection_string: str | None
    #: The Table endpoint for identity-based access (None with a connection string).
    table_endpoint: str | None
    #: The Queue endpoint for identity-based access (None with a connection string).
    queue_endpoint: str | None
    #: Client id of a user-assigned identity for storage (None: system-assigned).
    client_id: str | None
