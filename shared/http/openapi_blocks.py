"""The building blocks of the OpenAPI document's schemas, as the Power Platform connector rules want them: every
property with a Title Case `x-ms-summary` and a description, `x-nullable` where null may come."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

JsonObject = dict[str, Any]

def prop(summary: str, description: str, kind: str = "string", *, nullable: bool = False,
           **extra: Any) -> JsonObject:
    """A property: its type (`date-time`, `int64` and `int32` are strings with a format / integers), Title Case
    summary and description, `x-nullable` when Defender may send null."""
    formats = {"date-time": ("string", "date-time"), "int64": ("integer", "int64"), "int32": ("integer", "int32")}
    type_, format_ = formats.get(kind, (kind, None))
    schema: JsonObject = {"type": type_}
    if format_:
        schema["format"] = format_
    schema.update({"x-ms-summary": summary, "description": description})
    if nullable:
        schema["x-nullable"] = True
    schema.update(extra)
    return schema


def obj(summary: str, description: str, properties: Mapping[str, JsonObject], *,
            required: Sequence[str] = (), nullable: bool = False, **extra: Any) -> JsonObject:
    schema = prop(summary, description, "object", nullable=nullable, **extra)
    schema["properties"] = dict(properties)
    if required:
        schema["required"] = list(required)
    return schema


def array(summary: str, description: str, items: JsonObject, *, nullable: bool = False) -> JsonObject:
    return prop(summary, description, "array", nullable=nullable, items=items)


def ref(definition: str) -> JsonObject:
    return {"$ref": f"#/definitions/{definition}"}


def bare(schema: JsonObject) -> JsonObject:
    """A schema as a definition or array item: no entity title of its own (the property holding it has one)."""
    return {key: value for key, value in schema.items() if key != "x-ms-summary"}
