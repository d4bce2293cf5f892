"""One HTTP request as the edge reads it, once."""

from __future__ import annotations

import functools
import re

import azure.functions as func

from shared.validation import FieldError, InvalidInputError

#: The Idempotency-Key header (IETF httpapi draft): a structured-field string, or a bare token.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r'"?([\x20-\x7e]{1,255}?)"?', re.ASCII)


class Incoming:
    """One request as the edge reads it, once: its correlation id, its caller, and how it wants its answer
    (`Prefer: respond-async`, an `Idempotency-Key`, `Cache-Control: no-cache`). The key is read when first asked
    for, after the body: a request with a bad body and a bad key hears about the body."""

    def __init__(self, req: func.HttpRequest, correlation_id: str, caller: str, tenant: str | None = None) -> None:
        self.req = req
        self.correlation_id = correlation_id
        self.caller = caller
        #: The customer tenant it is for (its id; None: the home tenant).
        self.tenant = tenant
        #: `Prefer: respond-async` (RFC 7240), among any other preferences.
        self.asynchronous = any(part.split(";", 1)[0].strip().lower() == "respond-async"
                                for part in (req.headers.get("Prefer") or "").split(","))
        #: `Cache-Control: no-cache` (or `no-store`, `max-age=0`): skip the answer cache.
        directives = {part.strip().lower() for part in (req.headers.get("Cache-Control") or "").split(",")}
        self.fresh = bool(directives & {"no-cache", "no-store", "max-age=0"})

    @functools.cached_property
    def idempotency_key(self) -> str | None:
        """The `Idempotency-Key` (IETF httpapi draft; a structured-field string or a bare token), or None; a
        malformed one is InvalidInputError (400 naming `header.Idempotency-Key`)."""
        raw = self.req.headers.get(IDEMPOTENCY_KEY_HEADER)
        if raw is None:
            return None
        match = _IDEMPOTENCY_KEY.fullmatch(raw.strip(" \t"))
        if not match or not match[1].strip():
            raise InvalidInputError([FieldError("header.Idempotency-Key",
                                                "must be 1-255 printable ASCII characters (optionally quoted)")])
        return match[1]

    @property
    def wants_operation(self) -> bool:
        """Asynchronous, or named by an Idempotency-Key: the call becomes an operation."""
        return self.asynchronous or self.idempotency_key is not None
