"""Bytes kept in one Table Storage entity: zlib-compressed and split into binary properties `<prefix>0..N`.

A property holds at most 64 KiB and an entity 1 MiB, so a body is stored in chunks of CHUNK_BYTES,
at most MAX_CHUNKS of them (900 KiB), leaving room for keys and the entity's other properties.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from azure.data.tables import EntityProperty

#: Bytes per binary property: below Table Storage's 64 KiB per property.
CHUNK_BYTES = 60 * 1024
#: At most this many chunks (900 KiB), leaving room under the 1 MiB entity limit for keys and metadata.
MAX_CHUNKS = 15


def pack(body: bytes, prefix: str) -> dict[str, Any] | None:
    """The properties that hold `body` (`<prefix>Chunks` and `<prefix>0..N`), or None when it is too large."""
    packed = zlib.compress(body, 6)
    chunks = [packed[start:start + CHUNK_BYTES] for start in range(0, len(packed), CHUNK_BYTES)] or [b""]
    if len(chunks) > MAX_CHUNKS:
        return None
    return {f"{prefix}Chunks": len(chunks), **{f"{prefix}{index}": chunk for index, chunk in enumerate(chunks)}}


def unpack(entity: Mapping[str, Any], prefix: str) -> bytes:
    """The body `pack` stored under `prefix`; KeyError, TypeError or zlib.error when the entity does not hold one."""
    count = integer(entity.get(f"{prefix}Chunks"))
    return zlib.decompress(b"".join(entity[f"{prefix}{index}"] for index in range(count)))


def integer(value: Any) -> int:
    """An Int32 or Int64 property as an int (TypeError for anything else)."""
    value = value.value if isinstance(value, EntityProperty) else value
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value
