"""SHA-256 to SHA-1 of files, in Table Storage: a file's hashes never change, so a SHA-256 that any instance
resolved (through Defender's file information API) is never resolved again.

One entity per SHA-256: PartitionKey = "sha256", RowKey = the SHA-256 (lower case), property `Sha1` (lower
case). The mapping is a fact about the file; with many tenants each customer tenant still has a partition of its
own (`sha256~<tenant id>`), so that no tenant learns which files another looked up.

The map never fails a lookup: a storage error is a miss (on read) or a skipped store (on write), logged.
"""

from __future__ import annotations

import logging

from azure.data.tables import TableClient

from shared.identifiers import SHA1, SHA256
from shared.tables.clients import upsert_best_effort
from shared.tables.errors import read_or_none

logger = logging.getLogger("mde_alert_gateway.hash_map")

PARTITION = "sha256"


def partition(tenant: str | None) -> str:
    """The home tenant's partition, or a customer tenant's."""
    return PARTITION if tenant is None else f"{PARTITION}~{tenant}"


class FileHashMap:
    """`get(sha256)` / `put(sha256, sha1)` over `client`'s table, shared by every instance."""

    def __init__(self, client: TableClient) -> None:
        self._client = client

    def get(self, sha256: str, tenant: str | None = None) -> str | None:
        """The SHA-1 stored for `sha256` (lower case), or None (unknown, unreadable, or storage failed)."""
        if not SHA256.fullmatch(sha256):
            return None
        entity = read_or_none(self._client, partition(tenant), sha256, logger, "file hash map")
        if entity is None:
            return None
        sha1 = entity.get("Sha1")
        if not isinstance(sha1, str) or not SHA1.fullmatch(sha1):
            logger.warning("file hash map: entry for %s is unreadable; asking Defender", sha256)
            return None
        return sha1

    def put(self, sha256: str, sha1: str, tenant: str | None = None) -> bool:
        """Keep `sha256` -> `sha1`; False when either is not a lower-case hash or the store failed (logged)."""
        if not (SHA256.fullmatch(sha256) and SHA1.fullmatch(sha1)):
            return False
        entity = {"PartitionKey": partition(tenant), "RowKey": sha256, "Sha1": sha1}
        return upsert_best_effort(self._client, entity, logger, "file hash map")

