"""One contract, two stores: the operation store in Azure Table Storage (Azurite) and its memory twin, which the
in-process worker tests (tests/unit/test_worker.py) stand on. Whatever the twin does here, the table does too."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.data.tables import TableClient

from localdev.azurite import Azurite
from shared.asynchronous.operations import Created, Existing, OperationStore, Source, State
from shared.asynchronous.operations_memory import MemoryOperationStore
from shared.asynchronous.operations_table import TableOperationStore
from shared.defender.client import DefenderRequest
from shared.validation import validate_create_alert
from tests.support.inputs import VALID
from tests.support.scripted import FakeClock

LOOKUP = DefenderRequest.file_alerts("6532ec91d513acc05f43ee0aa3002599729fd3e1")
CREATE = DefenderRequest.create_alert(validate_create_alert(VALID))
RETENTION = 3600

StoreFactory = Callable[[FakeClock], OperationStore]


@pytest.fixture(params=["memory", "table"])
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    def memory(clock: FakeClock) -> OperationStore:
        return MemoryOperationStore(RETENTION, clock=clock)

    def table(clock: FakeClock) -> OperationStore:
        azurite: Azurite = request.getfixturevalue("azurite")
        client = TableClient.from_connection_string(azurite.connection_string, "ops" + uuid.uuid4().hex[:16])
        return TableOperationStore(client, RETENTION, clock=clock)

    yield memory if request.param == "memory" else table


def new(store: OperationStore, operation_id: str, request: DefenderRequest = LOOKUP) -> Created | Existing:
    return store.create(store.new(operation_id, request, caller="", source=Source.QUEUE, correlation_id="c"))


def test_an_id_is_taken_once_and_the_same_request_finds_it(make_store: StoreFactory) -> None:
    store = make_store(FakeClock())
    first = new(store, "op-1")
    assert isinstance(first, Created) and first.operation.state is State.PENDING
    again = new(store, "op-1")
    assert isinstance(again, Existing) and again.same and again.operation.etag == first.operation.etag
    other = new(store, "op-1", CREATE)
    assert isinstance(other, Existing) and not other.same


def test_an_update_on_a_stale_read_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store(FakeClock())
    created = new(store, "op-2")
    assert isinstance(created, Created)
    claimed = store.update(created.operation, in_flight=True, lease_until=10.0)
    assert claimed is not None and claimed.etag != created.operation.etag
    assert store.update(created.operation, attempts=5) is None  # read before the claim
    found = store.get("op-2")
    assert found is not None and found.in_flight and found.attempts == 0


def test_pending_entries_follow_their_operations(make_store: StoreFactory) -> None:
    store = make_store(FakeClock())
    kept, finished, dropped = (new(store, name) for name in ("kept", "finished", "dropped"))
    assert isinstance(kept, Created) and isinstance(finished, Created) and isinstance(dropped, Created)
    assert sorted(entry.operation_id for entry in store.pending()) == ["dropped", "finished", "kept"]
    assert store.update(finished.operation, state=State.DONE) is not None
    assert store.delete(dropped.operation)
    (entry,) = store.pending()
    assert (entry.operation_id, entry.api) == ("kept", kept.operation.api)
    assert store.get("dropped") is None


def test_an_expired_operation_is_gone_its_id_free_and_its_record_purged(make_store: StoreFactory) -> None:
    clock = FakeClock()
    store = make_store(clock)
    assert isinstance(new(store, "old"), Created)
    clock.advance(RETENTION + 1)
    assert store.get("old") is None
    renewed = new(store, "old", CREATE)  # a new request may take the id again
    assert isinstance(renewed, Created) and renewed.operation.api == CREATE.api
    clock.advance(RETENTION + 1)
    assert store.purge_expired(10) == 1
    assert store.get("old") is None and store.purge_expired(10) == 0


def test_a_done_operation_made_pending_again_is_pending_again(make_store: StoreFactory) -> None:
    """A re-drive: the same id, back in the pending index, its answer gone."""
    store = make_store(FakeClock())
    created = new(store, "again")
    assert isinstance(created, Created)
    done = store.update(created.operation, state=State.DONE, failures=3)
    assert done is not None and list(store.pending()) == []
    reopened = store.update(done, state=State.PENDING, failures=0, answer=None)
    assert reopened is not None and not reopened.done
    assert [entry.operation_id for entry in store.pending()] == ["again"]
    found = store.get("again")
    assert found is not None and found.state is State.PENDING and found.failures == 0


def test_recent_operations_are_the_newest_created_since_first(make_store: StoreFactory) -> None:
    clock = FakeClock(time.time())  # the table's scan starts from the service's own write times
    store = make_store(clock)
    assert isinstance(new(store, "older"), Created)
    clock.advance(20)
    since = clock.now
    for name in ("first", "second", "third"):
        clock.advance(1)
        assert isinstance(new(store, name), Created)
    assert [operation.id for operation in store.recent(since, limit=2)] == ["third", "second"]
    assert [operation.id for operation in store.recent(since)] == ["third", "second", "first"]


def test_a_record_kept_longer_is_purged_at_its_new_expiry_not_before(make_store: StoreFactory) -> None:
    """A create that may have reached Defender is kept past the retention (Operation.kept_until): the expiry index
    follows the new expiry, so the record is neither purged early nor left behind."""
    clock = FakeClock(time.time())
    store = make_store(clock)
    created = new(store, "kept", CREATE)
    assert isinstance(created, Created)
    kept = store.update(created.operation, attempts=1, expires_at=clock.now + 5 * RETENTION)
    assert kept is not None
    clock.advance(RETENTION + 3600 + 1)  # the old expiry's hour has gone by
    assert store.purge_expired(10) == 0
    found = store.get("kept")
    assert found is not None and found.attempts == 1
    clock.advance(4 * RETENTION)
    assert store.purge_expired(10) == 1
    assert store.get("kept") is None
