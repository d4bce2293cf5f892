"""One call per key per process at a time: a concurrent caller with the same key joins the call in flight and takes
its result, if it comes in time (file-alerts lookups per file, shared hunting queries per query)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_R = TypeVar("_R")
_D = TypeVar("_D")


@dataclass
class _Flight(Generic[_R]):
    done: threading.Event = field(default_factory=threading.Event)
    result: _R | None = None


class Flights(Generic[_R]):
    """The calls in flight, by key. `event`: makes each flight's done-signal (a test's may keep its own time)."""

    def __init__(self, event: Callable[[], threading.Event] = threading.Event) -> None:
        self._event = event
        self._flights: dict[Hashable, _Flight[_R]] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, call: Callable[[], _R | _D], keep: Callable[[_R | _D], bool],
            wait_seconds: float) -> tuple[_R | _D, bool]:
        """`call()`'s result and False; or, while another thread runs a call for `key`, that call's result and True
        once it comes within `wait_seconds` (a result `keep` refuses is no one else's: the joiner then calls itself).
        """
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(self._event())
        if not leading and flight.done.wait(wait_seconds) and flight.result is not None:
            return flight.result, True
        try:
            result = call()
            if leading and keep(result):
                flight.result = result  # type: ignore[assignment]  # kept only when `keep` says it is an _R
        finally:
            if leading:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        return result, False
