"""The queue worker's whole state machine in process: the real RequestWorker, Gateway, DefenderClient and limiters,
with Defender scripted at the requests transport, the operations and queues in their memory twins, and time on a
hand-driven clock. Each message is handed to the worker as the queue trigger would hand it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from shared.asynchronous.maintenance import Maintenance
from shared.asynchronous.messages import poison_entry
from shared.asynchronous.operations import SENT_CREATE_RETENTION_SECONDS, Source, Stage, State
from shared.asynchronous.operations_memory import MemoryOperationStore
from shared.asynchronous.queue_names import MAX_MESSAGE_BYTES, MESSAGE_TTL_SECONDS
from shared.asynchronous.queues_memory import MemoryQueues
from shared.asynchronous.redrive import Refusal, poisoned
from shared.asynchronous.worker import EARLY_SECONDS, MAX_HOLD_SECONDS, RequestWorker
from shared.defender.client import DefenderRequest
from shared.defender.facts import Api
from shared.validation import validate_create_alert
from tests.support.inputs import VALID
from tests.support.rigs import EdgeRig, make_edge
from tests.support.scripted import Reply, alert_reply, alerts_reply, error_reply

SHA1 = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
CREATE_REQUEST = DefenderRequest.create_alert(validate_create_alert(VALID))
LOOKUP_REQUEST = DefenderRequest.file_alerts(SHA1)


@dataclass
class WorkerRig:
    rig: EdgeRig
    operations: MemoryOperationStore
    queues: MemoryQueues
    worker: RequestWorker

    def handle(self, message: dict[str, Any] | str, *, waiting: bool = False) -> None:
        self.worker.handle(message if isinstance(message, str) else json.dumps(message), waiting=waiting)

    def waiting(self, api: Api) -> list[dict[str, Any]]:
        """The messages now on `api`'s waiting queue, with their delay from now."""
        now = self.rig.clock.now
        return [{**json.loads(m.text), "delay": m.visible_at - now}
                for m in self.queues.messages.get(self.queues.waiting_name(api), [])]

    def poisoned(self) -> list[dict[str, Any]]:
        return [json.loads(m.text) for m in self.queues.messages.get(self.queues.poison_name, [])]


def worker_rig(script: list[Reply] | None = None, **limits: str) -> WorkerRig:
    rig = make_edge(script or [], limits={Api(api): text for api, text in limits.items()})
    built = rig.runtime
    assert isinstance(built.operations, MemoryOperationStore) and isinstance(built.queues, MemoryQueues)
    return WorkerRig(rig, built.operations, built.queues, built.worker)


def create(message_id: str, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "CreateAlertByReference", "body": VALID, **extra}


def lookup(message_id: str) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "GetFileRelatedAlerts", "fileHash": SHA1}


def test_a_message_becomes_a_done_operation_sent_once_and_replied_once() -> None:
    w = worker_rig([alert_reply()])
    w.handle(create("one", replyQueue="my-replies"))
    operation = w.operations.get("one")
    assert operation is not None and operation.state is State.DONE and operation.answer is not None
    assert operation.answer.status == 200 and operation.attempts == 1
    (reply,) = w.queues.messages["my-replies"]
    assert json.loads(reply.text)["status"] == 200
    w.handle(create("one", replyQueue="my-replies"))  # delivered again: nothing sent, no second reply
    assert len(w.rig.transport.calls) == 1 and len(w.queues.messages["my-replies"]) == 1
    assert list(w.operations.pending()) == []


def test_a_spent_budget_sends_a_copy_to_the_waiting_queue_and_claims_nothing() -> None:
    w = worker_rig([alert_reply()], create_alert="1/60")
    w.handle(create("first"))
    w.handle(create("second"))
    (copy,) = w.waiting(Api.CREATE_ALERT)
    assert copy["id"] == "second" and copy["delay"] == 62 - EARLY_SECONDS  # the slot frees 60 s + 2 s margin on
    second = w.operations.get("second")
    assert second is not None and second.state is State.PENDING and not second.in_flight and second.failures == 0
    assert len(w.rig.transport.calls) == 1


def test_a_waiting_message_holds_for_a_slot_that_frees_soon_and_takes_it() -> None:
    w = worker_rig([alert_reply(), alert_reply()], create_alert="1/3")
    w.handle(create("first"))
    w.rig.clock.advance(1)  # the slot frees 5 s after the first (3 s + the 2 s margin): 4 s on, within the hold
    w.handle(create("second"), waiting=True)
    second = w.operations.get("second")
    assert second is not None and second.state is State.DONE
    assert len(w.rig.transport.calls) == 2 and w.waiting(Api.CREATE_ALERT) == []
    assert w.rig.sleep.waits == [4.0] and MAX_HOLD_SECONDS >= 4.0  # waited in place, exactly until the slot freed


def test_a_create_claimed_and_never_answered_ends_504_and_is_not_sent_again() -> None:
    w = worker_rig([])
    operation = w.operations.create(w.operations.new("lost", CREATE_REQUEST, caller="", source=Source.QUEUE,
                                                     correlation_id="lost"))
    claimed = w.operations.update(operation.operation, lease_until=w.rig.clock.now - 1, in_flight=True)
    assert claimed is not None
    w.handle(create("lost"))
    done = w.operations.get("lost")
    assert done is not None and done.answer is not None and done.answer.status == 504
    assert json.loads(done.answer.body)["type"].endswith(":upstream-outcome-unknown")
    assert w.rig.transport.calls == []
    (poison,) = w.poisoned()
    assert poison["reason"] == "upstream-outcome-unknown" and poison["operation_id"] == "lost"


def test_a_lookup_claimed_and_never_answered_is_sent_again() -> None:
    w = worker_rig([alerts_reply()])
    stored = w.operations.create(w.operations.new("again", LOOKUP_REQUEST, caller="", source=Source.QUEUE,
                                                  correlation_id="again"))
    w.operations.update(stored.operation, lease_until=w.rig.clock.now - 1, in_flight=True)
    w.handle(lookup("again"))
    done = w.operations.get("again")
    assert done is not None and done.answer is not None and done.answer.status == 200
    assert len(w.rig.transport.calls) == 1


def test_a_claim_held_by_another_worker_is_looked_at_again_when_its_lease_ends() -> None:
    w = worker_rig([])
    stored = w.operations.create(w.operations.new("held", LOOKUP_REQUEST, caller="", source=Source.QUEUE,
                                                  correlation_id="held"))
    w.operations.update(stored.operation, lease_until=w.rig.clock.now + 20, in_flight=True)
    w.handle(lookup("held"))
    (copy,) = w.waiting(Api.FILE_ALERTS)
    assert copy["id"] == "held" and copy["delay"] == 21
    assert w.rig.transport.calls == []


def test_an_invalid_message_gets_a_400_operation_and_goes_to_poison_with_its_reason() -> None:
    w = worker_rig([])
    w.handle({"version": 1, "id": "bad", "operation": "GetFileRelatedAlerts", "fileHash": "not-a-hash"})
    operation = w.operations.get("bad")
    assert operation is not None and operation.answer is not None and operation.answer.status == 400
    (poison,) = w.poisoned()
    assert poison["reason"] == "invalid-message" and [e["field"] for e in poison["errors"]] == ["fileHash"]
    assert w.rig.transport.calls == []


def test_an_invalid_message_of_nearly_64_kib_goes_to_poison_with_its_reason_cut_to_fit() -> None:
    """Its entry (reason, errors and the message) would be over a queue message's 64 KiB, which Azure refuses: the
    message goes cut, saying its size, and the worker raises nothing (else the host would try it again and again,
    then poison it without its reason). The operator page sees an entry that is not to be re-driven."""
    head = '{"version": 1, "id": "huge", "operation": "RunHuntingQuery", "body": {"Query": "'
    query = "\U0001f600" * ((MAX_MESSAGE_BYTES - len(head) - 2) // 4)  # over the query limit, within a message
    text = head + query + '"}}'
    whole = json.dumps({"reason": "invalid-message", "message": text}, ensure_ascii=False)
    assert len(text.encode()) <= MAX_MESSAGE_BYTES < len(whole.encode())
    w = worker_rig([])
    w.handle(text)
    operation = w.operations.get("huge")
    assert operation is not None and operation.answer is not None and operation.answer.status == 400
    (entry,) = w.queues.messages[w.queues.poison_name]
    assert len(entry.text.encode()) <= MAX_MESSAGE_BYTES
    poison = json.loads(entry.text)
    assert poison["reason"] == "invalid-message" and [e["field"] for e in poison["errors"]] == ["body.Query"]
    assert poison["truncatedFrom"] == len(text.encode()) and text.startswith(poison["message"])
    assert len(poison["message"]) > len(text) * 0.9  # cut no more than the entry's own fields need
    (described,) = poisoned(w.queues, w.operations, [w.queues.poison_name])
    assert described.refusal is Refusal.INVALID and described.requeue is None
    assert w.rig.transport.calls == []


@pytest.mark.parametrize("text", ["", "plain", '{"quoted": "\\"}', "\U0001f600" * 10, "a\u2028b\x00c"])
def test_a_poison_entry_that_fits_keeps_the_message_whole(text: str) -> None:
    entry = json.loads(poison_entry(text, "invalid-message", "why", errors=[]))
    assert entry == {"reason": "invalid-message", "detail": "why", "errors": [], "message": text}


def test_a_poison_entry_too_large_keeps_the_longest_prefix_that_fits() -> None:
    text = '"' * MAX_MESSAGE_BYTES  # each quote takes two bytes in the entry
    encoded = poison_entry(text, "not-json", "why")
    entry = json.loads(encoded)
    longer = json.dumps({**entry, "message": text[:len(entry["message"]) + 1]}, ensure_ascii=False)
    assert len(encoded.encode()) <= MAX_MESSAGE_BYTES < len(longer.encode())
    assert entry["truncatedFrom"] == MAX_MESSAGE_BYTES and set(entry["message"]) == {'"'}


def test_an_id_used_for_another_request_goes_to_poison() -> None:
    w = worker_rig([alert_reply()])
    w.handle(create("same-id"))
    w.handle(lookup("same-id"))
    (poison,) = w.poisoned()
    assert poison["reason"] == "id-reused"
    assert len(w.rig.transport.calls) == 1


def test_defenders_429_is_paced_again_and_never_counted_as_a_failure() -> None:
    w = worker_rig([error_reply(429, "TooManyRequests", retry_after="30")])
    w.handle(lookup("throttled"))
    (copy,) = w.waiting(Api.FILE_ALERTS)
    assert copy["delay"] == 30
    operation = w.operations.get("throttled")
    assert operation is not None and operation.state is State.PENDING and operation.failures == 0
    assert operation.attempts == 1 and not operation.in_flight


def test_transient_failures_back_off_then_end_with_the_synchronous_answer() -> None:
    w = worker_rig([error_reply(503, "ServiceUnavailable")] * 6)
    retries = w.rig.settings.asynchronous.max_retries
    for attempt in range(retries):
        w.handle(lookup("flaky"), waiting=True)
        operation = w.operations.get("flaky")
        assert operation is not None and operation.failures == attempt + 1 and operation.state is State.PENDING
        assert 4 <= w.waiting(Api.FILE_ALERTS)[-1]["delay"] <= 360  # 5 s doubling, jittered, at most 5 min
    w.handle(lookup("flaky"), waiting=True)
    done = w.operations.get("flaky")
    assert done is not None and done.answer is not None and done.answer.status == 502
    assert len(w.rig.transport.calls) == retries + 1


def test_storage_that_is_down_makes_the_message_come_back() -> None:
    w = worker_rig([])
    w.operations.available = False
    try:
        w.handle(lookup("later"))
    except Exception as error:  # the host retries the message and counts the failure
        assert type(error).__name__ == "OperationsStorageError"
    else:
        raise AssertionError("the worker swallowed a storage failure")
    assert w.rig.transport.calls == []


def test_the_sweep_finishes_an_abandoned_create_through_the_worker_exactly_once() -> None:
    w = worker_rig([])
    stored = w.operations.create(w.operations.new("abandoned", CREATE_REQUEST, caller="", source=Source.QUEUE,
                                                  correlation_id="abandoned"))
    w.operations.update(stored.operation, lease_until=w.rig.clock.now + 10, in_flight=True)
    sweep = Maintenance(w.operations, w.queues, clock=w.rig.clock)
    assert sweep.sweep().recovered == ()  # its lease still holds
    w.rig.clock.advance(11)
    assert sweep.sweep().recovered == ("abandoned",)
    assert sweep.sweep().recovered == ()  # released once: nothing queued twice
    (message,) = w.queues.take(w.queues.waiting_name(Api.CREATE_ALERT))
    w.worker.handle(message.text, waiting=True)
    done = w.operations.get("abandoned")
    assert done is not None and done.answer is not None and done.answer.status == 504
    assert w.rig.transport.calls == [] and list(w.operations.pending()) == []


def test_the_sweep_deletes_expired_operations_in_batches() -> None:
    w = worker_rig([alerts_reply()] * 3)
    for index in range(3):
        w.handle(lookup(f"old-{index}"))
    w.rig.clock.advance(w.operations.retention_seconds + 1)
    sweep = Maintenance(w.operations, w.queues, purge_batch=2, clock=w.rig.clock)
    assert sweep.sweep().purged == 2
    assert sweep.sweep().purged == 1
    assert all(w.operations.get(f"old-{index}") is None for index in range(3))


class Killed(BaseException):
    """The instance dies here (nothing below it runs, nothing catches it)."""


def _die(*_: object) -> None:
    raise Killed


def test_a_create_killed_while_waiting_for_its_slot_was_never_sent_and_is_sent_by_the_sweep() -> None:
    """Unknown means unknown: a claim that lapsed while it waited for a slot is finished as a request never sent."""
    w = worker_rig([alert_reply(), alert_reply()], create_alert="1/3")
    w.handle(create("first"))
    w.rig.clock.advance(1)  # the slot frees 4 s on: within the hold, so the waiting copy waits here for it
    w.worker._sleep = _die  # the instance dies during that wait
    with pytest.raises(Killed):
        w.handle(create("second"), waiting=True)
    waiting = w.operations.get("second")
    assert waiting is not None and waiting.stage is Stage.WAITING and not waiting.in_flight
    assert len(w.rig.transport.calls) == 1  # the first create only
    w.rig.clock.advance(waiting.lease_until - w.rig.clock.now + 1)  # its claim lease has passed
    assert Maintenance(w.operations, w.queues, clock=w.rig.clock).sweep().recovered == ("second",)
    (message,) = w.queues.take(w.queues.waiting_name(Api.CREATE_ALERT))
    w.worker._sleep = w.rig.sleep
    w.worker.handle(message.text, waiting=True)
    done = w.operations.get("second")
    assert done is not None and done.answer is not None and done.answer.status == 200 and done.attempts == 1
    assert len(w.rig.transport.calls) == 2  # each create once


def test_a_create_killed_while_sending_ends_504_and_is_never_sent_again() -> None:
    w = worker_rig([alert_reply()])
    w.rig.transport.on_send = _die  # the request has left when the instance dies
    with pytest.raises(Killed):
        w.handle(create("gone"))
    sending = w.operations.get("gone")
    assert sending is not None and sending.stage is Stage.SENDING
    assert sending.expires_at >= w.rig.clock.now + SENT_CREATE_RETENTION_SECONDS  # kept past any copy's life
    w.rig.clock.advance(sending.lease_until - w.rig.clock.now + 1)
    assert Maintenance(w.operations, w.queues, clock=w.rig.clock).sweep().recovered == ("gone",)
    (message,) = w.queues.take(w.queues.waiting_name(Api.CREATE_ALERT))
    w.worker.handle(message.text, waiting=True)
    done = w.operations.get("gone")
    assert done is not None and done.answer is not None and done.answer.status == 504
    assert json.loads(done.answer.body)["type"].endswith(":upstream-outcome-unknown")
    assert len(w.rig.transport.calls) == 1


def test_a_copy_of_a_sent_create_that_comes_back_after_the_retention_sends_nothing() -> None:
    """A waiting copy (or a replayed message) may come back as long as a queue keeps it: the record outlives it."""
    w = worker_rig([alert_reply()])
    w.handle(create("made"))
    w.rig.clock.advance(w.operations.retention_seconds + 60)
    w.handle(create("made"), waiting=True)
    w.rig.clock.advance(MESSAGE_TTL_SECONDS - w.operations.retention_seconds)
    w.handle(create("made"), waiting=True)
    assert len(w.rig.transport.calls) == 1
