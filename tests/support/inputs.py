"""Valid inputs the tests start from: a create body, and the two kinds of request message; and the check that a text
pattern of the OpenAPI document refuses exactly what its validator refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from localdev.simulator.data import SEED_EVENT
from shared.validation import InvalidInputError

#: Every character but the surrogates (which JSON-schema tools cannot match), as far as a text pattern can differ:
#: the first 12,288 code points, the private-use area to the end of the BMP, and astral ones (the first, an emoji,
#: the last).
PATTERN_CODE_POINTS = (*range(0x3000), *range(0xE000, 0x10000), 0x10000, 0x1F600, 0x10FFFF)

VALID = {"machineId": SEED_EVENT["machineId"], "severity": "Low", "title": "validation test",
         "description": "example alert", "recommendedAction": "nothing", "eventTime": SEED_EVENT["eventTime"],
         "reportId": SEED_EVENT["reportId"], "category": "Exploit"}


def create_message(message_id: str, body: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "CreateAlertByReference", "body": dict(body or VALID),
            **extra}


def lookup_message(message_id: str, sha1: str, **extra: Any) -> dict[str, Any]:
    return {"version": 1, "id": message_id, "operation": "GetFileRelatedAlerts", "fileHash": sha1, **extra}


def pattern_disagreements(pattern: str, validate: Callable[[str], object]) -> list[str]:
    """The texts (each character of PATTERN_CODE_POINTS alone, and after a letter) that `pattern` and `validate` (which
    raises InvalidInputError for a text it refuses) judge differently."""
    compiled = re.compile(pattern)
    disagree = []
    for code in PATTERN_CODE_POINTS:
        for text in (chr(code), "a" + chr(code)):
            try:
                validate(text)
                accepted = True
            except InvalidInputError:
                accepted = False
            if (compiled.fullmatch(text) is not None) != accepted:
                disagree.append(f"U+{code:04X} in {text!r}")
    return disagree
