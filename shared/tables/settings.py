"""The storage account the tables and queues live in: values read and checked by shared.settings."""

from __future__ import annotations

from dataclasses import dataclass

from shared.configuration import split_url


@dataclass(frozen=True)
class StorageSettings:
    """The function app's storage account (tables, queues, result blobs): a connection string (local), or endpoints and
    an identity."""

    #: `AzureWebJobsStorage` (Azurite locally); wins when set.
    connection_string: str | None
    #: The Table endpoint for identity-based access (None with a connection string).
    table_endpoint: str | None
    #: The Queue endpoint for identity-based access (None with a connection string).
    queue_endpoint: str | None
    #: Client id of a user-assigned identity for storage (None: system-assigned).
    client_id: str | None
    #: The Blob endpoint for identity-based access (None with a connection string, which names its own): where
    #: results too large for a table entity are kept (RESULTS_CONTAINER).
    blob_endpoint: str | None = None


def sibling_endpoint(endpoint: str, service: str, sibling: str) -> str | None:
    """The same account's endpoint for another service (`https://acct.table.<suffix>` -> `https://acct.blob.<suffix>`),
    or None when `endpoint` is not of that form (a custom domain)."""
    parts = split_url(endpoint)
    host = parts.hostname if parts is not None else None
    labels = host.split(".") if host else []
    if len(labels) < 3 or labels[1] != service or parts is None or parts.port is not None:
        return None
    return f"https://{labels[0]}.{sibling}.{'.'.join(labels[2:])}"

