"""Where the limiter keeps its shared state: the store protocol, and what a store reports back.

A store holds one `LogState` per (key, API) and writes it only if nobody changed it since it
was read (an ETag), so instances never overwrite each other's admissions. Two stores exist: the
Table Storage one every instance shares (`table_store`) and an in-memory one for tests and
single-process use (`memory_store`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shared.ratelimit.sliding_log import LogState


class RateLimitStorageError(RuntimeError):
    """The store is unreachable or failing; refuse the call (never admit it blindly)."""


@dataclass
class Tally:
    """Diagnostics for one decision: store requests made, ETag conflicts met, and the service's clock.

    `service_dates` are the `Date` headers of the store's answers, in order (none for a store
    without a clock of its own); the limiter checks its clock against them.
    """

    round_trips: int = 0
    conflicts: int = 0
    service_dates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """A state as read, with the ETag a write must match (None: the state does not exist yet)."""

    state: LogState
    etag: str | None


class StateStore(Protocol):
    """Conditional reads and writes of (key, API) states; failures raise RateLimitStorageError."""

    @property
    def name(self) -> str:
        """What to call the store in messages (e.g. its table)."""
        ...

    def read(self, key: str, api: str, tally: Tally) -> Snapshot:
        """The current state (an empty one with etag None when there is none)."""
        ...

    def write(self, key: str, api: str, state: LogState, etag: str | None, tally: Tally) -> str | None:
        """Create (etag None) or replace if unchanged since `etag`.

        Returns the new ETag, or None when another writer got there first (or the state went away).
        """
        ...
