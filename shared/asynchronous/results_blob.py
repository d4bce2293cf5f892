"""Results in Azure Blob Storage (Azurite locally): BlobResultsStore, the ResultsStore of shared.asynchronous.results.

One block blob per result in RESULTS_CONTAINER (created on first write), named `<expiry>/<operation id>/<n>`: a flat
listing is in name order, so the sweep reads the expired results first and stops at the first one still kept.
Azure's errors become ResultsStorageError naming the container and what failed, never the SDK's message (it repeats
the URL, which may name the account).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from shared.asynchronous.results import ResultsStorageError, expiry_of, result_name
from shared.configuration import ConfigurationError
from shared.tables.errors import translated
from shared.tables.settings import StorageSettings

#: Like the operation records' (a result is part of one): patient enough to be written, failing within seconds.
BLOB_CLIENT_OPTIONS: Mapping[str, Any] = {
    "connection_timeout": 2.0, "read_timeout": 20.0, "retry_total": 3, "retry_connect": 3, "retry_read": 2,
    "retry_status": 2, "retry_backoff_factor": 0.2, "retry_backoff_max": 2,
}
_JSON = ContentSettings(content_type="application/json")


def blob_service(storage: StorageSettings) -> BlobServiceClient:
    """The storage account's Blob service (no request is made)."""
    if storage.connection_string:
        try:
            return BlobServiceClient.from_connection_string(storage.connection_string, **BLOB_CLIENT_OPTIONS)
        except ValueError:  # its message is not repeated: a connection string holds the account key
            raise ConfigurationError("AzureWebJobsStorage is not a usable connection string (the Blob client cannot "
                                     "parse it).", setting="AzureWebJobsStorage") from None
    from azure.identity import ManagedIdentityCredential  # ~120 ms to import: only where needed

    assert storage.blob_endpoint is not None  # load_storage_settings sets one with the table endpoint
    return BlobServiceClient(storage.blob_endpoint, credential=ManagedIdentityCredential(client_id=storage.client_id),
                             **BLOB_CLIENT_OPTIONS)


class BlobResultsStore:
    """Result bodies as blobs of one container, shared by every instance."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @classmethod
    def of(cls, service: BlobServiceClient, container: str) -> BlobResultsStore:
        return cls(service.get_container_client(container))

    @property
    def name(self) -> str:
        return str(self._container.container_name)

    def put(self, operation_id: str, body: bytes, expires_at: float) -> str:
        name = result_name(operation_id, expires_at)
        with self._translated(f"{name} not written"):
            try:
                self._upload(name, body)
            except ResourceNotFoundError:  # no container yet (Azurite, or a deployment that made none)
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
                self._upload(name, body)
        return name

    def get(self, name: str) -> bytes:
        with self._translated(f"{name} not read"):
            try:
                return bytes(self._container.download_blob(name).readall())
            except ResourceNotFoundError:
                raise ResultsStorageError(f"results container {self.name}: {name} is missing") from None

    def delete(self, name: str) -> bool:
        with self._translated(f"{name} not deleted"):
            try:
                self._container.delete_blob(name)
            except ResourceNotFoundError:
                return False
        return True

    def purge_expired(self, now: float, limit: int = 100) -> int:
        deleted = 0
        with self._translated(lambda: f"purge stopped after {deleted} result(s)"), _unless_no_container():
            for name in self._container.list_blob_names():
                expiry = expiry_of(name)
                if expiry is None:
                    continue  # not the gateway's: left alone
                if expiry >= now or deleted >= limit:
                    break  # names sort by expiry: the rest are kept (or left to the next sweep)
                with contextlib.suppress(ResourceNotFoundError):  # another sweep was first
                    self._container.delete_blob(name)
                deleted += 1
        return deleted

    def _upload(self, name: str, body: bytes) -> None:
        self._container.upload_blob(name, body, overwrite=False, content_settings=_JSON)

    def _translated(self, doing: str | Callable[[], str]) -> contextlib.AbstractContextManager[None]:
        """Azure's errors as ResultsStorageError naming this container and what it was `doing` (a text, or a callable
        read when it fails)."""
        def error(what: str) -> ResultsStorageError:
            done = doing() if callable(doing) else doing
            return ResultsStorageError(f"results container {self.name}: {done} ({what})")
        return translated(error)


@contextlib.contextmanager
def _unless_no_container() -> Iterator[None]:
    """A missing container holds nothing."""
    try:
        yield
    except ResourceNotFoundError:
        return
