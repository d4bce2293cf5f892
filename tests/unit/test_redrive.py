"""Re-driving poisoned requests, in process: real poison entries made by the real worker over the memory twins,
then re-driven under their own operation id; a create that may have reached Defender never is."""

from __future__ import annotations

import json

import pytest

from shared.asynchronous.operations import Created, Source, State
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
            for entry in poisoned(queues, rig.runtime.operations, [queues.poison_name], rig.clock.now)}


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
    (entry,) = poisoned(queues, rig.runtime.operations, [queues.poison_name], rig.clock.now)
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
    (entry,) = poisoned(queues, rig.runtime.operations, [host_poison], rig.clock.now)
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
    (entry,) = poisoned(queues, rig.runtime.operations, [host_poison], rig.clock.now)
    assert entry.refusal is Refusal.EXPIRED


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
