"""The gateway's queue names and Azure's queue facts, defined once: a valid name, a message's lifetime and largest
size, the poison queue of any queue, and the waiting queue of each Defender API (the Bicep, the queue triggers and the
settings all derive theirs from here)."""

from __future__ import annotations

import re

from shared.defender.facts import Api

#: Azure Storage queue names: 3-63 lowercase letters, digits and single hyphens, starting and ending alphanumeric.
QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}", re.ASCII)
#: How long a message the gateway puts on a queue lives (Azure's default, set explicitly on every message it sends).
#: The Functions host copies a message it gives up on to `<queue>-poison` with the same default.
MESSAGE_TTL_SECONDS = 7 * 24 * 3600
#: The largest queue message Azure Storage takes: 64 KiB of text (UTF-8, see message_bytes). A larger one is refused
#: (413).
MAX_MESSAGE_BYTES = 64 * 1024
#: The poison queue of any queue `q` (the Functions host's name for it): `q-poison`.
POISON_SUFFIX = "-poison"


def message_bytes(text: str) -> int:
    """A text's size on a queue, as MAX_MESSAGE_BYTES counts it: its UTF-8 bytes (a lone surrogate counted as the 3
    bytes it would take)."""
    return len(text.encode("utf-8", "surrogatepass"))


def waiting_suffix(api: Api) -> str:
    """The suffix of the queue where requests wait for `api`'s budget: `<REQUESTS_QUEUE>-create-alert` ..."""
    return "-" + api.value.replace("_", "-")


#: Room for the longest waiting-queue suffix and `-poison` within the 63 characters of a queue name.
MAX_REQUESTS_QUEUE_LENGTH = 63 - max(len(waiting_suffix(api)) for api in Api) - len(POISON_SUFFIX)
