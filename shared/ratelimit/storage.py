"""The rate-limit table: building the client from app settings, reads and ETag-conditional writes.

Any failure of the table becomes RateLimitStorageError (the caller answers 503); a lost race
(409 on create, 412 on update, entity or table gone) is reported as a conflict to retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableClient, UpdateMode

from shared.ratelimit.clock import ClockSync
from shared.ratelimit.entity import EntityFormatError, from_entity, to_entity
from shared.ratelimit.sliding_log import LogState
from shared.settings import ConfigurationError, setting

#: Fail fast: an unreachable table must turn into a 503 in about 2 s, not minutes of SDK retries.
#: One retry covers a pooled connection the server closed; 5xx answers are not retried here.
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

_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")


class RateLimitStorageError(RuntimeError):
    """The rate-limit table is unreachable or failing; refuse the call (503), never admit it."""


def table_client_from_env(env: Mapping[str, str], table_name: str,
                          *, client_options: Mapping[str, Any] | None = None) -> TableClient:
    """A TableClient for `table_name` in the function app's storage account.

    `AzureWebJobsStorage` (a connection string: Azurite locally) wins if set; otherwise the
    identity-based `AzureWebJobsStorage__*` settings with a managed identity (no account keys).
    Build it once per process: the identity credential caches its tokens.
    """
    options = dict(CLIENT_OPTIONS if client_options is None else client_options)
    connection_string = setting(env, "AzureWebJobsStorage")
    if connection_string:
        try:
            return TableClient.from_connection_string(connection_string, table_name, **options)
        except ValueError as exc:
            raise ConfigurationError(f"AzureWebJobsStorage is not a usable connection string: {exc}") from None

    endpoint = _table_endpoint(env)
    credential_kind = (setting(env, "AzureWebJobsStorage__credential") or "").lower()
    if credential_kind != "managedidentity":
        raise ConfigurationError(
            "AzureWebJobsStorage__credential must be `managedidentity` for identity-based storage, "
            f"got {credential_kind!r}.")
    from azure.identity import ManagedIdentityCredential  # ~120 ms to import: only where needed

    credential = ManagedIdentityCredential(client_id=setting(env, "AzureWebJobsStorage__clientId"))
    return TableClient(endpoint, table_name, credential=credential, **options)


def _table_endpoint(env: Mapping[str, str]) -> str:
    uri = setting(env, "AzureWebJobsStorage__tableServiceUri")
    if uri:
        parts = urlsplit(uri)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.username or parts.password:
            raise ConfigurationError(
                f"AzureWebJobsStorage__tableServiceUri must be a plain https URL, got {uri!r}.")
        return uri.rstrip("/")
    account = setting(env, "AzureWebJobsStorage__accountName")
    if account:
        if not _ACCOUNT_NAME.fullmatch(account):
            raise ConfigurationError(
                f"AzureWebJobsStorage__accountName must be 3-24 lowercase letters or digits, got {account!r}.")
        return f"https://{account}.table.core.windows.net"
    raise ConfigurationError(
        "No storage for the rate limits: set AzureWebJobsStorage (a connection string, local use) or "
        "AzureWebJobsStorage__tableServiceUri (or __accountName) with AzureWebJobsStorage__credential="
        "managedidentity (Azure).")


@dataclass
class Tally:
    """Diagnostics for one decision: table requests made and ETag conflicts met."""

    round_trips: int = 0
    conflicts: int = 0


@dataclass(frozen=True)
class Snapshot:
    """A state as read, with the ETag a write must match (None: the entity does not exist yet)."""

    state: LogState
    etag: str | None


class StateTable:
    """Reads and conditionally writes (principal, API) states in one table; creates it on first use.

    Every answer's `Date` goes to `clock` (the storage service is the instances' shared clock).
    """

    def __init__(self, client: TableClient, clock: ClockSync) -> None:
        self._client = client
        self._clock = clock

    @property
    def table_name(self) -> str:
        return self._client.table_name

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        tally.round_trips += 1
        try:
            entity = self._client.get_entity(key, api, raw_response_hook=self._clock.response_hook())
        except HttpResponseError as exc:
            if exc.status_code != 404:
                raise self._failure("read", exc) from exc
            if _error_code(exc) == "TableNotFound":
                self._create_table(tally)
            return Snapshot(LogState(), None)
        except AzureError as exc:
            raise self._failure("read", exc) from exc
        try:
            state = from_entity(entity)
        except EntityFormatError as exc:
            raise RateLimitStorageError(f"rate-limit entity {key}/{api} in table {self.table_name}: {exc}") from exc
        return Snapshot(state, entity.metadata["etag"])

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> bool:
        """Create (etag None) or replace-if-unchanged; False when another writer got there first."""
        entity = to_entity(key, api, state)
        tally.round_trips += 1
        try:
            if etag is None:
                self._client.create_entity(entity, raw_response_hook=self._clock.response_hook())
            else:
                self._client.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                           match_condition=MatchConditions.IfNotModified,
                                           raw_response_hook=self._clock.response_hook())
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return False
            if exc.status_code == 404:  # the entity or the whole table went away: start over
                if _error_code(exc) == "TableNotFound":
                    self._create_table(tally)
                return False
            raise self._failure("write", exc) from exc
        except AzureError as exc:
            raise self._failure("write", exc) from exc
        return True

    def _create_table(self, tally: Tally) -> None:
        tally.round_trips += 1
        try:
            self._client.create_table(raw_response_hook=self._clock.response_hook())
        except HttpResponseError as exc:
            if exc.status_code == 409 and _error_code(exc) == "TableAlreadyExists":
                return  # another instance won the race
            raise self._failure("create", exc) from exc
        except AzureError as exc:
            raise self._failure("create", exc) from exc

    def _failure(self, action: str, exc: AzureError) -> RateLimitStorageError:
        status = getattr(exc, "status_code", None)
        what = f"HTTP {status}" if status else type(exc).__name__
        return RateLimitStorageError(f"rate-limit table {self.table_name}: {action} failed ({what})")


def _error_code(exc: HttpResponseError) -> str | None:
    """The storage error code (`TableNotFound`, ...), from the header or the SDK's parsed body."""
    headers = getattr(exc.response, "headers", None) or {}
    code = headers.get("x-ms-error-code") or getattr(exc, "error_code", None)
    return str(code.value if hasattr(code, "value") else code) if code else None
