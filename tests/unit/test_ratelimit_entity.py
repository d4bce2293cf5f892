"""Table keys made from principals, and the entity layout."""

from __future__ import annotations

import pytest
from azure.data.tables import EdmType, EntityProperty

from shared.ratelimit import partition_key
from shared.ratelimit.entity import EntityFormatError, from_entity, to_entity
from shared.ratelimit.sliding_log import LogState

FORBIDDEN = set("/\\#?%") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


@pytest.mark.parametrize("principal", [
    "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "app:tenant@contoso.com",
    "a/b", "a\\b", "a#b", "a?b", "a%2Fb", "a~2Fb", "tab\there", "nul\x00", "del\x7f", "c1\x85",
    "späße", "💥", "'quoted'", "x" * 600, "~H" + "0" * 64,
])
def test_keys_are_table_safe(principal: str) -> None:
    key = partition_key(principal)
    assert not FORBIDDEN & set(key)
    assert len(key) <= 512


def test_keys_are_one_to_one() -> None:
    principals = ["a/b", "a~2Fb", "a~2fb", "a%2Fb", "ab", "a b", "x" * 600, "x" * 601, "~H", "~h"]
    keys = [partition_key(p) for p in principals]
    assert len(set(keys)) == len(principals)


def test_readable_principals_keep_their_form() -> None:
    assert partition_key("72f988bf-86f1-41af-91ab-2d7cd011db47") == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert partition_key("a/b") == "a~2Fb"


def test_empty_principal_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        partition_key("")


def test_entity_round_trip_uses_64_bit_values() -> None:
    state = LogState((1_800_000_000_000, 1_800_000_000_001), blocked_until_ms=1_800_000_100_000)
    entity = to_entity("k", "file_alerts", state)
    assert entity["BlockedUntil"] == EntityProperty(1_800_000_100_000, EdmType.INT64)
    assert len(entity["Admissions"]) == 16
    assert from_entity(entity) == state
    assert from_entity(to_entity("k", "file_alerts", LogState())) == LogState()
    assert "Admissions" not in to_entity("k", "file_alerts", LogState())


@pytest.mark.parametrize("entity", [
    {"Format": 2},
    {"Format": 1, "Admissions": b"\x00" * 7},
    {"Format": 1, "Admissions": "text"},
    {"Format": 1, "BlockedUntil": "soon"},
])
def test_unknown_layouts_are_refused(entity: dict[str, object]) -> None:
    with pytest.raises(EntityFormatError):
        from_entity(entity)
