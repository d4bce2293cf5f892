"""Every HTTP action of the Sentinel playbooks, checked against the gateway's OpenAPI 2.0 document
(shared.http.openapi).

For each action (playbooks/*/azuredeploy.json, read by tests/playbooks/actions.py):

* path and method: basePath + a path template of the document matches the action's path (a ``{name}`` segment
  of the document matches a workflow expression segment, whose sample must satisfy the path parameter), and the
  document has the action's method there;
* headers: each header is a declared header parameter whose schema the value satisfies, or Content-Type / Accept
  consistent with ``consumes`` / ``produces``; required header parameters are sent (``Prefer`` takes any value, as
  RFC 7240 wants: that a create asks for the one the gateway honours, respond-async, is checked on its own);
* body: the body is turned into concrete samples (each workflow expression replaced by a plausible value that the
  property's type, format and pattern call for, a workflow parameter by the values the template lets a deployment
  give it, a ``take(..., N)`` also by its longest result) and every sample is validated against the operation's
  body schema with a Draft 4 validator (Swagger 2.0's schema dialect), ``#/definitions/...`` resolved against the
  document; literals are validated as they are, and undeclared (additionalProperties false) or missing required
  properties are named;
* authentication: the managed identity with the gateway's audience (a template parameter), which only the
  document's Entra ID variant (oauth2) accepts.

Also: the playbooks call the operations they need (file alerts; create with respond-async), the Location they poll
is the document's GetOperation, the fields the playbooks read from the gateway's answers are documented, and the
checker itself reports a mismatch for a mutated action.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import azure.functions as func
import jsonschema  # type: ignore[import-untyped]
import pytest

from shared.asynchronous.operations import new_operation_id
from shared.defender.facts import CATEGORIES, CREATE_FIELDS, OPERATION_NAMES, SEVERITIES, Api
from shared.http import openapi
from shared.http.edge import HttpEdge
from shared.http.settings import AuthMode
from shared.validation import MAX_TEXT_LENGTH
from tests.playbooks import actions as pa

JsonObject = dict[str, Any]

#: The hunting operation's operationId (Graph's shape, which the hunt playbook calls).
RUN_HUNTING_QUERY = OPERATION_NAMES[Api.HUNTING]
#: The playbooks authenticate with their managed identity, so they need the gateway's Entra ID variant.
ENTRA_DOCUMENT = openapi.document(AuthMode.ENTRA)
FUNCTION_KEY_DOCUMENT = openapi.document(AuthMode.FUNCTION_KEY)

#: Plausible values a workflow expression yields at run time, for a property whose schema accepts them: the first
#: the schema accepts is used (free text first: a constrained property rejects it).
TEXT = "Suspicious PowerShell download on WIN-7F3K2"
EVENT_TIME = "2024-05-01T12:34:56.1234567Z"  # advanced hunting's Timestamp, all 7 fractional digits
DEVICE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"  # a DeviceId; 40 hexadecimal digits like a SHA-1
SHA256 = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2"
REPORT_ID = "20776"  # advanced hunting's ReportId, as the custom details give it (a string)
GUID = "4a9b8c2e-5d1f-4e3a-9b7c-6d2e1f0a8b3c"  # e.g. a systemAlertId
PLAUSIBLE_STRINGS = (TEXT, EVENT_TIME, DEVICE_ID, SHA256, REPORT_ID, GUID)
PLAUSIBLE_INTEGERS = (20776, 1)

#: Parameter keywords of Swagger 2.0 that are JSON schema (a non-body parameter's schema).
PARAMETER_SCHEMA_KEYS = ("type", "format", "items", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum",
                         "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "uniqueItems")


# --- the actions ---------------------------------------------------------------------------------------------------


class Case(NamedTuple):
    template: pa.Template
    action: pa.HttpAction


def _cases() -> list[Case]:
    return [Case(template, action) for path in pa.template_paths() for template in [pa.load(path)]
            for action in pa.http_actions(template)]


CASES = _cases()
each_action = pytest.mark.parametrize("case", CASES, ids=[f"{c.action.playbook}/{c.action.name}" for c in CASES])


# --- workflow expressions ------------------------------------------------------------------------------------------


def _closing(text: str, opening: int) -> int:
    """The index of the bracket closing the one at `opening` (string literals skipped), or -1."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    try:
        for i, char in pa.outside_literals(text[opening:]):
            if char in pairs:
                stack.append(pairs[char])
            elif stack and char == stack[-1]:
                stack.pop()
                if not stack:
                    return opening + i
    except pa.UnterminatedLiteralError:
        pass
    return -1


def _split_arguments(text: str) -> list[str]:
    """The top-level, comma-separated arguments of a call's argument text."""
    arguments: list[str] = []
    depth, start = 0, 0
    for i, char in pa.outside_literals(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append(text[start:i].strip())
            start = i + 1
    rest = text[start:].strip()
    return [*arguments, rest] if rest or arguments else arguments


def outer_call(expression: str) -> tuple[str, list[str]] | None:
    """``name(argument, ...)`` when the whole expression is one call (nothing after it): its name and arguments."""
    text = expression.strip()
    match = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\(", text)
    if not match:
        return None
    end = _closing(text, match.end() - 1)
    if end != len(text) - 1:
        return None
    return match[1], _split_arguments(text[match.end():end])


def _string_literal(argument: str) -> str | None:
    if len(argument) >= 2 and argument[0] == argument[-1] == "'":
        return argument[1:-1].replace("''", "'")
    return None


def parameter_reference(expression: str) -> str | None:
    """X when the whole expression is ``parameters('X')`` (workflow or ARM), else None."""
    call = outer_call(expression)
    if call and call[0] == "parameters" and len(call[1]) == 1:
        return _string_literal(call[1][0])
    return None


def take_bound(expression: str) -> int | None:
    """N when the whole expression is ``take(..., N)`` with a literal N: its result has at most N characters."""
    call = outer_call(expression)
    if call and call[0] == "take" and len(call[1]) == 2 and call[1][1].isdigit():
        return int(call[1][1])
    return None


class Value(NamedTuple):
    """A string of a workflow definition, by what Logic Apps makes of it.

    kind: literal (text is the value), arm (a deployment-time ``[...]``, text inside), typed (``@expr``: any JSON
    type), interpolation (exactly ``@{expr}``: always a string) or template (text with ``@{...}`` in it: a string).
    """

    kind: str
    text: str


def classify(raw: str) -> Value:
    if raw.startswith("[["):
        return Value("literal", raw[1:])
    if pa.is_arm_expression(raw) and raw.endswith("]"):
        return Value("arm", raw[1:-1])
    if raw.startswith("@@"):
        return Value("literal", raw[1:])
    inner = pa.interpolations(raw)
    if len(inner) == 1 and raw == "@{" + inner[0] + "}":
        return Value("interpolation", inner[0])
    if raw.startswith("@") and not raw.startswith("@{"):
        return Value("typed", raw[1:])
    if inner:
        return Value("template", raw)
    return Value("literal", raw.replace("@@{", "@{"))


# --- schemas and samples -------------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 300) -> str:
    """A long message (a long sample in it) with its middle left out."""
    return text if len(text) <= limit else f"{text[:limit // 2]} ...[{len(text)} characters]... {text[-limit // 2:]}"


class Checker:
    """Validation against one OpenAPI document, and the samples that stand in for a template's expressions."""

    def __init__(self, document: JsonObject, template: pa.Template) -> None:
        self.document = document
        self.template = template
        self.definitions: JsonObject = document.get("definitions", {})

    # schemas

    def resolve(self, schema: JsonObject) -> JsonObject:
        seen = 0
        while "$ref" in schema:
            reference = str(schema["$ref"])
            assert reference.startswith("#/definitions/"), f"unexpected $ref {reference}"
            schema = self.definitions[reference.removeprefix("#/definitions/")]
            seen += 1
            assert seen < 20, f"$ref loop at {reference}"
        return schema

    def errors(self, instance: Any, schema: JsonObject) -> list[str]:
        """Draft 4 validation errors of `instance` (format checked; #/definitions/... of the document)."""
        root = {**schema, "definitions": self.definitions}
        validator = jsonschema.Draft4Validator(root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {_clip(e.message)}" for e in found]

    # samples

    def plausible(self, schema: JsonObject) -> Any:
        """A realistic value the schema accepts (None when none of the plausible ones is)."""
        schema = self.resolve(schema)
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type", "string")
        candidates: tuple[Any, ...]
        if kind == "string":
            candidates = PLAUSIBLE_STRINGS
        elif kind == "integer":
            candidates = PLAUSIBLE_INTEGERS
        elif kind == "number":
            candidates = (1.5, *PLAUSIBLE_INTEGERS)
        elif kind == "boolean":
            candidates = (True,)
        elif kind == "array":
            return [self.plausible(schema.get("items", {}))]
        elif kind == "object":
            return {name: self.plausible(sub) for name, sub in schema.get("properties", {}).items()
                    if name in schema.get("required", [])}
        else:
            candidates = ()
        return next((c for c in candidates if not self.errors(c, schema)), None)

    def _template_parameter(self, name: str, schema: JsonObject, where: str) -> tuple[list[Any], list[str]]:
        """The values a deployment may give template parameter `name`, for a property with `schema`."""
        spec = self.template.get("parameters", {}).get(name)
        if spec is None:
            return [], [f"{where}: template parameter {name!r} is not declared"]
        schema = self.resolve(schema)
        problems: list[str] = []
        allowed = spec.get("allowedValues")
        if allowed is not None:
            samples = list(allowed)
        elif "defaultValue" in spec:
            samples = [spec["defaultValue"]]
        else:
            samples = [self.plausible(schema)]
        if allowed is None:  # any value can be given at deployment: its declared constraints must be as tight
            if "enum" in schema:
                problems.append(f"{where}: template parameter {name!r} has no allowedValues, the schema's enum is "
                                f"{schema['enum']}")
            if "maxLength" in schema and int(spec.get("maxLength", 1 << 62)) > int(schema["maxLength"]):
                problems.append(f"{where}: template parameter {name!r} allows more than the schema's maxLength "
                                f"{schema['maxLength']} (its maxLength: {spec.get('maxLength')})")
            if "minLength" in schema and int(spec.get("minLength", 0)) < int(schema["minLength"]):
                problems.append(f"{where}: template parameter {name!r} allows fewer characters than the schema's "
                                f"minLength {schema['minLength']} (its minLength: {spec.get('minLength')})")
        return samples, problems

    def _workflow_parameter(self, name: str, schema: JsonObject, where: str) -> tuple[list[Any], list[str]]:
        declared = pa.definition(self.template).get("parameters", {})
        if name not in declared:
            return [], [f"{where}: workflow parameter {name!r} is not declared"]
        given = pa.workflow(self.template)["properties"].get("parameters", {}).get(name, {})
        value = given["value"] if "value" in given else declared[name].get("defaultValue")
        if isinstance(value, str) and classify(value).kind == "arm":
            referenced = parameter_reference(classify(value).text)
            if referenced is not None:
                return self._template_parameter(referenced, schema, where)
            return [self.plausible(schema)], []
        return [value], []

    def _expression(self, expression: str, schema: JsonObject, where: str, *,
                    string: bool) -> tuple[list[Any], list[str]]:
        """Samples of what a workflow expression yields (`string`: as interpolated text) for a property."""
        schema = self.resolve(schema)
        problems: list[str] = []
        if string and schema.get("type", "string") != "string":
            problems.append(f"{where}: @{{...}} always sends a string, the schema wants {schema.get('type')}")
        referenced = parameter_reference(expression)
        if referenced is not None:
            samples, found = self._workflow_parameter(referenced, schema, where)
            problems += found
        else:
            sample = self.plausible({k: v for k, v in schema.items() if k != "type"} | {"type": "string"}
                                    if string else schema)
            if sample is None:
                problems.append(f"{where}: no plausible value of {expression!r} satisfies the schema {schema}")
                return [], problems
            samples = [sample]
            bound = take_bound(expression)
            if bound is not None and isinstance(sample, str) and sample:
                samples.append((sample * (bound // len(sample) + 1))[:bound])  # the longest it can be
            maximum = schema.get("maxLength")
            if maximum is not None and (bound is None or bound > int(maximum)):
                problems.append(f"{where}: {expression!r} can be longer than the schema's maxLength {maximum}; "
                                f"wrap it in take(..., {maximum})")
        if string:
            samples = [s if isinstance(s, str) else str(s) for s in samples]
        return samples, problems

    def samples(self, node: Any, schema: JsonObject, where: str) -> tuple[list[Any], list[str]]:
        """Concrete versions of a template's JSON value (the first is the plain one; each further one differs from
        it in one place), and what is wrong with the value for the schema, found on the way."""
        schema = self.resolve(schema)
        if isinstance(node, dict):
            return self._object_samples(node, schema, where)
        if isinstance(node, list):
            variants = [self.samples(item, schema.get("items", {}), f"{where}[{i}]") for i, item in enumerate(node)]
            base = [v[0][0] if v[0] else None for v in variants]
            out: list[Any] = [base]
            for index, (found, _) in enumerate(variants):
                out += [[*base[:index], extra, *base[index + 1:]] for extra in found[1:]]
            return out, [p for _, problems in variants for p in problems]
        if isinstance(node, str):
            value = classify(node)
            if value.kind == "literal":
                return [value.text], [f"{where}: literal {value.text!r}: {e}" for e in self.errors(value.text, schema)]
            if value.kind == "arm":
                referenced = parameter_reference(value.text)
                if referenced is not None:
                    return self._template_parameter(referenced, schema, where)
                return [self.plausible(schema)], []
            if value.kind == "template":
                text = node
                for inner in pa.interpolations(node):
                    text = text.replace("@{" + inner + "}", GUID, 1)
                return [text], []
            return self._expression(value.text, schema, where, string=value.kind == "interpolation")
        return [node], [f"{where}: literal {node!r}: {e}" for e in self.errors(node, schema)]

    def _object_samples(self, node: JsonObject, schema: JsonObject, where: str) -> tuple[list[Any], list[str]]:
        problems: list[str] = []
        declared: JsonObject = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            problems += [f"{where}.{name}: not a property of the schema (additionalProperties is false; declared: "
                         f"{sorted(declared)})" for name in node if name not in declared]
        problems += [f"{where}.{name}: required by the schema, missing" for name in schema.get("required", [])
                     if name not in node]
        extra = schema.get("additionalProperties")
        variants: dict[str, list[Any]] = {}
        for name, value in node.items():
            sub = declared.get(name, extra if isinstance(extra, dict) else {})
            variants[name], found = self.samples(value, sub, f"{where}.{name}")
            problems += found
        base = {name: found[0] if found else None for name, found in variants.items()}
        out: list[Any] = [base]
        for name, found in variants.items():
            out += [{**base, name: extra_sample} for extra_sample in found[1:]]
        return out, problems


# --- the checks of one action --------------------------------------------------------------------------------------


class Located(NamedTuple):
    path: str  # the document's path template (below basePath)
    method: str  # lower case
    operation: JsonObject | None  # None: the document has no such method there
    #: Each path parameter -> the action's segment (a workflow interpolation or a literal).
    arguments: dict[str, str]


def _split_uri(uri: str) -> tuple[list[str], str] | None:
    """The path segments after the gateway URL (interpolations whole) and the query, or None (not the gateway)."""
    if not uri.startswith(pa.GATEWAY_URL_EXPRESSION):
        return None
    rest = uri[len(pa.GATEWAY_URL_EXPRESSION):].replace(pa.GATEWAY_API_EXPRESSION, "/api")  # the home tenant's
    inner = pa.interpolations(rest)
    masked = rest
    for index, expression in enumerate(inner):
        masked = masked.replace("@{" + expression + "}", f"\0{index}\0", 1)

    def unmask(text: str) -> str:
        return re.sub(r"\0(\d+)\0", lambda m: "@{" + inner[int(m[1])] + "}", text)

    path, _, query = masked.partition("?")
    return [unmask(segment) for segment in path.split("/")[1:]], unmask(query)


def locate(action: pa.HttpAction, document: JsonObject) -> tuple[Located | None, list[str]]:
    """The document's operation for the action's path and method, or why there is none."""
    split = _split_uri(action.uri)
    if split is None:
        return None, [f"{action.uri!r} does not start with {pa.GATEWAY_URL_EXPRESSION} (not a gateway call)"]
    segments, _ = split
    base = [s for s in str(document.get("basePath", "/")).split("/") if s]
    if segments[:len(base)] != base:
        return None, [f"path /{'/'.join(segments)} is not below the document's basePath {document.get('basePath')}"]
    below = segments[len(base):]
    matches: list[tuple[str, dict[str, str]]] = []
    for template in document["paths"]:
        parts = template.split("/")[1:]
        if len(parts) != len(below):
            continue
        arguments: dict[str, str] = {}
        for part, segment in zip(parts, below, strict=True):
            parameter = re.fullmatch(r"\{([^{}]+)\}", part)
            if parameter:
                arguments[parameter[1]] = segment
            elif part != segment:
                break
        else:
            matches.append((template, arguments))
    if not matches:
        return None, [f"no path of the document matches {action.path} (paths: {sorted(document['paths'])})"]
    if len(matches) > 1:
        return None, [f"{action.path} matches several paths of the document: {[m[0] for m in matches]}"]
    template, arguments = matches[0]
    method = action.method.lower()
    operation = document["paths"][template].get(method)
    if operation is None:
        offered = sorted(m.upper() for m in document["paths"][template] if not m.startswith("x-"))
        return (Located(template, method, None, arguments),
                [f"{action.method} {document.get('basePath', '')}{template} is not in the document (it has "
                 f"{offered})"])
    return Located(template, method, operation, arguments), []


def _parameters(document: JsonObject, path: str, operation: JsonObject) -> list[JsonObject]:
    """The operation's parameters, with the path item's own (the operation's win, by name and place)."""
    own = {(p["name"], p["in"]): p for p in operation.get("parameters", [])}
    shared = {(p["name"], p["in"]): p for p in document["paths"][path].get("parameters", [])}
    return list({**shared, **own}.values())


def parameter_schema(parameter: JsonObject) -> JsonObject:
    return {key: parameter[key] for key in PARAMETER_SCHEMA_KEYS if key in parameter}


def _argument_problems(checker: Checker, raw: str, schema: JsonObject, where: str) -> list[str]:
    """A path, query or header argument (a literal, validated as it is, or expressions, validated as samples)."""
    samples, problems = checker.samples(raw, schema, where)
    if classify(raw).kind != "literal":
        problems += [f"{where}: sample {_clip(repr(sample))}: {e}" for sample in samples
                     for e in checker.errors(sample, schema)]
    return problems


def path_problems(action: pa.HttpAction, document: JsonObject, template: pa.Template) -> list[str]:
    """The path and method, and each path and query argument against its parameter."""
    located, problems = locate(action, document)
    if located is None or located.operation is None:
        return problems
    checker = Checker(document, template)
    parameters = _parameters(document, located.path, located.operation)
    for parameter in (p for p in parameters if p["in"] == "path"):
        segment = located.arguments.get(parameter["name"])
        where = f"path parameter {parameter['name']}"
        if segment is None:
            problems.append(f"{where}: not in the path template {located.path}")
            continue
        value = classify(segment)
        if value.kind == "interpolation":
            call = outer_call(value.text)
            if not call or call[0] != "encodeUriComponent":
                problems.append(f"{where}: {segment!r} is not URI-encoded (wrap it in encodeUriComponent)")
        elif value.kind != "literal":
            problems.append(f"{where}: {segment!r} mixes text and expressions in one segment")
        problems += _argument_problems(checker, segment, parameter_schema(parameter), where)
    split = _split_uri(action.uri)
    query = split[1] if split else ""
    declared = {p["name"]: p for p in parameters if p["in"] == "query"}
    sent = {pair.partition("=")[0]: pair.partition("=")[2] for pair in query.split("&") if pair}
    problems += [f"query parameter {name}: not declared" for name in sent if name not in declared]
    problems += [f"query parameter {name}: required, not sent" for name, p in declared.items()
                 if p.get("required") and name not in sent]
    return list(dict.fromkeys(problems))


def _media_types(value: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in value.split(",") if part.strip()]


def header_problems(action: pa.HttpAction, document: JsonObject, template: pa.Template) -> list[str]:
    """Content-Type and Accept against consumes and produces; any other header is a declared header parameter
    (Authorization belongs in the action's authentication); required header parameters are sent."""
    located, _ = locate(action, document)
    if located is None or located.operation is None:
        return []  # path_problems says why
    operation = located.operation
    checker = Checker(document, template)
    declared = {p["name"].lower(): p for p in _parameters(document, located.path, operation) if p["in"] == "header"}
    sent = {name.lower(): (name, value) for name, value in action.headers.items()}
    problems: list[str] = []
    consumes = [str(m).lower() for m in _inherited(document, operation, "consumes")]
    produces = [str(m).lower() for m in _inherited(document, operation, "produces")]
    has_body = "body" in action.raw.get("inputs", {})
    for lower, (name, value) in sent.items():
        if lower == "authorization":
            problems.append("header Authorization: written by hand (the action's authentication sends the token)")
        elif lower == "content-type":
            if not has_body:
                problems.append(f"header {name}: {value!r} on a request without a body")
            problems += [f"header {name}: {media!r} is not in the operation's consumes {consumes}"
                         for media in _media_types(value) if media not in consumes]
        elif lower == "accept":
            problems += [f"header {name}: {media!r} is not in the operation's produces {produces}"
                         for media in _media_types(value)
                         if media not in produces and media != "*/*"
                         and not any(p.startswith(media.removesuffix("*")) for p in produces if media.endswith("/*"))]
        elif lower not in declared:
            problems.append(f"header {name}: not a header parameter of {operation.get('operationId')} (declared: "
                            f"{sorted(p['name'] for p in declared.values())})")
        else:
            problems += _argument_problems(checker, value, parameter_schema(declared[lower]), f"header {name}")
    if has_body and "content-type" not in sent:
        problems.append(f"the body is sent without a Content-Type (the operation consumes {consumes})")
    problems += [f"header {p['name']}: required by {operation.get('operationId')}, not sent"
                 for lower, p in declared.items() if p.get("required") and lower not in sent]
    return list(dict.fromkeys(problems))


def body_problems(action: pa.HttpAction, document: JsonObject, template: pa.Template) -> list[str]:
    located, _ = locate(action, document)
    if located is None or located.operation is None:
        return []
    operation = located.operation
    bodies = [p for p in _parameters(document, located.path, operation) if p["in"] == "body"]
    inputs = action.raw.get("inputs", {})
    sent = action.body if action.body is not None else inputs.get("body")
    if sent is None:
        return [f"{operation.get('operationId')} requires a body, none is sent"
                for p in bodies if p.get("required")]
    if not bodies:
        return [f"a body is sent, {operation.get('operationId')} takes none"]
    schema: JsonObject = bodies[0]["schema"]
    checker = Checker(document, template)
    samples, problems = checker.samples(sent, schema, "body")
    for sample in samples:
        problems += [f"body sample, at {error}" for error in checker.errors(sample, schema)]
    return list(dict.fromkeys(problems))


def _inherited(document: JsonObject, operation: JsonObject, key: str) -> list[Any]:
    """An operation's consumes, produces or security, else the document's."""
    value = operation[key] if key in operation else document.get(key) or []
    return list(value)


def auth_problems(action: pa.HttpAction, document: JsonObject, template: pa.Template,
                  operation: JsonObject | None = None) -> list[str]:
    """The action's authentication against the operation's security (an alternative it satisfies)."""
    if operation is None:
        located, _ = locate(action, document)
        if located is None or located.operation is None:
            return []
        operation = located.operation
    problems: list[str] = []
    authentication = action.authentication
    managed_identity = authentication.get("type") == "ManagedServiceIdentity"
    if not managed_identity:
        problems.append(f"authentication {authentication} is not ManagedServiceIdentity")
    audience = authentication.get("audience")
    if not isinstance(audience, str) or not audience.strip():
        problems.append("the managed identity names no audience (the gateway's App ID URI)")
    elif classify(audience).kind == "arm":
        referenced = parameter_reference(classify(audience).text)
        spec = template.get("parameters", {}).get(referenced or "")
        if referenced is None or spec is None or str(spec.get("type", "")).lower() != "string":
            problems.append(f"audience {audience!r} is not a string template parameter")
    definitions: JsonObject = document.get("securityDefinitions", {})
    requirements = _inherited(document, operation, "security")
    headers = {name.lower() for name in action.headers}

    def satisfied(requirement: JsonObject) -> bool:
        for name in requirement:
            scheme = definitions.get(name)
            if scheme is None:
                problems.append(f"security requirement {name!r} has no security definition")
                return False
            if scheme["type"] == "oauth2":
                if not (managed_identity and audience):
                    return False
            elif scheme["type"] == "apiKey":
                if scheme.get("in") != "header" or str(scheme.get("name", "")).lower() not in headers:
                    return False
            else:
                return False
        return True

    if requirements and not any([satisfied(requirement) for requirement in requirements]):
        schemes = [{name: definitions.get(name, {}).get("type") for name in r} for r in requirements]
        problems.append(f"the action's authentication satisfies none of {operation.get('operationId')}'s security "
                        f"requirements {schemes}")
    return problems


def check_action(action: pa.HttpAction, template: pa.Template, document: JsonObject = ENTRA_DOCUMENT) -> list[str]:
    """Every mismatch between one HTTP action and the document (empty: none)."""
    return [*path_problems(action, document, template), *header_problems(action, document, template),
            *body_problems(action, document, template), *auth_problems(action, document, template)]


def _show(problems: list[str]) -> str:
    return "\n".join(problems)


# --- the tests -----------------------------------------------------------------------------------------------------


def test_every_playbook_has_http_actions() -> None:
    assert {case.action.playbook for case in CASES} == {path.parent.name for path in pa.template_paths()}
    assert len({path.parent.name for path in pa.template_paths()}) == 3


@each_action
def test_path_and_method_are_an_operation_of_the_document(case: Case) -> None:
    problems = path_problems(case.action, ENTRA_DOCUMENT, case.template)
    assert not problems, _show(problems)


@each_action
def test_headers_are_declared_parameters_or_follow_consumes_and_produces(case: Case) -> None:
    problems = header_problems(case.action, ENTRA_DOCUMENT, case.template)
    assert not problems, _show(problems)


@each_action
def test_body_validates_against_the_operations_body_schema(case: Case) -> None:
    problems = body_problems(case.action, ENTRA_DOCUMENT, case.template)
    assert not problems, _show(problems)


@each_action
def test_managed_identity_meets_the_entra_security_definition(case: Case) -> None:
    definitions = ENTRA_DOCUMENT["securityDefinitions"]
    assert definitions and all(scheme["type"] == "oauth2" for scheme in definitions.values())
    assert ENTRA_DOCUMENT["security"] and all(set(r) <= set(definitions) for r in ENTRA_DOCUMENT["security"])
    problems = auth_problems(case.action, ENTRA_DOCUMENT, case.template)
    assert not problems, _show(problems)


@each_action
def test_the_function_key_variant_would_refuse_the_playbooks(case: Case) -> None:
    """The playbooks send no function key: they need the gateway deployed with gatewayAuth=entra."""
    problems = auth_problems(case.action, FUNCTION_KEY_DOCUMENT, case.template)
    assert any("satisfies none" in p for p in problems), problems


def _operation_id(action: pa.HttpAction) -> str | None:
    located, _ = locate(action, ENTRA_DOCUMENT)
    return located.operation.get("operationId") if located and located.operation else None


def test_the_playbooks_call_every_operation_they_need() -> None:
    by_operation: dict[str | None, list[pa.HttpAction]] = {}
    for case in CASES:
        by_operation.setdefault(_operation_id(case.action), []).append(case.action)
    assert None not in by_operation, [a.name for a in by_operation[None]]
    assert by_operation.get(openapi.GET_FILE_RELATED_ALERTS), "no action looks up a file's alerts"
    creates = by_operation.get(openapi.CREATE_ALERT_BY_REFERENCE, [])
    assert creates, "no action creates an alert"
    assert by_operation.get(RUN_HUNTING_QUERY), "no action runs a hunting query"
    prefer = next(p for p in ENTRA_DOCUMENT["paths"][openapi.CREATE_ALERT_PATH]["post"]["parameters"]
                  if p["name"] == "Prefer")
    assert prefer["x-example"] == "respond-async"  # the preference the gateway honours (others it ignores)
    assert any({k.lower(): v for k, v in a.headers.items()}.get("prefer") == "respond-async" for a in creates), (
        "no create asks for respond-async")


def test_the_location_they_poll_is_the_documents_get_operation() -> None:
    paths = ENTRA_DOCUMENT["paths"]
    get_operation = paths[openapi.OPERATION_PATH]["get"]
    assert get_operation["operationId"] == openapi.GET_OPERATION
    # The Location of a 202, as the edge builds it, is GET {basePath}/operations/{operationId} of the document.
    location = HttpEdge._location(func.HttpRequest("POST", "https://func-mdegw.azurewebsites.net/api/alerts/x",
                                                   body=b""), new_operation_id())
    polled = pa.HttpAction("poll", "poll", "GET", pa.GATEWAY_URL_EXPRESSION + urlsplit(location).path,
                           urlsplit(location).path, {}, None, dict(CASES[0].action.authentication), {"inputs": {}})
    located, problems = locate(polled, ENTRA_DOCUMENT)
    assert not problems and located is not None and located.operation is not None
    assert located.operation["operationId"] == openapi.GET_OPERATION
    operation_id = next(p for p in get_operation["parameters"] if p["in"] == "path")
    assert not Checker(ENTRA_DOCUMENT, CASES[0].template).errors(located.arguments[operation_id["name"]],
                                                                 parameter_schema(operation_id))
    # Logic Apps polls with nothing but the URL and the action's authentication: nothing else may be required.
    assert [p["name"] for p in get_operation["parameters"] if p.get("required")] == [operation_id["name"]]
    assert {"200", "202"} <= set(get_operation["responses"])
    assert "Location" in get_operation["responses"]["202"]["headers"]
    for case in CASES:
        found, _ = locate(case.action, ENTRA_DOCUMENT)
        assert found is not None and found.operation is not None, case.action.name
        operation = found.operation
        assert operation.get("x-ms-long-running-operation") is True, case.action.name
        assert operation["x-ms-long-running-operation-options"] == {"final-state-via": "location"}
        accepted = operation["responses"]["202"]
        assert {"Location", "Retry-After"} <= set(accepted["headers"]), case.action.name
        assert accepted["headers"]["Location"].get("format") == "uri"
        problems = auth_problems(case.action, ENTRA_DOCUMENT, case.template, get_operation)
        assert not problems, _show(problems)


# --- what the playbooks read from the gateway's answers ------------------------------------------------------------

_ACCESSOR = re.compile(r"\s*\??\[\s*'((?:[^']|'')*)'\s*\]")


def _accessors(text: str, start: int) -> list[str]:
    keys: list[str] = []
    while match := _ACCESSOR.match(text, start):
        keys.append(match[1].replace("''", "'"))
        start = match.end()
    return keys


def reads_of(expression: str, source: str) -> list[list[str]]:
    """The accessor chains after each `source` (e.g. ``body('X')``, ``item()``) in an expression."""
    chains: list[list[str]] = []
    for match in re.finditer(re.escape(source), expression):
        chains.append(_accessors(expression, match.end()))
    return chains


def _action_reads(action_name: str, expression: str) -> list[list[str]]:
    """Chains read from an action's answer body: body('A')?[...] and outputs('A')?['body']?[...]."""
    quoted = action_name.replace("'", "''")
    chains = reads_of(expression, f"body('{quoted}')")
    chains += [chain[1:] for chain in reads_of(expression, f"outputs('{quoted}')") if chain[:1] == ["body"]]
    return chains


def answer_reads(template: pa.Template, document: JsonObject) -> tuple[list[str], list[str]]:
    """The fields a playbook reads from a gateway call's 200 answer (directly, or item by item in a Select, Filter
    array or For each over one of its arrays), as operationId.field ([] for an array's items), and what is wrong:
    each field the answer's schema does not have."""
    checker = Checker(document, template)
    problems: list[str] = []
    reads: list[str] = []
    answers: dict[str, tuple[str, JsonObject]] = {}
    for action in pa.http_actions(template):
        located, _ = locate(action, document)
        if located and located.operation:
            answers[action.name] = (str(located.operation.get("operationId")),
                                    located.operation["responses"]["200"]["schema"])

    def walk(schema: JsonObject, chain: list[str], where: str, read: str) -> JsonObject | None:
        for key in chain:
            read = f"{read}.{key}"
            reads.append(read)
            schema = checker.resolve(schema)
            if schema.get("type") == "array" and key.isdigit():
                schema = schema.get("items", {})
            elif key in schema.get("properties", {}):
                schema = schema["properties"][key]
            elif schema.get("additionalProperties"):  # a free-form object (a hunting row: its columns are the query's)
                extra = schema["additionalProperties"]
                schema = extra if isinstance(extra, dict) else {}
            else:
                problems.append(f"{where}: reads {key!r}, the 200 answer's schema has no such field (it has "
                                f"{sorted(schema.get('properties', {}))})")
                return None
        return checker.resolve(schema)

    for where, expression in pa.workflow_expressions(template):
        for name, (operation_id, schema) in answers.items():
            for chain in _action_reads(name, expression):
                walk(schema, chain, f"{where} ({name})", operation_id)
    # Item by item: Select / Query over an array of an answer (item()), For each over one (items('loop')).
    for loop_name, loop in pa.all_actions(template).items():
        if loop.get("type") not in ("Foreach", "Select", "Query"):
            continue
        source = loop.get("foreach") if loop["type"] == "Foreach" else loop.get("inputs", {}).get("from")
        if not isinstance(source, str):
            continue
        for name, (operation_id, schema) in answers.items():
            for to_array in _action_reads(name, source):
                array = walk(schema, to_array, f"{loop_name} ({name})", operation_id)
                if array is None or array.get("type") != "array":
                    continue
                if loop["type"] == "Foreach":
                    scope: Any = loop.get("actions", {})
                    item = f"items('{loop_name}')"
                else:
                    scope = {key: loop["inputs"].get(key) for key in ("select", "where")}
                    item = "item()"
                for where, text in pa.strings(scope, loop_name):
                    for chain in reads_of(text, item):
                        walk(array.get("items", {}), chain, f"{where} ({name} item)",
                             ".".join([operation_id, *to_array, "[]"]))
    return reads, problems


#: At least these reads (operationId.field, [] for each item of an array) are found and checked.
EXPECTED_READS = {
    "Enrich-Incident-DefenderFileAlerts": {f"{openapi.GET_FILE_RELATED_ALERTS}.value.[].{field}" for field in (
        "id", "title", "severity", "status", "computerDnsName", "machineId")},
    "Create-DefenderAlert-FromIncident": {f"{openapi.CREATE_ALERT_BY_REFERENCE}.{field}" for field in (
        "id", "severity", "status")},
    # Graph's shape: the rows of `results`, by the columns the query projects.
    "Hunt-And-Alert-DefenderFile": {f"{RUN_HUNTING_QUERY}.results", f"{RUN_HUNTING_QUERY}.results.[].DeviceId",
                                    *(f"{openapi.CREATE_ALERT_BY_REFERENCE}.{field}" for field in (
                                        "id", "severity", "status"))},
}


@pytest.mark.parametrize("path", pa.template_paths(), ids=lambda p: p.parent.name)
def test_fields_read_from_the_gateways_answers_are_documented(path: Any) -> None:
    reads, problems = answer_reads(pa.load(path), ENTRA_DOCUMENT)
    assert not problems, _show(problems)
    assert EXPECTED_READS[path.parent.name] <= set(reads), sorted(set(reads))


# --- the checker itself: samples, and mismatches it must report -----------------------------------------------------


def _create() -> Case:
    """The create playbook's create (the hunt playbook's create is checked by the same tests above)."""
    (case,) = [c for c in CASES
               if c.action.method == "POST" and c.action.playbook == "Create-DefenderAlert-FromIncident"]
    return case


def _lookup() -> Case:
    (case,) = [c for c in CASES if c.action.method == "GET"]
    return case


def test_the_create_body_samples_are_plausible_values() -> None:
    case = _create()
    schema = ENTRA_DOCUMENT["paths"][openapi.CREATE_ALERT_PATH]["post"]["parameters"][0]["schema"]
    samples, problems = Checker(ENTRA_DOCUMENT, case.template).samples(case.action.body, schema, "body")
    assert not problems, _show(problems)
    plain = samples[0]
    assert set(plain) == set(CREATE_FIELDS)
    assert (plain["eventTime"], plain["machineId"], plain["reportId"]) == (EVENT_TIME, DEVICE_ID, REPORT_ID)
    assert plain["severity"] in SEVERITIES and plain["title"] == TEXT
    # Every category a deployment may choose, the deployment's default recommended action, and the longest
    # title and description take() lets through.
    assert {s["category"] for s in samples} == set(CATEGORIES)
    default = case.template["parameters"]["RecommendedAction"]["defaultValue"]
    assert {s["recommendedAction"] for s in samples} == {default}
    assert max(len(s["title"]) for s in samples) == MAX_TEXT_LENGTH
    assert max(len(s["description"]) for s in samples) == MAX_TEXT_LENGTH


def test_expression_and_sample_helpers() -> None:
    assert parameter_reference("parameters('GatewayAudience')") == "GatewayAudience"
    assert parameter_reference("parameters('A')?['b']") is None
    assert take_bound("take(coalesce(a, 'x,)'), 4096)") == 4096
    assert take_bound("trim(take(a, 5))") is None
    assert classify("@{x}") == Value("interpolation", "x")
    assert classify("@x") == Value("typed", "x")
    assert classify("a-@{x}") == Value("template", "a-@{x}")
    assert classify("@@x") == Value("literal", "@x")
    assert classify("[parameters('A')]") == Value("arm", "parameters('A')")
    assert classify("[[x]") == Value("literal", "[x]")
    checker = Checker(ENTRA_DOCUMENT, _create().template)
    assert checker.plausible({"type": "string", "format": "date-time"}) == EVENT_TIME
    assert checker.errors("2024-05-01 12:34", {"type": "string", "format": "date-time"}), "formats are checked"
    assert checker.plausible({"$ref": "#/definitions/CreateAlertRequest"}).keys() == set(CREATE_FIELDS)


def _with_inputs(action: pa.HttpAction, **changes: Any) -> pa.HttpAction:
    raw = copy.deepcopy(action.raw)
    raw["inputs"].update(changes)
    return dataclasses.replace(
        action, raw=raw, uri=str(raw["inputs"].get("uri", "")), path=pa.gateway_path(str(raw["inputs"].get("uri", ""))),
        method=str(raw["inputs"].get("method", "")).upper(), headers=dict(raw["inputs"].get("headers") or {}),
        body=raw["inputs"].get("body") if isinstance(raw["inputs"].get("body"), dict) else None,
        authentication=dict(raw["inputs"].get("authentication") or {}))


def _create_body(**changes: Any) -> JsonObject:
    body = {**(_create().action.body or {}), **changes}
    return {key: value for key, value in body.items() if value is not None}


def _mutations() -> Iterator[tuple[str, Case, pa.HttpAction, str]]:
    create, lookup = _create(), _lookup()
    headers = dict(create.action.headers)
    yield "create-as-PUT", create, _with_inputs(create.action, method="PUT"), "PUT /api/alerts"
    yield "lookup-as-POST", lookup, _with_inputs(lookup.action, method="POST"), "POST /api/files/{fileHash}"
    yield ("misspelt-path", lookup, _with_inputs(lookup.action, uri=lookup.action.uri.replace("/alerts", "/alert")),
           "no path of the document")
    yield ("unencoded-path-segment", lookup, _with_inputs(lookup.action, uri=lookup.action.uri.replace(
        "encodeUriComponent(items('For_each_hash'))", "items('For_each_hash')")), "not URI-encoded")
    yield ("literal-path-segment-not-a-hash", lookup, _with_inputs(lookup.action, uri=(
        pa.GATEWAY_URL_EXPRESSION + "/api/files/md5-of-it/alerts")), "does not match")
    yield ("undeclared-body-property", create, _with_inputs(create.action, body=_create_body(incidentId="@{x}")),
           "body.incidentId: not a property")
    yield "missing-required-property", create, _with_inputs(create.action, body=_create_body(eventTime=None)), (
        "body.eventTime: required")
    yield "invalid-literal-severity", create, _with_inputs(create.action, body=_create_body(severity="Critical")), (
        "literal 'Critical'")
    yield "invalid-literal-machine-id", create, _with_inputs(create.action, body=_create_body(machineId="WIN-7F3K2")), (
        "does not match")
    yield ("integer-literal-report-id", create, _with_inputs(create.action, body=_create_body(reportId=20776)),
           "is not of type 'string'")
    yield ("untruncated-title", create, _with_inputs(create.action, body=_create_body(
        title="@{items('For_each_alert')?['properties']?['alertDisplayName']}")), "wrap it in take(..., 4096)")
    yield ("title-truncated-too-late", create, _with_inputs(create.action, body=_create_body(
        title="@{take(items('For_each_alert')?['properties']?['alertDisplayName'], 5000)}")),
           "is too long")
    yield ("undeclared-header", create, _with_inputs(create.action, headers={**headers, "X-Playbook": "1"}),
           "header X-Playbook: not a header parameter")
    yield ("content-type-not-consumed", create, _with_inputs(create.action, headers={
        **headers, "Content-Type": "text/plain"}), "not in the operation's consumes")
    yield ("body-without-content-type", create, _with_inputs(create.action, headers={
        k: v for k, v in headers.items() if k.lower() != "content-type"}), "without a Content-Type")
    yield ("accept-not-produced", lookup, _with_inputs(lookup.action, headers={"Accept": "text/html"}),
           "not in the operation's produces")
    yield ("no-authentication", lookup, _with_inputs(lookup.action, authentication={}), "satisfies none")
    yield ("no-audience", lookup, _with_inputs(lookup.action, authentication={"type": "ManagedServiceIdentity"}),
           "names no audience")
    yield ("lookup-with-a-body", lookup, _with_inputs(lookup.action, body={"fileHash": "x"}), "takes none")
    yield ("create-without-a-body", create, dataclasses.replace(create.action, body=None, raw={
        **create.action.raw, "inputs": {k: v for k, v in create.action.raw["inputs"].items() if k != "body"}}),
           "requires a body")


MUTATIONS = list(_mutations())


@pytest.mark.parametrize(("case", "mutated", "expected"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_the_checker_reports_a_mutated_action(case: Case, mutated: pa.HttpAction, expected: str) -> None:
    assert not check_action(case.action, case.template), "the unmutated action must pass"
    problems = check_action(mutated, case.template)
    assert any(expected in problem for problem in problems), _show(problems) or "no mismatch reported"


def test_the_checker_reports_deployment_values_outside_the_schema() -> None:
    case = _create()
    template = copy.deepcopy(case.template)
    template["parameters"]["AlertCategory"]["allowedValues"].append("NotACategory")
    assert any("NotACategory" in p for p in check_action(case.action, template))
    template = copy.deepcopy(case.template)
    del template["parameters"]["AlertCategory"]["allowedValues"]
    assert any("has no allowedValues" in p for p in check_action(case.action, template))
    template = copy.deepcopy(case.template)
    template["parameters"]["RecommendedAction"]["maxLength"] = MAX_TEXT_LENGTH + 1
    assert any("maxLength" in p for p in check_action(case.action, template))
    template = copy.deepcopy(case.template)
    del template["parameters"]["RecommendedAction"]["minLength"]
    assert any("minLength" in p for p in check_action(case.action, template))


def test_the_checker_reports_an_interpolated_string_for_a_non_string_property() -> None:
    case = _create()
    document = copy.deepcopy(ENTRA_DOCUMENT)
    report_id = document["definitions"]["CreateAlertRequest"]["properties"]["reportId"]
    report_id.clear()
    report_id.update({"type": "integer", "format": "int64"})
    problems = check_action(case.action, case.template, document)
    assert any("always sends a string, the schema wants integer" in p for p in problems), _show(problems)


def test_the_checker_reports_an_undocumented_answer_field() -> None:
    template = copy.deepcopy(_lookup().template)
    select = pa.all_actions(template)["Select_alert_rows"]
    select["inputs"]["select"]["Machine"] = "@item()?['deviceName']"
    _, problems = answer_reads(template, ENTRA_DOCUMENT)
    assert any("'deviceName'" in p for p in problems), _show(problems)
    template = copy.deepcopy(_create().template)
    pa.all_actions(template)["Append_to_array_variable_-_created"]["inputs"]["value"]["Link"] = (
        "@{body('Create_Defender_alert')?['alertUrl']}")
    assert any("'alertUrl'" in p for p in answer_reads(template, ENTRA_DOCUMENT)[1])
