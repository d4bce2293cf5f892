"""The rate-limit state in Azure Table Storage (Azurite locally): reads and ETag-conditional writes.

Any failure of the table becomes RateLimitStorageError (the caller refuses the call); a lost race
(409 on create, 412 on update, entity or table gone) is reported as a conflict to retry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableClient, UpdateMode

from shared.ratelimit.entity import EntityFormatError, from_entity, to_entity
from shared.ratelimit.sliding_log import LogState
from shared.ratelimit.store import RateLimitStorageError, Snapshot, Tally

#: Fail fast: an unreachable table must turn into a refusal in about 2 s, not minutes of SDK retries.
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

#: A valid table name (Azure Table Storage): a letter, then 2-62 letters or digits; `tables` is reserved.
TABLE_NAME = re.compile(r"(?!tables$)[A-Za-z][A-Za-z0-9]{2,62}", re.ASCII | re.IGNORECASE)


def _date_hook(tally: Tally) -> Callable[[Any], None]:
    """An azure-core `raw_response_hook` that notes the answer's `Date` in `tally`."""

    def hook(pipeline_response: Any) -> None:
        date = getattr(pipeline_response.http_response, "headers", {}).get("Date")
        if date:
            tally.service_dates.append(date)

    return hook


class TableStore:
    """States in one table, shared by every instance; the table is created on first use.

    Build the client with CLIENT_OPTIONS. Every answer's `Date` is reported in the tally: the
    storage service is the one clock all instances talk to.
    """

    def __init__(self, client: TableClient) -> None:
        self._client = client

    @property
    def name(self) -> str:
        return self._client.table_name

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        tally.round_trips += 1
        try:
            entity = self._client.get_entity(key, api, raw_response_hook=_date_hook(tally))
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
            raise RateLimitStorageError(f"rate-limit entity {key}/{api} in table {self.name}: {exc}") from exc
        return Snapshot(state, entity.metadata["etag"])

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        """Create (etag None) or replace-if-unchanged; the new ETag, or None when another writer got there first.

        A 404 (the entity or the whole table went away meanwhile) is a lost race too: start over.
        """
        entity = to_entity(key, api, state)
        tally.round_trips += 1
        try:
            if etag is None:
                written = self._client.create_entity(entity, raw_response_hook=_date_hook(tally))
            else:
                written = self._client.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                     match_condition=MatchConditions.IfNotModified,
                                                     raw_response_hook=_date_hook(tally))
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return None
            if exc.status_code == 404:
                if _error_code(exc) == "TableNotFound":
                    self._create_table(tally)
                return None
            raise self._failure("write", exc) from exc
        except AzureError as exc:
            raise self._failure("write", exc) from exc
        return str(written["etag"])

    def _create_table(self, tally: Tally) -> None:
        tally.round_trips += 1
        try:
            self._client.create_table(raw_response_hook=_date_hook(tally))
        except HttpResponseError as exc:
            if exc.status_code == 409 and _error_code(exc) == "TableAlreadyExists":
                return  # another instance won the race
            raise self._failure("create", exc) from exc
        except AzureError as exc:
            raise self._failure("create", exc) from exc

    def _failure(self, action: str, exc: AzureError) -> RateLimitStorageError:
        status = getattr(exc, "status_code", None)
        what = f"HTTP {status}" if status else type(exc).__name__
        return RateLimitStorageError(f"rate-limit table {self.name}: {action} failed ({what})")


def _error_code(exc: HttpResponseError) -> str | None:
    """The storage error code (`TableNotFound`, ...), from the header or the SDK's parsed body."""
    headers = getattr(exc.response, "headers", None) or {}
    code = headers.get("x-ms-error-code") or getattr(exc, "error_code", None)
    return str(code.value if hasattr(code, "value") else code) if code else None
