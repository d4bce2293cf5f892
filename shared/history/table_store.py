"""The history in Table Storage: PartitionKey the minute (ten digits, so the keys sort as the minutes do), RowKey
the row's key, one Int64 property per value. The page's read is one range query over the partitions of the last
hour (a page of up to 1,000 rows per request); an addition (or a peak) is a read and an ETag-conditional write."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from shared.history.store import HistoryStorageError, Row
from shared.tables.clients import create_table
from shared.tables.errors import status_of, translated

#: Lost races an addition retries, each after a random pause of up to _BACKOFF_SECONDS, before it gives up (the
#: counts stay in memory for the next flush).
_ADD_ATTEMPTS = 10
_BACKOFF_SECONDS = 0.05
_KEYS = ("PartitionKey", "RowKey")


def _partition(minute: int) -> str:
    return f"{minute:010d}"


class TableHistoryStore:
    def __init__(self, client: TableClient) -> None:
        self._client = client

    def add(self, minute: int, key: str, counts: Mapping[str, int]) -> None:
        self._merge(minute, key, counts, lambda old, new: old + new)

    def peak(self, minute: int, key: str, values: Mapping[str, int]) -> None:
        self._merge(minute, key, values, max)

    def _merge(self, minute: int, key: str, values: Mapping[str, int], combine: Callable[[int, int], int]) -> None:
        """Read the row, combine each value with `values`, write it back if nobody changed it meanwhile."""
        for attempt in range(_ADD_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, _BACKOFF_SECONDS))  # noqa: S311 - jitter only
            with translated(HistoryStorageError, letting=_lost_race):
                try:
                    current = self._get(minute, key)
                    if current is None:
                        self._write_new(minute, key, values)
                        return
                    stored, etag = current
                    merged = {**stored, **{name: combine(stored[name], value) if name in stored else value
                                           for name, value in values.items()}}
                    self._client.update_entity(self._entity(minute, key, merged), mode=UpdateMode.REPLACE,
                                               etag=etag, match_condition=MatchConditions.IfNotModified)
                    return
                except AzureError as error:
                    if not _lost_race(error):
                        raise
                    continue  # created or changed meanwhile: read it and combine again
        raise HistoryStorageError(f"history table: {_ADD_ATTEMPTS} lost races on one row")

    def since(self, minute: int) -> Sequence[Row]:
        with translated(HistoryStorageError, letting=_missing):
            try:
                entities = list(self._client.query_entities(f"PartitionKey ge '{_partition(minute)}'"))
            except ResourceNotFoundError:
                return []  # nothing recorded yet
        return [Row(int(entity["PartitionKey"]), str(entity["RowKey"]), _values(entity)) for entity in entities]

    def purge_before(self, minute: int, limit: int) -> int:
        deleted = 0
        with translated(HistoryStorageError, letting=_missing):
            try:
                for entity in self._client.query_entities(f"PartitionKey lt '{_partition(minute)}'",
                                                          select=list(_KEYS), results_per_page=min(limit, 1000)):
                    if deleted >= limit:
                        break
                    self._client.delete_entity(entity["PartitionKey"], entity["RowKey"])
                    deleted += 1
            except ResourceNotFoundError:
                pass  # no table yet: nothing to purge
        return deleted

    def _get(self, minute: int, key: str) -> tuple[dict[str, int], str] | None:
        try:
            entity = self._client.get_entity(_partition(minute), key)
        except ResourceNotFoundError:
            return None
        return _values(entity), str(entity.metadata["etag"])

    def _write_new(self, minute: int, key: str, counts: Mapping[str, int]) -> None:
        self._with_table(lambda: self._client.create_entity(self._entity(minute, key, counts)))

    def _with_table(self, write: Any) -> None:
        """Run `write`, creating the table once when it is missing."""
        try:
            write()
        except ResourceNotFoundError:
            if not create_table(self._client):
                raise
            write()

    @staticmethod
    def _entity(minute: int, key: str, values: Mapping[str, int]) -> dict[str, Any]:
        return {"PartitionKey": _partition(minute), "RowKey": key,
                **{name: EntityProperty(int(value), EdmType.INT64) for name, value in values.items()}}


def _lost_race(error: AzureError) -> bool:
    """Another writer created the row (409) or changed it (412) since it was read."""
    return status_of(error) in (409, 412)


def _missing(error: AzureError) -> bool:
    return isinstance(error, ResourceNotFoundError)


def _values(entity: Mapping[str, Any]) -> dict[str, int]:
    values: dict[str, int] = {}
    for name, value in entity.items():
        if name in _KEYS or name == "Timestamp":
            continue
        raw = value.value if isinstance(value, EntityProperty) else value
        if isinstance(raw, int) and not isinstance(raw, bool):
            values[name] = raw
    return values
