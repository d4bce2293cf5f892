"""Operations in Azure Table Storage (Azurite locally): TableOperationStore.

One entity per operation: PartitionKey = the operation id, RowKey = "op", with the answer's body in chunks, or, when
it is over RESULT_INLINE_LIMIT bytes and a ResultsStore is given, in a blob the record names (`AnswerBlob`; written
before the record, deleted with it; shared.asynchronous.results). Records expire after the retention: reads treat them
as gone, `purge_expired` deletes them.

Two small indexes in the same table keep the periodic work proportional to what it is about, never
to the table's history (ids cannot start with `~`, so their partitions are apart from any record):
- `~pending` / <id>: one row per pending operation (its API and creation time), written before the
  record and deleted once it is done. Health counts these; the maintenance sweep looks only at them.
  A row whose operation is done or gone (a crash between the two writes) is removed by the sweep.
- `~expires-<yyyymmddhh>` / <id>: one row per record, in the UTC hour it expires; the sweep reads the
  hours gone by and deletes those records in bounded batches.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode

from shared.answers.answer import Answer
from shared.asynchronous.operations import (
    Created,
    Existing,
    Operation,
    OperationsStorageError,
    PendingEntry,
    Source,
    State,
    new_operation,
)
from shared.asynchronous.results import ResultsStore, dropped, spilled
from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.tables.chunks import integer, pack, unpack
from shared.tables.errors import described, status_of, translated
from shared.validation.hunting import HuntingShape

logger = logging.getLogger("mde_alert_gateway.operations")

FORMAT = 1
ROW_KEY = "op"
#: The partition of the pending index (one row per pending operation).
PENDING_PARTITION = "~pending"
#: How far ahead of this instance's clock another's may have stamped a record (`recent` looks that far too).
CLOCK_SLACK_SECONDS = 600
#: The partitions of the expiry index: this prefix and the UTC hour (yyyymmddhh) the records expire in.
EXPIRY_PREFIX = "~expires-"


class TableOperationStore:
    """Operation records in one table, shared by every instance. Failures raise OperationsStorageError."""

    def __init__(self, client: TableClient, retention_seconds: int, *, clock: Callable[[], float] = time.time,
                 results: ResultsStore | None = None) -> None:
        self._client = client
        self.retention_seconds = retention_seconds
        self._clock = clock
        #: Where answers too large for a record go (None: kept in the record while it fits, else replaced by a note).
        self.results = results

    @property
    def name(self) -> str:
        return self._client.table_name

    def new(self, operation_id: str, request: DefenderRequest, *, caller: str, source: Source, correlation_id: str,
            reply_queue: str | None = None, shape: HuntingShape | None = None) -> Operation:
        """A pending operation, not stored yet."""
        return new_operation(operation_id, request, caller=caller, source=source, correlation_id=correlation_id,
                             now=self._clock(), retention_seconds=self.retention_seconds, reply_queue=reply_queue,
                             shape=shape)

    def create(self, operation: Operation) -> Created | Existing:
        """Store a new operation, or find the one that already has its id (an expired one is replaced).

        One read when the id exists (a message coming back finds its operation); a new record is indexed
        (pending, expiry) before it is written, so no pending record is ever missing from the index.
        """
        operation = spilled(self.results, operation, operation)
        entity = _entity(operation)
        for _ in range(3):
            found = self._get_entity(operation.id)
            if found is not None:
                existing = _operation(found)
                if existing.expires_at > self._clock():
                    return Existing(self._loaded(existing), existing.fingerprint == operation.fingerprint)
                # Expired: the id is free again, but only if nobody renewed it meanwhile.
                self._index(operation)
                if self.update(existing, **_fields_of(operation)) is not None:
                    fresh = self.get(operation.id)
                    if fresh is not None:
                        return Created(fresh)
                continue
            self._index(operation)
            try:
                metadata = self._call(lambda: self._create_entity(entity))
                return Created(replace(operation, etag=str(metadata.get("etag", ""))))
            except ResourceExistsError:
                continue  # created meanwhile by another worker: read it
        dropped(self.results, operation.answer_blob)
        raise OperationsStorageError(f"operation {operation.id}: could not be created (it keeps changing)")

    def get(self, operation_id: str) -> Operation | None:
        """The operation, or None when there is none (or it expired)."""
        operation = self._unexpired(operation_id)
        return self._loaded(operation) if operation is not None else None

    def _loaded(self, operation: Operation) -> Operation:
        """`operation` with its answer whole: read from its blob when the record names one."""
        if operation.answer is None or not operation.answer_blob or self.results is None:
            return operation
        return replace(operation, answer=replace(operation.answer, body=self.results.get(operation.answer_blob)))

    def _unexpired(self, operation_id: str) -> Operation | None:
        """The record, unless gone or expired; an answer in a blob is named, not read (its body empty)."""
        found = self._get_entity(operation_id)
        if found is None:
            return None
        operation = _operation(found)
        return operation if operation.expires_at > self._clock() else None

    def update(self, operation: Operation, **changes: Any) -> Operation | None:
        """Write `changes` if the record is unchanged since `operation` was read; None if someone else changed it.

        An operation that becomes done leaves the pending index (best effort: the sweep removes what is left). A
        new expiry gets its expiry row before the record says so (the row of the old one is dropped by the purge
        of its hour, which finds the record not expired)."""
        updated = spilled(self.results, operation, replace(operation, **changes))
        if operation.done and not updated.done:
            self._index(updated)  # made pending again (a re-drive): indexed before the record says so
        elif updated.expires_at != operation.expires_at:
            self._call(functools.partial(self._upsert, _expiry_row(updated)))
        try:
            metadata = self._call(lambda: self._client.update_entity(
                _entity(updated), mode=UpdateMode.REPLACE, etag=operation.etag,
                match_condition=MatchConditions.IfNotModified))
        except HttpResponseError:  # what _call lets through: changed (412) or gone (404) meanwhile
            if updated.answer_blob != operation.answer_blob:
                dropped(self.results, updated.answer_blob)
            return None
        if updated.done and not operation.done:
            self.unindex_pending(operation.id)
        if operation.answer_blob != updated.answer_blob:
            dropped(self.results, operation.answer_blob)
        return replace(updated, etag=str(metadata.get("etag", "")))

    def delete(self, operation: Operation) -> bool:
        """Delete the record if unchanged since read (a request that could not be queued is not accepted)."""
        try:
            self._call(lambda: self._client.delete_entity(operation.id, ROW_KEY, etag=operation.etag,
                                                          match_condition=MatchConditions.IfNotModified))
        except HttpResponseError:
            return False
        self.unindex_pending(operation.id)
        dropped(self.results, operation.answer_blob)
        return True

    def pending(self) -> Iterator[PendingEntry]:
        """The pending index: one entry per pending operation (a row may outlive its operation by a crash until the
        next sweep). Reads the index partition alone: its cost follows what is pending, not the table's size."""
        query = f"PartitionKey eq '{PENDING_PARTITION}'"
        with self._translated("query failed"), _unless_no_table():  # created with the first operation
            for entity in self._client.query_entities(query, select=["RowKey", "Api", "CreatedAt"]):
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    yield PendingEntry(str(entity["RowKey"]), Api(entity["Api"]), integer(entity["CreatedAt"]) / 1000)

    def recent(self, since: float, limit: int = 25) -> list[Operation]:
        """Up to `limit` operations created since `since`, the newest first, found through the expiry index: a
        record created at t expires at t + retention, so the hours from since + retention on name the recent ones
        (one or two small partitions, whatever the table's size); then one read per operation shown."""
        first, last = since + self.retention_seconds, self._clock() + self.retention_seconds + CLOCK_SLACK_SECONDS
        hours = sorted({_hour(first + step) for step in range(0, int(last - first) + 3600, 3600)} | {_hour(last)})
        candidates: list[tuple[float, str]] = []
        with self._translated("query failed"), _unless_no_table():
            for hour in hours:
                for row in self._client.query_entities(f"PartitionKey eq '{EXPIRY_PREFIX}{hour}'",
                                                       select=["RowKey", "ExpiresAt"]):
                    with contextlib.suppress(KeyError, TypeError, ValueError):
                        created = integer(row["ExpiresAt"]) / 1000 - self.retention_seconds
                        if created >= since:
                            candidates.append((created, str(row["RowKey"])))
        found: list[Operation] = []
        for _, operation_id in sorted(candidates, reverse=True):
            operation = self._unexpired(operation_id)
            if operation is not None and operation.created_at >= since:
                found.append(operation)
                if len(found) == limit:
                    break
        return found

    def unindex_pending(self, operation_id: str) -> None:
        """Drop the operation's pending index row (best effort: the sweep removes a row left behind)."""
        try:
            self._client.delete_entity(PENDING_PARTITION, operation_id)
        except AzureError as error:
            if not isinstance(error, ResourceNotFoundError):
                logger.warning("operation %s: pending index row kept (%s)", operation_id, described(error))

    def purge_expired(self, limit: int = 100) -> int:
        """Delete up to `limit` expired records, found through the expiry index of the hours gone by; how many went.

        Raises OperationsStorageError when the index cannot be read."""
        now = self._clock()
        upper = EXPIRY_PREFIX + _hour(now)
        query = f"PartitionKey ge '{EXPIRY_PREFIX}' and PartitionKey le '{upper}'"
        deleted = 0
        try:
            with self._translated(lambda: f"purge stopped after {deleted} record(s)"), _unless_no_table():
                for row in self._client.query_entities(query, select=["PartitionKey", "RowKey", "ExpiresAt"]):
                    if integer(row["ExpiresAt"]) / 1000 >= now:
                        continue  # later in the current hour
                    if self._purge(str(row["RowKey"])):
                        deleted += 1
                    self._client.delete_entity(row["PartitionKey"], row["RowKey"])
                    if deleted >= limit:
                        break
        except (KeyError, TypeError) as error:  # an index row this version cannot read
            raise OperationsStorageError(f"operations table {self.name}: purge stopped after {deleted} record(s) "
                                         f"({type(error).__name__})") from None
        return deleted

    def purge_unindexed(self, limit: int = 100) -> int:
        """Delete up to `limit` expired records that no expiry row names (kept by versions before the index): a scan
        of the records, for a sweep to run until it finds none."""
        now_ms = round(self._clock() * 1000)
        deleted = 0
        with self._translated(lambda: f"purge stopped after {deleted} record(s)"), _unless_no_table():
            for entity in self._client.query_entities(f"RowKey eq '{ROW_KEY}' and ExpiresAt lt {now_ms}L",
                                                      select=["PartitionKey"], results_per_page=limit):
                if self._purge(str(entity["PartitionKey"])):
                    deleted += 1
                if deleted >= limit:
                    break
        return deleted

    def _purge(self, operation_id: str) -> bool:
        """Delete the record if it has expired (an expired id may have been taken again since); True if it went."""
        found = self._get_entity(operation_id)
        if found is None:
            return False
        expired = _operation(found)
        if expired.expires_at > self._clock():
            return False
        return self.delete(expired)

    def _index(self, operation: Operation) -> None:
        """The pending and expiry index rows of a new record (upserts: a retry writes them again harmlessly)."""
        pending = {"PartitionKey": PENDING_PARTITION, "RowKey": operation.id, "Api": operation.api.value,
                   "CreatedAt": _ms(operation.created_at)}
        for row in (pending, _expiry_row(operation)):
            self._call(functools.partial(self._upsert, row))

    def _upsert(self, row: dict[str, Any]) -> Any:
        return self._creating_table(lambda: self._client.upsert_entity(row, mode=UpdateMode.REPLACE))

    def _create_entity(self, entity: dict[str, Any]) -> Mapping[str, Any]:
        written: Mapping[str, Any] = self._creating_table(lambda: self._client.create_entity(entity))
        return written

    def _creating_table(self, write: Callable[[], Any]) -> Any:
        """`write`, again once the table is created if it is missing (Azurite, or a deployment that did not)."""
        try:
            return write()
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_table()
            return write()

    def _get_entity(self, operation_id: str) -> Mapping[str, Any] | None:
        try:
            entity: Mapping[str, Any] = self._call(lambda: self._client.get_entity(operation_id, ROW_KEY))
        except ResourceNotFoundError:
            return None
        return entity

    def _call(self, request: Callable[[], Any]) -> Any:
        """`request()`; a lost race (409, 412) or a missing entity (404) is raised as it is, for the caller to take."""
        with self._translated(None, letting=_lost_race):
            return request()

    def _translated(self, doing: str | Callable[[], str] | None, *,
                    letting: Callable[[AzureError], bool] | None = None) -> contextlib.AbstractContextManager[None]:
        """Azure's errors as OperationsStorageError naming this table and what it was `doing` (read when it fails)."""
        def error(what: str) -> OperationsStorageError:
            done = doing() if callable(doing) else doing
            return OperationsStorageError(f"operations table {self.name}: " + (f"{done} ({what})" if done else what))
        return translated(error, letting=letting)


def _lost_race(error: AzureError) -> bool:
    return isinstance(error, (ResourceExistsError, ResourceNotFoundError)) or status_of(error) == 412


@contextlib.contextmanager
def _unless_no_table() -> Iterator[None]:
    """A missing table holds nothing: the block ends there, as if it had found no more."""
    with contextlib.suppress(ResourceNotFoundError):
        yield


def _hour(epoch: float) -> str:
    return time.strftime("%Y%m%d%H", time.gmtime(epoch))


def _expiry_row(operation: Operation) -> dict[str, Any]:
    return {"PartitionKey": EXPIRY_PREFIX + _hour(operation.expires_at), "RowKey": operation.id,
            "ExpiresAt": _ms(operation.expires_at)}


def _ms(seconds: float) -> EntityProperty:
    return EntityProperty(round(seconds * 1000), EdmType.INT64)


def _fields_of(operation: Operation) -> dict[str, Any]:
    """Everything but the id and ETag: to re-use an expired record's id for a new operation."""
    return {name: getattr(operation, name) for name in (
        "request", "fingerprint", "caller", "source", "correlation_id", "created_at", "expires_at", "state",
        "attempts", "failures", "lease_until", "in_flight", "answer", "reply_queue", "replied", "answer_blob",
        "shape")}


def _entity(operation: Operation) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": operation.id, "RowKey": ROW_KEY, "Format": FORMAT,
        "Api": operation.api.value, "Path": operation.request.path,
        # UTF-8 bytes (Edm.Binary, up to 64 KiB), not a string (64 KiB of UTF-16) of `\uXXXX` escapes: any valid
        # query (HUNTING_MAX_QUERY_BYTES) fits. A string Body of an older record still reads (json.loads takes both).
        "Body": json.dumps(operation.request.body, ensure_ascii=False).encode()
        if operation.request.body is not None else "",
        "Fingerprint": operation.fingerprint, "Caller": operation.caller, "Source": operation.source.value,
        "CorrelationId": operation.correlation_id, "CreatedAt": _ms(operation.created_at),
        "ExpiresAt": _ms(operation.expires_at), "State": operation.state.value, "Attempts": operation.attempts,
        "Failures": operation.failures, "LeaseUntil": _ms(operation.lease_until), "InFlight": operation.in_flight,
        "ReplyQueue": operation.reply_queue or "", "Replied": operation.replied,
        "Tenant": operation.request.tenant or "", "Shape": operation.shape.value if operation.shape else "",
    }
    answer = operation.answer
    if answer is not None and operation.answer_blob:
        entity.update({"AnswerStatus": answer.status, "AnswerHeaders": json.dumps(dict(answer.headers)),
                       "AnswerBlob": operation.answer_blob})
    elif answer is not None:
        packed = pack(answer.body, "Answer")
        if packed is None:  # larger than an entity holds: keep the status and say why the body is missing
            packed = pack(json.dumps({"error": "answer-too-large"}).encode(), "Answer")
        assert packed is not None
        entity.update({"AnswerStatus": answer.status, "AnswerHeaders": json.dumps(dict(answer.headers)), **packed})
    return entity


def _operation(entity: Mapping[str, Any]) -> Operation:
    try:
        body = entity.get("Body") or ""
        request = DefenderRequest(Api(entity["Api"]), str(entity["Path"]), json.loads(body) if body else None,
                                  str(entity.get("Tenant") or "") or None)
        answer = None
        blob = str(entity.get("AnswerBlob") or "")
        if entity.get("AnswerStatus") is not None:
            answer = Answer(integer(entity["AnswerStatus"]),
                            MappingProxyType(json.loads(entity.get("AnswerHeaders") or "{}")),
                            b"" if blob else unpack(entity, "Answer"))
        return Operation(
            id=str(entity["PartitionKey"]), request=request, fingerprint=str(entity["Fingerprint"]),
            caller=str(entity.get("Caller") or ""), source=Source(entity["Source"]),
            correlation_id=str(entity.get("CorrelationId") or ""), created_at=integer(entity["CreatedAt"]) / 1000,
            expires_at=integer(entity["ExpiresAt"]) / 1000, state=State(entity["State"]),
            attempts=integer(entity.get("Attempts", 0)), failures=integer(entity.get("Failures", 0)),
            lease_until=integer(entity.get("LeaseUntil", 0)) / 1000, in_flight=bool(entity.get("InFlight")),
            answer=answer, reply_queue=str(entity.get("ReplyQueue") or "") or None,
            replied=bool(entity.get("Replied")), etag=str(entity.metadata.get("etag", ""))
            if hasattr(entity, "metadata") else "", answer_blob=blob,
            shape=HuntingShape(entity["Shape"]) if entity.get("Shape") else None)
    except (KeyError, TypeError, ValueError) as error:
        raise OperationsStorageError(f"operation record {entity.get('PartitionKey')!r} is unreadable: {error}") \
            from None
