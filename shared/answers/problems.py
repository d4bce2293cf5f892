"""RFC 9457 problem details: the one shape every error answer of the gateway takes. Immutable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shared.validation import FieldError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:mde-alert-gateway:problem:"

_NOTHING: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Problem:
    """An error answer: status, `type` suffix (`kind`), title, detail, and what else the caller needs.

    `retry_after` (seconds) is set whenever the caller is told to wait; `headers` are extra response
    headers that belong to this problem (WWW-Authenticate, Accept-Post).
    """

    status: int
    kind: str
    title: str
    detail: str
    errors: tuple[FieldError, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=lambda: _NOTHING)
    retry_after: int | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _NOTHING)

    def body(self, correlation_id: str | None = None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            document["errors"] = [error.to_json() for error in self.errors]
        document.update(self.extensions)
        if correlation_id:
            document["correlationId"] = correlation_id
        return document

    def render(self, correlation_id: str | None = None) -> bytes:
        return json.dumps(self.body(correlation_id)).encode()
