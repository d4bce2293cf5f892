"""Results too large for an operation's record: kept as one blob each, until the operation's expiry.

A table entity holds at most 1 MiB (shared.tables.chunks), and a hunting answer may hold 100,000 rows. An answer body
over RESULT_INLINE_LIMIT bytes is therefore written as a blob and the record keeps its name (`Operation.answer_blob`)
instead of the body. The name starts with the expiry it was written with (`<expiry, 11 digits>/<operation id>/<n>`):
names sort by expiry, so the maintenance sweep reads only the expired ones (and one more) and deletes them, whether
their record still names them (purged after its expiry too) or never came to (a crash between the blob and the
record: an orphan, which goes at the same time). A record that is deleted deletes its blob at once (best effort).

Where they are kept is a ResultsStore: BlobResultsStore (shared.asynchronous.results_blob, Azure Blob Storage) or
MemoryResultsStore (shared.asynchronous.results_memory: process memory, for in-process tests; not deployed).
Failures raise ResultsStorageError, an OperationsStorageError: a result is part of its operation's record, and
is answered like it when storage fails.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace
from typing import Protocol

from shared.asynchronous.operations import Operation, OperationsStorageError

logger = logging.getLogger("mde_alert_gateway.operations")

#: Answer bodies larger than this go to a blob (a table entity holds 1 MiB at most; this leaves the record small, so
#: that reading and updating it stays cheap).
RESULT_INLINE_LIMIT = 48 * 1024
#: Digits of the expiry (epoch seconds) a blob's name starts with: names sort as expiries until the year 5138.
_EXPIRY_DIGITS = 11
_NAME = re.compile(rf"(?P<expiry>[0-9]{{{_EXPIRY_DIGITS}}})/(?P<operation>[^/]+)/[0-9a-f]{{32}}", re.ASCII)


class ResultsStorageError(OperationsStorageError):
    """A result blob could not be written, read or deleted (or is missing while its record names it)."""


def result_name(operation_id: str, expires_at: float) -> str:
    """A new blob name for a result of `operation_id` kept until `expires_at` (each write its own name: a record
    re-used after its expiry never names the blob of its predecessor)."""
    return f"{int(expires_at) + 1:0{_EXPIRY_DIGITS}d}/{operation_id}/{uuid.uuid4().hex}"


def expiry_of(name: str) -> float | None:
    """The expiry a result's name starts with (None: not a result's name, left alone)."""
    match = _NAME.fullmatch(name)
    return float(match["expiry"]) if match else None


class ResultsStore(Protocol):
    """Result bodies by name, shared by every instance."""

    @property
    def name(self) -> str: ...

    def put(self, operation_id: str, body: bytes, expires_at: float) -> str:
        """Keep `body` for the operation until `expires_at`; the blob's name (for its record)."""

    def get(self, name: str) -> bytes:
        """The body kept under `name`; ResultsStorageError when it cannot be read or is gone."""

    def delete(self, name: str) -> bool:
        """Delete the blob; False when it was not there. Raises ResultsStorageError when storage fails."""

    def purge_expired(self, now: float, limit: int = 100) -> int:
        """Delete up to `limit` blobs whose expiry is before `now`, earliest first; how many went."""


def spilled(results: ResultsStore | None, before: Operation, after: Operation) -> Operation:
    """`after` (the record about to replace `before`) with its answer in a blob if the answer is new and too large
    for the record; a kept answer keeps its blob (and `after` the same name). Raises ResultsStorageError."""
    answer = after.answer
    if answer is None:
        return replace(after, answer_blob="") if after.answer_blob else after
    if after.answer_blob and after.answer_blob == before.answer_blob and answer.body \
            and (answer is not before.answer or (expiry_of(after.answer_blob) or 0) < after.expires_at):
        # A new answer (or one kept longer than its blob): a blob of its own. A body not read (the record as
        # `recent` gives it) is never written again: it keeps its blob.
        after = replace(after, answer_blob="")
    if results is None or after.answer_blob or len(answer.body) <= RESULT_INLINE_LIMIT:
        return after
    return replace(after, answer_blob=results.put(after.id, answer.body, after.expires_at))


def dropped(results: ResultsStore | None, name: str) -> None:
    """Delete a result no record names any more (best effort: the sweep deletes it at its expiry anyway)."""
    if results is None or not name:
        return
    try:
        results.delete(name)
    except ResultsStorageError as error:
        logger.warning("result %s kept until its expiry (%s)", name, error)
