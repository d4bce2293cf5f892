"""Asynchronous calls: queue and table names and retry counts, read and checked by shared.settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.asynchronous.queue_names import POISON_SUFFIX, waiting_suffix
from shared.defender.facts import Api

#: A blob container's name (RESULTS_CONTAINER): 3-63 lowercase letters, digits and single hyphens, starting and ending
#: with a letter or digit.
CONTAINER_NAME = re.compile(r"(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*", re.ASCII)


@dataclass(frozen=True)
class AsyncSettings:
    """Asynchronous calls: the request queue, the operation records, and when a call becomes one."""

    requests_queue: str
    operations_table: str
    retention_seconds: int
    async_on_throttle: bool
    max_retries: int
    #: HISTORY_TABLE: the operator page's last hour (refusals, Defender's 429s, queue depths per minute).
    history_table: str
    #: RESULTS_CONTAINER: the blob container of answers too large for an operation's record.
    results_container: str

    @property
    def poison_queue(self) -> str:
        """Where the gateway puts requests that failed, with the reason (`<queue>-poison`)."""
        return self.requests_queue + POISON_SUFFIX

    def waiting_queue(self, api: Api) -> str:
        """Where requests wait for `api`'s budget (each API its own, so one spent budget holds up no other)."""
        return self.requests_queue + waiting_suffix(api)

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue the gateway reads: the request queue, then one waiting queue per API."""
        return (self.requests_queue, *(self.waiting_queue(api) for api in Api))
