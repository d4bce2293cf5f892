"""The identifier patterns (shared/identifiers.py): what each accepts, and that no other module of shared/ or
localdev/ writes a GUID or hash pattern of its own (one place for each rule)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.http.openapi_schemas import FILE_HASH_PATTERN, SHA1_PATTERN
from shared.http.openapi_tenants import TENANT_PATTERN
from shared.identifiers import GUID, GUID_ANY_CASE, SHA1, SHA1_ANY_CASE, SHA256, SHA256_ANY_CASE

ROOT = Path(__file__).resolve().parents[2]
HOME = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SHA1_VALUE = "6532ec91d513acc05f43ee0aa3002599729fd3e1"
SHA256_VALUE = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: What a GUID or hash pattern written by hand looks like: a hex class with a GUID group's or a hash's length.
HAND_WRITTEN = re.compile(r"\[0-9a-f(?:A-F)?\]\{(?:8|12|40|64)\}")


@pytest.mark.parametrize(("lower", "any_case", "value"), [
    (GUID, GUID_ANY_CASE, HOME), (SHA1, SHA1_ANY_CASE, SHA1_VALUE), (SHA256, SHA256_ANY_CASE, SHA256_VALUE),
])
def test_each_identifier_in_lower_and_any_case(lower: re.Pattern[str], any_case: re.Pattern[str], value: str) -> None:
    assert lower.fullmatch(value) and any_case.fullmatch(value) and any_case.fullmatch(value.upper())
    assert not lower.fullmatch(value.upper())
    for wrong in (value[:-1], value + "0", value[:-1] + "g", value[:-1] + "\u0663", f" {value}", value[:-1] + "\uff10"):
        assert not lower.fullmatch(wrong) and not any_case.fullmatch(wrong), wrong


def test_the_openapi_patterns_are_the_identifiers_anchored() -> None:
    assert f"^{SHA1_ANY_CASE.pattern}$" == SHA1_PATTERN
    assert f"^(?:{SHA1_ANY_CASE.pattern}|{SHA256_ANY_CASE.pattern})$" == FILE_HASH_PATTERN
    assert re.fullmatch(TENANT_PATTERN, HOME) and not re.fullmatch(TENANT_PATTERN, HOME.upper())
    assert GUID.pattern in TENANT_PATTERN


def test_no_other_module_writes_an_identifier_pattern() -> None:
    own = ROOT / "shared" / "identifiers.py"
    written = sorted(f"{path.relative_to(ROOT)}:{number}"
                     for folder in ("shared", "localdev") for path in (ROOT / folder).rglob("*.py") if path != own
                     for number, line in enumerate(path.read_text().splitlines(), 1) if HAND_WRITTEN.search(line))
    assert written == []
