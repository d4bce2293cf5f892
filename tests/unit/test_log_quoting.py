"""Text a caller chose reaches a log line only quoted (repr-style): a CR/LF in a queue message's field name cannot end
the line and forge the next one (a CRITICAL line, say)."""

from __future__ import annotations

import json
import logging

import pytest

from shared.asynchronous.queues_memory import MemoryQueues
from shared.validation import FieldError
from tests.support.rigs import make_edge

FORGED = "x\r\nCRITICAL The gateway is misconfigured: forged"


def test_a_field_error_names_its_field_quoted() -> None:
    assert str(FieldError("body.severity", "is required")) == "'body.severity' is required"
    assert "\n" not in str(FieldError(FORGED, "is not a field")) and "\\r\\n" in str(FieldError(FORGED, "x"))


def test_an_unknown_field_name_of_a_queue_message_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    runtime = make_edge([]).runtime
    assert isinstance(runtime.queues, MemoryQueues)
    with caplog.at_level(logging.DEBUG):
        runtime.worker.handle(json.dumps({"version": 1, "id": "forging", "operation": "GetFileRelatedAlerts",
                             "fileHash": "6532ec91d513acc05f43ee0aa3002599729fd3e1", FORGED: 1}))
    lines = [record.getMessage() for record in caplog.records]
    assert any("'x\\r\\nCRITICAL" in line and "is not a field" in line for line in lines), lines
    assert not [line for line in lines if "\n" in line or "\r" in line]
    (poison,) = [json.loads(m.text) for m in runtime.queues.messages[runtime.queues.poison_name]]
    assert [error["field"] for error in poison["errors"]] == [FORGED]  # the record keeps the name as it came
