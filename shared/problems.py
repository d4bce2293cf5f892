"""RFC 9457 problem details: the one shape every error of the gateway takes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:mde-alert-gateway:problem:"


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: where it is (`body.severity`, `route.sha1`) and what is wrong."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class ProblemError(Exception):
    """An error answer. Raise it anywhere below the entry points; they turn it into a response."""

    status: int
    title: str
    detail: str
    kind: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

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


def validation_problem(errors: list[FieldError], *, detail: str | None = None) -> ProblemError:
    """400 naming every bad field."""
    names = ", ".join(error.field for error in errors)
    return ProblemError(
        status=400,
        title="Invalid request",
        detail=detail or f"The request has invalid fields: {names}. Nothing was sent to Defender.",
        kind="validation-error",
        errors=errors,
    )
