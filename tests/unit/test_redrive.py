"""Re-driving poisoned requests, in process: real poison entries made by the real worker over the memory twins,
then re-driven under their own operation id; a create that may have reached Defender never is."""

from __future__ import annotations

import json

import pytest

from shared.asynchronous.operations import (
    SENT_CREATE_RETENTION_SECONDS,
    Created,
    Operation,
    Source,
    State,
    keyed_operation_id,
)
from shared.asynchronous.queues import QueueStorageError
from shared.asynchronous.redrive import NotPoisoned, Redriven, RedriveRefused, Refusal, poisoned, redrive
from shared.defender.client import DefenderRequest
from shared.validation import validate_create_alert
from tests.support.inputs import VALID
from tests.support.rigs import EdgeRig, make_edge
from tests.support.scripted import alert_reply, alerts_reply, error_reply

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
CREATE = DefenderRequest.create_alert(validate_create_alert(VALID))


def lookup(message_id: str) -> str:
    return json.dumps({"version": 1, "id": message_id, "operation": "GetFileRelatedAlerts", "fileHash": SHA1})


def create(message_id: str) -> str:
    return json.dumps({"version": 1, "id": message_id, "operation": "CreateAlertByReference", "body": VALID})


def entries(rig: EdgeRig) -> dict[str, dict[str, object]]:
    queues = rig.runtime.queues
    return {str(entry.operation_id): entry.to_json()
            for entry in poisoned(queues, rig.runtime.operations, [queues.poison_name])}


def test_a_failed_lookup_is_redriven_under_its_own_id_and_answered_again() -> None:
    rig = make_edge([error_reply(404, "NotFound"), alerts_reply()])
    rig.runtime.worker.handle(lookup("look-1"))
    failed = rig.runtime.operations.get("look-1")
    assert failed is not None and failed.answer is not None and failed.answer.status == 502  # Defender's 404
    entry = entries(rig)["look-1"]
    assert entry["redrivable"] is True and entry["status"] == 502 and entry["operation"] == "GetFileRelatedAlerts"

    queues = rig.runtime.queues
    result = redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"]), rig.clock.now)
    assert result == Redriven("look-1", queues.poison_name)
    assert queues.depth(queues.poison_name) == 0
    reopened = rig.runtime.operations.get("look-1")
    assert reopened is not None and reopened.state is State.PENDING and reopened.answer is None
    assert [entry.operation_id for entry in rig.runtime.operations.pending()] == ["look-1"]
    (message,) = queues.take(queues.requests_name)  # type: ignore[attr-defined]
    rig.runtime.worker.handle(message.text)
    answered = rig.runtime.operations.get("look-1")
    assert answered is not None and answered.answer is not None and answered.answer.status == 200
    assert len(rig.transport.calls) == 2  # once failed, once re-driven: same operation id


def test_a_create_that_reached_defender_is_never_redriven() -> None:
    rig = make_edge([error_reply(400, "BadRequest")])
    rig.runtime.worker.handle(create("made-1"))
    entry = entries(rig)["made-1"]
    assert entry["redrivable"] is False and entry["refusal"] == Refusal.MAY_HAVE_REACHED_DEFENDER.value
    queues = rig.runtime.queues
    result = redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"]), rig.clock.now)
    assert isinstance(result, RedriveRefused) and result.entry.refusal is Refusal.MAY_HAVE_REACHED_DEFENDER
    assert queues.depth(queues.poison_name) == 1 and queues.depth(queues.requests_name) == 0  # left as it was


def test_a_create_that_never_left_is_redriven() -> None:
    rig = make_edge([alert_reply()], settings_env={"QUEUE_MAX_RETRIES": "0"})
    rig.store.available = False  # the budget cannot be read: nothing is sent, and with no retries it fails
    rig.runtime.worker.handle(create("held-1"))
    entry = entries(rig)["held-1"]
    assert entry["status"] == 503 and entry["redrivable"] is True
    rig.store.available = True
    queues = rig.runtime.queues
    message_id = str(entry["messageId"])
    assert isinstance(redrive(queues, rig.runtime.operations, queues.poison_name, message_id, rig.clock.now), Redriven)
    (message,) = queues.take(queues.requests_name)  # type: ignore[attr-defined]
    rig.runtime.worker.handle(message.text)
    done = rig.runtime.operations.get("held-1")
    assert done is not None and done.answer is not None and done.answer.status == 200 and done.attempts == 1


def test_an_invalid_message_and_an_unknown_entry_are_not_redriven() -> None:
    rig = make_edge([])
    rig.runtime.worker.handle(json.dumps({"version": 1, "id": "bad-1", "operation": "Nope"}))
    queues = rig.runtime.queues
    (entry,) = poisoned(queues, rig.runtime.operations, [queues.poison_name])
    assert entry.refusal is Refusal.INVALID and entry.operation_id == "bad-1"
    refused = redrive(queues, rig.runtime.operations, queues.poison_name, entry.message_id, rig.clock.now)
    assert isinstance(refused, RedriveRefused)
    assert redrive(queues, rig.runtime.operations, queues.poison_name, "no-such-id", rig.clock.now) == NotPoisoned()


def test_a_message_the_host_gave_up_on_is_queued_again_as_it_was() -> None:
    rig = make_edge([alerts_reply()])
    queues = rig.runtime.queues
    host_poison = queues.requests_name + "-poison"
    original = lookup("host-1")
    queues.put(host_poison, original)  # what the Functions host does after maxDequeueCount failed tries
    (entry,) = poisoned(queues, rig.runtime.operations, [host_poison])
    assert entry.refusal is None and entry.reason == "failed-tries" and entry.operation_id == "host-1"
    assert isinstance(redrive(queues, rig.runtime.operations, host_poison, entry.message_id, rig.clock.now), Redriven)
    (message,) = queues.take(queues.requests_name)  # type: ignore[attr-defined]
    assert message.text == original


def test_a_create_interrupted_on_its_way_is_never_redriven() -> None:
    """Claimed, maybe sent, never answered (the instance died): the worker ends it 504 and no re-drive sends it."""
    rig = make_edge([])
    operations = rig.runtime.operations
    stored = operations.create(operations.new("lost-1", CREATE, caller="", source=Source.QUEUE, correlation_id="c"))
    assert isinstance(stored, Created)
    assert operations.update(stored.operation, lease_until=rig.clock.now - 1, in_flight=True) is not None
    rig.runtime.worker.handle(create("lost-1"))
    entry = entries(rig)["lost-1"]
    assert entry["reason"] == "upstream-outcome-unknown" and entry["refusal"] == "may-have-reached-defender"
    assert rig.transport.calls == []


def test_a_create_the_host_gave_up_on_long_ago_is_not_queued_again() -> None:
    """Its operation may have run and been purged since: queued again it would be a new create."""
    rig = make_edge([])
    queues = rig.runtime.queues
    host_poison = queues.requests_name + "-poison"
    queues.put(host_poison, create("old-1"))
    rig.clock.advance(rig.runtime.operations.retention_seconds + 1)
    (entry,) = poisoned(queues, rig.runtime.operations, [host_poison])
    assert entry.refusal is Refusal.EXPIRED


def test_a_create_the_host_gave_up_on_without_a_record_is_not_queued_again_however_young() -> None:
    """No record: whether it ran cannot be told from the entry (a copy may be poisoned long after its operation
    began), so a create is never re-driven without one."""
    rig = make_edge([])
    queues = rig.runtime.queues
    host_poison = queues.requests_name + "-poison"
    queues.put(host_poison, create("young-1"))
    (entry,) = poisoned(queues, rig.runtime.operations, [host_poison])
    assert entry.refusal is Refusal.EXPIRED
    assert isinstance(redrive(queues, rig.runtime.operations, host_poison, entry.message_id, rig.clock.now),
                      RedriveRefused)
    assert queues.depth(queues.requests_name) == 0


def test_a_redrive_that_cannot_queue_loses_nothing_and_changes_nothing() -> None:
    rig = make_edge([error_reply(404, "NotFound")])
    rig.runtime.worker.handle(lookup("keep-1"))
    queues = rig.runtime.queues
    entry = entries(rig)["keep-1"]
    done = rig.runtime.operations.get("keep-1")
    assert done is not None and done.done

    class Failing(type(queues)):  # type: ignore[misc]
        def put(self, queue: str, text: str, *, delay_seconds: float = 0) -> None:
            raise QueueStorageError("queue down")

    queues.__class__ = Failing
    with pytest.raises(QueueStorageError):
        redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"]), rig.clock.now)
    queues.__class__ = Failing.__mro__[1]
    assert [peeked.id for peeked in queues.peek(queues.poison_name)] == [entry["messageId"]]  # shown again
    after = rig.runtime.operations.get("keep-1")
    assert after is not None and after.done and after.answer == done.answer
    assert list(rig.runtime.operations.pending()) == []


def test_a_redriven_operation_is_pending_from_the_redrive_on() -> None:
    rig = make_edge([error_reply(404, "NotFound")])
    rig.runtime.worker.handle(lookup("late-1"))
    rig.clock.advance(3 * 3600)
    queues = rig.runtime.queues
    entry = entries(rig)["late-1"]
    assert isinstance(redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"]),
                              rig.clock.now), Redriven)
    (pending,) = rig.runtime.operations.pending()
    assert pending.created_at == rig.clock.now  # the oldest-pending age starts from the re-drive


def test_a_copy_of_a_sent_create_poisoned_later_is_never_redriven_after_the_retention() -> None:
    """Scripted from the review: sent (attempts 1), a copy poisoned 30 minutes later, looked at retention + 60 s after
    the create began: the record still says it was sent; once the record is gone, a create is never re-driven."""
    rig = make_edge([alert_reply()])
    rig.runtime.worker.handle(create("sent-1"))
    queues, operations = rig.runtime.queues, rig.runtime.operations
    host_poison = queues.requests_name + "-poison"
    rig.clock.advance(30 * 60)
    queues.put(host_poison, create("sent-1"))  # a copy the host gave up on
    rig.clock.advance(operations.retention_seconds + 60 - 30 * 60)
    for _ in range(2):
        (entry,) = poisoned(queues, operations, [host_poison])
        assert entry.refusal is not None
        result = redrive(queues, operations, host_poison, entry.message_id, rig.clock.now)
        assert isinstance(result, RedriveRefused)
        rig.clock.advance(SENT_CREATE_RETENTION_SECONDS)  # and when even the kept record is gone
    assert queues.depth(queues.requests_name) == 0 and len(rig.transport.calls) == 1


def test_a_redrive_checks_again_on_the_record_it_reopens() -> None:
    """Two entries of one failed create, re-driven by two operators: the first re-drive's create is sent between the
    second's look at its entry and its write; the second must not reopen it."""
    rig = make_edge([alert_reply(), alert_reply()], settings_env={"QUEUE_MAX_RETRIES": "0"})
    rig.store.available = False  # nothing is sent: the create fails before its request leaves
    rig.runtime.worker.handle(create("twice-1"))
    rig.store.available = True
    queues, operations = rig.runtime.queues, rig.runtime.operations
    (first,) = queues.peek(queues.poison_name)
    queues.put(queues.poison_name, first.text)  # a second entry of the same operation
    second = next(peeked for peeked in queues.peek(queues.poison_name) if peeked.id != first.id)
    real_get = operations.get
    raced: list[bool] = []

    def get_while_another_redrives(operation_id: str) -> Operation | None:
        found = real_get(operation_id)
        if not raced:  # the second re-drive has described its entry: now the first one runs to its end
            raced.append(True)
            assert isinstance(redrive(queues, operations, queues.poison_name, first.id, rig.clock.now), Redriven)
            (message,) = queues.take(queues.requests_name)  # type: ignore[attr-defined]
            rig.runtime.worker.handle(message.text)
        return found

    operations.get = get_while_another_redrives  # type: ignore[method-assign]
    result = redrive(queues, operations, queues.poison_name, second.id, rig.clock.now)
    operations.get = real_get  # type: ignore[method-assign]
    assert isinstance(result, RedriveRefused) and result.entry.refusal is Refusal.MAY_HAVE_REACHED_DEFENDER
    assert queues.depth(queues.requests_name) == 0 and len(rig.transport.calls) == 1
    done = operations.get("twice-1")
    assert done is not None and done.done and done.attempts == 1


def test_a_create_sent_by_a_synchronous_call_with_an_idempotency_key_is_never_redriven() -> None:
    rig = make_edge([error_reply(404, "ResourceNotFound", "Event not found")])
    response = rig.create(VALID, headers={"Idempotency-Key": "sync-1"})
    assert response.status_code == 404
    operation_id = keyed_operation_id("", "sync-1")
    kept = rig.runtime.operations.get(operation_id)
    assert kept is not None and kept.attempts == 1
    queues = rig.runtime.queues
    queues.put_poison(json.dumps({"reason": "event-not-found", "detail": "", "operation_id": operation_id,
                                  "status": 404, "message": create(operation_id)}))
    (entry,) = poisoned(queues, rig.runtime.operations, [queues.poison_name])
    assert entry.refusal is Refusal.MAY_HAVE_REACHED_DEFENDER
    assert isinstance(redrive(queues, rig.runtime.operations, queues.poison_name, entry.message_id, rig.clock.now),
                      RedriveRefused)
    assert len(rig.transport.calls) == 1
