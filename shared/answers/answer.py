"""An HTTP answer as a value: what the edge decides, what an operation keeps, what GET /api/operations replays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """Status, headers (Content-Type among them) and body, byte for byte."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")
