"""The maintenance sweep, run by the MaintenanceSweep timer function (MAINTENANCE_SCHEDULE, every minute):

- expired operation records are deleted in bounded batches, found through the expiry index of the hours
  gone by (records kept before that index existed: by a scan, until one finds none);
- what a dead instance left is finished: a pending operation whose claim lease has passed without an
  answer is released (its lease dropped, its stage kept) and queued again on its API's waiting queue, so
  that a worker ends it as it ends any such operation, exactly once: one that was waiting for a slot was
  never sent and is run as any pending operation (sent now); one marked as sending may have reached
  Defender: a lookup is sent again, a create ends as 504 upstream-outcome-unknown (never sent twice).
  The release is ETag-conditional, so of two sweeps (or a sweep and a late worker) only one acts. The
  instance's own message would come back only when the platform's 10-minute lease ends; it then finds
  the operation done and is dropped;
- result blobs (answers too large for a record, shared.asynchronous.results) past the expiry they were written with:
  their record's, which the purge deletes them with; this also takes the blob whose record never came to name it (a
  crash between the two writes) or was deleted without it (a storage failure then). Names sort by expiry, so the
  listing reads the expired ones and stops at the first one kept;
- pending-index rows whose operation is done, or whose record never came (a crash between the two writes; after
  MISSING_RECORD_GRACE_SECONDS, since the record is written just after its row), are removed.

Each sweep reads the pending index and the expiry index of the hours gone by: its cost follows what is
pending and what expired, never the table's history.

With a history (the operator page's charts), each sweep also records the queues' depths and the oldest pending
age per API, the highest of its minute (1 + APIs rows: a read and a write each, plus the depth reads), flushes this
instance's counts, and deletes the rows older than the history's retention (a query, then one request per row).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.asynchronous.messages import RequestMessage, encode
from shared.asynchronous.operations import OperationsStorageError, OperationStore, PendingEntry
from shared.asynchronous.queue_names import POISON_SUFFIX
from shared.asynchronous.queues import Queues
from shared.asynchronous.results import ResultsStore
from shared.defender.facts import Api
from shared.history.counters import MinuteCounters
from shared.history.store import RETENTION_MINUTES, HistoryStorageError, Reading, minute_of, queue_key

logger = logging.getLogger("mde_alert_gateway.maintenance")

#: Expired records deleted per sweep at most (the next sweep goes on).
PURGE_BATCH = 500
#: A pending row is written just before its record: one whose record is missing is left alone this long (the
#: record may be on its way), then removed as a crash's leftover.
MISSING_RECORD_GRACE_SECONDS = 300.0


@dataclass(frozen=True)
class SweepReport:
    purged: int
    #: Operations a dead instance left, queued again to be finished.
    recovered: tuple[str, ...]
    #: Pending-index rows removed because their operation was done or gone.
    stale_index_rows: int
    #: Result blobs deleted past their expiry.
    results_purged: int = 0


class Maintenance:
    """One per process; `sweep` is the timer function's whole body."""

    def __init__(self, operations: OperationStore, queues: Queues, *, purge_batch: int = PURGE_BATCH,
                 clock: Callable[[], float] = time.time, counters: MinuteCounters | None = None,
                 apis: tuple[Api, ...] = tuple(Api), results: ResultsStore | None = None) -> None:
        self.operations = operations
        self.results = results
        self.queues = queues
        self.counters = counters
        self.apis = apis
        self.purge_batch = purge_batch
        self._clock = clock
        self._unindexed_left = True

    def sweep(self) -> SweepReport:
        """One pass. Raises OperationsStorageError (ResultsStorageError among them) or QueueStorageError when storage
        fails (the next sweep goes on)."""
        pending = list(self.operations.pending())
        recovered, stale = self._finish_abandoned(pending)
        self.record(pending)
        purged = self.operations.purge_expired(self.purge_batch)
        if self._unindexed_left and purged < self.purge_batch:
            unindexed = self.operations.purge_unindexed(self.purge_batch - purged)
            self._unindexed_left = unindexed > 0
            purged += unindexed
        # After the records: a record purged now has deleted its blob; what is left past its expiry is an orphan.
        results = self.results.purge_expired(self._clock(), self.purge_batch) if self.results is not None else 0
        report = SweepReport(purged, tuple(recovered), stale, results)
        if recovered or purged or stale or results:
            logger.info("maintenance: %d expired record(s) deleted, %d abandoned operation(s) queued again (%s), "
                        "%d stale pending row(s) removed, %d expired result blob(s) deleted", purged, len(recovered),
                        ", ".join(recovered), stale, results)
        return report

    def record(self, pending: list[PendingEntry]) -> None:
        """The history's readings for this minute, this instance's counts, and the purge of the oldest rows. A
        history that cannot be written is logged, never a failed sweep."""
        if self.counters is None:
            return
        now = self._clock()
        minute, store = minute_of(now), self.counters.store
        created: dict[Api, list[float]] = {api: [] for api in self.apis}
        for entry in pending:
            created.setdefault(entry.api, []).append(entry.created_at)
        rows = {queue_key("requests"): self._depths(self.queues.requests_name)}
        for api in self.apis:
            ages = created.get(api, [])
            rows[queue_key(api.value)] = {**self._depths(self.queues.waiting_name(api)),
                                          Reading.PENDING.value: len(ages),
                                          Reading.OLDEST_AGE.value: int(now - min(ages)) if ages else 0}
        try:
            for key, values in rows.items():
                store.peak(minute, key, values)
            self.counters.flush()
            store.purge_before(minute - RETENTION_MINUTES, self.purge_batch)
        except HistoryStorageError as error:
            logger.warning("maintenance: the operator page's history not recorded (%s)", error)

    def _depths(self, queue: str) -> dict[str, int]:
        depths = {Reading.DEPTH.value: self.queues.depth(queue),
                  Reading.POISON_DEPTH.value: self.queues.depth(queue + POISON_SUFFIX)}
        return {name: depth for name, depth in depths.items() if depth is not None}

    def _finish_abandoned(self, pending: list[PendingEntry]) -> tuple[list[str], int]:
        recovered: list[str] = []
        stale = 0
        now = self._clock()
        for entry in pending:
            try:
                operation = self.operations.get(entry.operation_id)
            except OperationsStorageError as error:
                logger.warning("maintenance: operation %s not read (%s)", entry.operation_id, error)
                continue
            if operation is None and entry.created_at > now - MISSING_RECORD_GRACE_SECONDS:
                continue  # its record is being written now
            if operation is None or operation.done:
                self.operations.unindex_pending(entry.operation_id)
                stale += 1
                continue
            if not operation.lease_until or operation.lease_until > now:
                continue  # not claimed (queued, or on a waiting queue for its budget), or held by a live worker
            released = self.operations.update(operation, lease_until=0.0)
            if released is None:
                continue  # changed meanwhile: a worker (or another sweep) has it
            self.queues.put_waiting(operation.api, encode(RequestMessage(
                operation.id, operation.request, operation.reply_queue, operation.caller, shape=operation.shape)))
            logger.warning("maintenance: %s operation %s was abandoned %s (its claim lease passed %.0f s ago); queued "
                           "again to be finished", operation.api, operation.id,
                           "in flight" if operation.in_flight else "waiting for a slot, never sent",
                           now - operation.lease_until)
            recovered.append(operation.id)
        return recovered, stale
