"""The rate-limit state in Azure Table Storage (Azurite locally): reads and ETag-conditional writes.

Any failure of the table becomes RateLimitStorageError (the caller refuses the call), translated by
shared.tables.errors; a lost race (409 on create, 412 on update, entity or table gone) is reported as a conflict to
retry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient, UpdateMode

from shared.ratelimit.entity import EntityFormatError, from_entity, to_entity
from shared.ratelimit.sliding_log import LogState
from shared.ratelimit.store import RateLimitStorageError, Snapshot, Tally
from shared.tables.clients import CLIENT_OPTIONS as CLIENT_OPTIONS
from shared.tables.errors import error_code, translated

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
        with translated(self._failure("read")):
            try:
                entity = self._client.get_entity(key, api, raw_response_hook=_date_hook(tally))
            except HttpResponseError as exc:
                if exc.status_code != 404:
                    raise
                if error_code(exc) == "TableNotFound":
                    self._create_table(tally)
                return Snapshot(LogState(), None)
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
        with translated(self._failure("write")):
            try:
                if etag is None:
                    written = self._client.create_entity(entity, raw_response_hook=_date_hook(tally))
                else:
                    written = self._client.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                                         match_condition=MatchConditions.IfNotModified,
                                                         raw_response_hook=_date_hook(tally))
            except HttpResponseError as exc:
                if exc.status_code not in (404, 409, 412):
                    raise
                if exc.status_code == 404 and error_code(exc) == "TableNotFound":
                    self._create_table(tally)
                return None
        return str(written["etag"])

    def _create_table(self, tally: Tally) -> None:
        tally.round_trips += 1
        with translated(self._failure("create")):
            try:
                self._client.create_table(raw_response_hook=_date_hook(tally))
            except HttpResponseError as exc:
                if exc.status_code != 409 or error_code(exc) != "TableAlreadyExists":
                    raise
                # another instance won the race

    def _failure(self, action: str) -> Callable[[str], RateLimitStorageError]:
        return lambda what: RateLimitStorageError(f"rate-limit table {self.name}: {action} failed ({what})")
