"""Azure's storage errors as the gateway's own: the one translation for the tables and queues.

Every store raises its own error (`RateLimitStorageError`, `OperationsStorageError`, `QueueStorageError`) that says
what failed as `HTTP <status>` or the SDK error's class name, never the SDK's message: that repeats the request's
URL and the service's text, which may name the account or hold a SAS. `translated` makes that error, `described` is
the same words for a log line, and `read_or_none` is the one "read one entity, or nothing" of the best-effort tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import TableClient


def status_of(error: AzureError) -> int | None:
    """The HTTP status the service answered with, or None when no answer came (a connection error, a timeout)."""
    return error.status_code if isinstance(error, HttpResponseError) else None


def described(error: AzureError) -> str:
    """What failed, safe to log or to say: `HTTP 503`, or the error's class name (`ServiceRequestError`)."""
    status = status_of(error)
    return f"HTTP {status}" if status else type(error).__name__


def error_code(error: HttpResponseError) -> str | None:
    """The storage error code (`TableNotFound`, `TableAlreadyExists`, ...), from the header or the SDK's parsed body."""
    headers = getattr(error.response, "headers", None) or {}
    code = headers.get("x-ms-error-code") or getattr(error, "error_code", None)
    return str(code.value if hasattr(code, "value") else code) if code else None


@contextmanager
def translated(make: Callable[[str], Exception], *,
               letting: Callable[[AzureError], bool] | None = None) -> Iterator[None]:
    """Run the block; an AzureError it raises becomes `make(described(error))`, unless `letting(error)` says the
    caller handles it (a lost race, a missing entity). Raised from None: the SDK's message goes nowhere."""
    try:
        yield
    except AzureError as error:
        if letting is not None and letting(error):
            raise
        raise make(described(error)) from None


def read_or_none(client: TableClient, partition: str, row: str, log: logging.Logger,
                 what: str) -> Mapping[str, Any] | None:
    """One entity, or None when there is none or the read failed (logged as `what`, never raised).

    For tables whose entries only save work (answers, hash mappings): a failed read is a miss, never a failed call.
    """
    try:
        entity: Mapping[str, Any] = client.get_entity(partition, row)
    except AzureError as error:
        if status_of(error) != 404:
            log.warning("%s: read failed (%s); asking Defender", what, described(error))
        return None
    return entity
