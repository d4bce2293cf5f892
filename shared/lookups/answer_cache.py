"""Shared answers for repeated file-alerts lookups (and hunting queries), in Table Storage: every instance reads what
any instance stored.

One entity per (principal, SHA-1): PartitionKey = the principal made key-safe, RowKey = `file_alerts~<sha1>` (a hunting
query's: `hunting~<SHA-256 of the query and timespan>`, shared.lookups.hunting; each kind a cache of its own TTL).
Properties: `Format` (2), `StoredAt` (Int64 ms), `Encoding` (`zlib`), `BodyChunks` (Int32) and `Body0`..`BodyN`
(binary), and for a hunting answer `Seconds` (Double: how long the Graph call that got it took). Defender's answer
is compressed (alert JSON shrinks about tenfold) and split into chunks below Table Storage's 64 KiB per property; an
answer that would not fit well under the 1 MiB entity limit is not kept.

The cache never fails a lookup: a storage error is a miss (on read) or a skipped store (on write), logged.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.data.tables import EdmType, EntityProperty, TableClient

from shared.ratelimit import partition_key
from shared.tables.chunks import integer, pack, unpack
from shared.tables.clients import upsert_best_effort
from shared.tables.errors import read_or_none

logger = logging.getLogger("mde_alert_gateway.cache")

FORMAT = 2


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer and how old it is."""

    body: bytes
    #: Whole seconds since it was stored (the `Age` header).
    age: int
    #: How long the call that got it took (seconds; a hunting answer's Stats.ExecutionTime), 0.0 when not kept.
    seconds: float = 0.0


class AnswerCache:
    """Answers of one `kind` (`file_alerts`, `hunting`) kept for `ttl_seconds`, shared by every instance through
    `client`'s table."""

    def __init__(self, client: TableClient, ttl_seconds: int, *, clock: Callable[[], float] = time.time,
                 kind: str = "file_alerts") -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive (a TTL of 0 means: no cache at all)")
        self.ttl_seconds = ttl_seconds
        self.kind = kind
        self._client = client
        self._clock = clock

    def get(self, principal: str, key: str) -> CachedAnswer | None:
        """The answer stored for `key` (a SHA-1, a query's hash) within the TTL, or None."""
        entity = read_or_none(self._client, partition_key(principal), self._row(key), logger, "answer cache")
        if entity is None:
            return None
        try:
            age_ms = round(self._clock() * 1000) - integer(entity.get("StoredAt"))
            if entity.get("Format") != FORMAT or not 0 <= age_ms < self.ttl_seconds * 1000:
                return None  # expired (or from a clock far ahead): ask again
            body = unpack(entity, "Body")
            seconds = entity.get("Seconds")
        except (KeyError, TypeError, zlib.error):
            logger.warning("answer cache: entry for %s is unreadable; asking Defender", key)
            return None
        return CachedAnswer(body, age_ms // 1000, _seconds(seconds))

    def put(self, principal: str, key: str, body: bytes, *, seconds: float | None = None) -> bool:
        """Keep `body` for `key` (and `seconds`, how long the call that got it took); False when it is too large to
        keep or the store failed (logged)."""
        chunks = pack(body, "Body")
        if chunks is None:
            logger.info("answer cache: %d bytes for %s is too large to keep", len(body), key)
            return False
        entity: dict[str, Any] = {
            "PartitionKey": partition_key(principal), "RowKey": self._row(key), "Format": FORMAT,
            "StoredAt": EntityProperty(round(self._clock() * 1000), EdmType.INT64), "Encoding": "zlib", **chunks,
            **({"Seconds": EntityProperty(float(seconds), EdmType.DOUBLE)} if seconds is not None else {}),
        }
        return upsert_best_effort(self._client, entity, logger, "answer cache")

    def _row(self, key: str) -> str:
        return f"{self.kind}~{key}"


def _seconds(value: Any) -> float:
    """The `Seconds` property (a Double) as a float; 0.0 when absent (an answer kept without it) or not a number."""
    value = value.value if isinstance(value, EntityProperty) else value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else 0.0
