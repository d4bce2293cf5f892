"""Re-driving poisoned requests, in process: real poison entries made by the real worker over the memory twins,
then re-driven under their own operation id; a create that may have reached Defender never is."""

from __future__ import annotations

import json

from shared.asynchronous.operations import State
from shared.asynchronous.redrive import NotPoisoned, Redriven, RedriveRefused, Refusal, poisoned, redrive
from tests.support.inputs import VALID
from tests.support.rigs import EdgeRig, make_edge
from tests.support.scripted import alert_reply, alerts_reply, error_reply

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"


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
    result = redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"]))
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
    result = redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"]))
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
    assert isinstance(redrive(queues, rig.runtime.operations, queues.poison_name, str(entry["messageId"])), Redriven)
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
    assert isinstance(redrive(queues, rig.runtime.operations, queues.poison_name, entry.message_id), RedriveRefused)
    assert redrive(queues, rig.runtime.operations, queues.poison_name, "no-such-id") == NotPoisoned()


def test_a_message_the_host_gave_up_on_is_queued_again_as_it_was() -> None:
    rig = make_edge([alerts_reply()])
    queues = rig.runtime.queues
    host_poison = queues.requests_name + "-poison"
    original = lookup("host-1")
    queues.put(host_poison, original)  # what the Functions host does after maxDequeueCount failed tries
    (entry,) = poisoned(queues, rig.runtime.operations, [host_poison])
    assert entry.refusal is None and entry.reason == "failed-tries" and entry.operation_id == "host-1"
    assert isinstance(redrive(queues, rig.runtime.operations, host_poison, entry.message_id), Redriven)
    (message,) = queues.take(queues.requests_name)  # type: ignore[attr-defined]
    assert message.text == original
