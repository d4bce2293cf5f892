"""The identifiers the gateway reads, each pattern written once: GUIDs (Entra object, client and tenant ids) and the
file hashes (SHA-1, SHA-256).

Each comes in two forms: lower case, the canonical form the gateway keeps, compares and stores, and any case, as
callers and Defender may write one (the gateway then lowers it). Use them with `fullmatch`; anchored (`^...$`) the
any-case ones are the OpenAPI document's patterns too (ECMA 262 and Python read them alike). ASCII only: no other
script's digits or letters.
"""

from __future__ import annotations

import re
from typing import Final

_LOWER_HEX = "[0-9a-f]"
_ANY_CASE_HEX = "[0-9a-fA-F]"


def _hex_groups(digit: str, *lengths: int) -> str:
    return "-".join(f"{digit}{{{length}}}" for length in lengths)


_GUID_GROUPS = (8, 4, 4, 4, 12)

#: A GUID in its canonical lower-case form (object ids, client ids, tenant ids).
GUID: Final = re.compile(_hex_groups(_LOWER_HEX, *_GUID_GROUPS), re.ASCII)
#: A GUID in upper, lower or mixed case.
GUID_ANY_CASE: Final = re.compile(_hex_groups(_ANY_CASE_HEX, *_GUID_GROUPS), re.ASCII)
#: A SHA-1 (40 hexadecimal digits) in lower case.
SHA1: Final = re.compile(_hex_groups(_LOWER_HEX, 40), re.ASCII)
#: A SHA-1 in any case.
SHA1_ANY_CASE: Final = re.compile(_hex_groups(_ANY_CASE_HEX, 40), re.ASCII)
#: A SHA-256 (64 hexadecimal digits) in lower case.
SHA256: Final = re.compile(_hex_groups(_LOWER_HEX, 64), re.ASCII)
#: A SHA-256 in any case.
SHA256_ANY_CASE: Final = re.compile(_hex_groups(_ANY_CASE_HEX, 64), re.ASCII)
