"""The shared answers and the SHA-256 map: values read and checked by shared.settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnswerCacheSettings:
    """The shared answers for repeated file-alerts lookups (and hunting queries), and the SHA-256 -> SHA-1 map of
    looked-up files."""

    #: 0: no cache.
    ttl_seconds: int
    table_name: str
    #: FILE_HASH_TABLE: every SHA-256 resolved to its SHA-1 (kept for good: a file's hashes never change).
    file_hash_table: str
    #: HUNTING_SHARE_SECONDS: how long a hunting answer is shared (0: never; every query goes to Graph).
    hunting_share_seconds: int
