"""How one (principal, API) state is laid out as a table entity.

PartitionKey = the principal made key-safe, RowKey = the API name. Properties:
`Format` (Int32, this layout's version), `Admissions` (Binary: big-endian int64 ms, ascending;
absent when empty), `BlockedUntil` (Int64 ms; absent when 0) and `Since` (Int64 ms: since when
the log is complete; absent when 0, as in entities written before it existed) and `BlockedKind` (String: what the
block is for, e.g. `cpu`; absent when unnamed).
"""

from __future__ import annotations

import hashlib
import string
import struct
from collections.abc import Mapping
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from shared.ratelimit.sliding_log import LogState

FORMAT = 1
_SAFE_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "-_.:@=")
_MAX_KEY_CHARS = 512
_INT64 = struct.Struct(">q")


def partition_key(principal: str) -> str:
    """A table-key-safe, one-to-one form of `principal`.

    Letters, digits and `-_.:@=` stay; every other character becomes `~XX` per UTF-8 byte, so
    no `/ \\ # ?`, control characters or `%` reach the key. Long keys become `~H` + SHA-256
    (`~H` never appears in an escaped key).
    """
    if not principal:
        raise ValueError("the principal must not be empty")
    key = "".join(ch if ch in _SAFE_KEY_CHARS else _escape(ch) for ch in principal)
    if len(key) > _MAX_KEY_CHARS:
        key = "~H" + hashlib.sha256(principal.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def _escape(ch: str) -> str:
    return "".join(f"~{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass"))


def to_entity(key: str, api: str, state: LogState) -> dict[str, Any]:
    """The entity to write for `state`."""
    entity: dict[str, Any] = {"PartitionKey": key, "RowKey": api, "Format": FORMAT}
    if state.admissions_ms:
        entity["Admissions"] = struct.pack(f">{len(state.admissions_ms)}q", *state.admissions_ms)
    if state.blocked_until_ms:
        entity["BlockedUntil"] = EntityProperty(state.blocked_until_ms, EdmType.INT64)
    if state.since_ms:
        entity["Since"] = EntityProperty(state.since_ms, EdmType.INT64)
    if state.blocked_kind:
        entity["BlockedKind"] = state.blocked_kind
    return entity


class EntityFormatError(ValueError):
    """A stored entity is not in a layout this code understands."""


def from_entity(entity: Mapping[str, Any]) -> LogState:
    """Read a stored entity back; raises EntityFormatError rather than guess."""
    if entity.get("Format") != FORMAT:
        raise EntityFormatError(f"unknown rate-limit entity format {entity.get('Format')!r}")
    packed = entity.get("Admissions", b"")
    if not isinstance(packed, bytes) or len(packed) % _INT64.size:
        raise EntityFormatError("the Admissions property is not a packed list of int64")
    admissions = tuple(sorted(value for (value,) in _INT64.iter_unpack(packed)))
    kind = entity.get("BlockedKind", "")
    if not isinstance(kind, str):
        raise EntityFormatError("the BlockedKind property is not a string")
    return LogState(admissions, _int64(entity, "BlockedUntil"), _int64(entity, "Since"), kind)


def _int64(entity: Mapping[str, Any], name: str) -> int:
    value = entity.get(name, 0)
    if isinstance(value, EntityProperty):
        value = value.value
    if not isinstance(value, int) or isinstance(value, bool):
        raise EntityFormatError(f"the {name} property is not an integer")
    return value
