"""Correlation ids: one per request, in the response header, in every log line, and sent to Defender."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

CORRELATION_HEADER = "X-Correlation-ID"
#: A correlation id the gateway keeps as the caller sent it (the OpenAPI document states the same pattern).
CORRELATION_ID_FORMAT = re.compile(r"[A-Za-z0-9._:-]{8,128}", re.ASCII)


def correlation_id_for(headers: Mapping[str, str]) -> str:
    """Keep a caller's well-formed id (so a playbook can trace its own run), otherwise make one: an odd id (empty,
    too long, another character) is replaced, never refused, and the answer's X-Correlation-ID names the id used
    (the OpenAPI document and docs/api.md say the same)."""
    # Only HTTP's own whitespace (space, tab) is trimmed: str.strip() would also drop e.g. a no-break space.
    offered = (headers.get(CORRELATION_HEADER) or headers.get(CORRELATION_HEADER.lower()) or "").strip(" \t")
    return offered if CORRELATION_ID_FORMAT.fullmatch(offered) else str(uuid.uuid4())
