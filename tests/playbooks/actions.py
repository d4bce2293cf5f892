"""Read the Sentinel playbook templates in playbooks/ and answer questions about them.

Each ``playbooks/<name>/azuredeploy.json`` is an ARM template holding one ``Microsoft.Logic/workflows``
resource whose ``properties.definition`` is a Logic Apps workflow. Two expression languages meet there:

* ARM template expressions: a whole string ``[...]`` (``[[`` escapes a literal bracket), evaluated at
  deployment (``[parameters('GatewayAudience')]``);
* workflow expressions: a whole string ``@...`` (``@@`` escapes a literal at sign) or interpolations
  ``@{...}`` inside a string, evaluated at run time (``@{parameters('GatewayUrl')}/api/...``).

Both quote string literals with single quotes and escape a quote by doubling it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"

Template = dict[str, Any]

#: How a playbook's HTTP action starts the URI of a gateway call: the workflow parameter GatewayUrl.
GATEWAY_URL_EXPRESSION = "@{parameters('GatewayUrl')}"
#: The API root of a gateway call: the workflow parameter GatewayApi ("/api", or "/api/tenants/<CustomerTenant>").
GATEWAY_API_EXPRESSION = "@{parameters('GatewayApi')}"
#: What a dynamic segment of a gateway path (a workflow interpolation) becomes in HttpAction.path.
DYNAMIC_SEGMENT = "{...}"
#: Action types that hold other actions.
CONTAINER_TYPES = {"Foreach", "If", "Scope", "Until", "Switch"}


def template_paths() -> list[Path]:
    """Every playbook template (playbooks/*/azuredeploy.json), sorted."""
    return sorted(PLAYBOOKS.glob("*/azuredeploy.json"))


def load(path: Path) -> Template:
    return cast(Template, json.loads(path.read_text(encoding="utf-8")))


def resources_of_type(template: Template, resource_type: str) -> list[dict[str, Any]]:
    return [res for res in template.get("resources", []) if res.get("type") == resource_type]


def workflow(template: Template) -> dict[str, Any]:
    """The one Logic Apps workflow resource of a playbook template."""
    found = resources_of_type(template, "Microsoft.Logic/workflows")
    assert len(found) == 1, f"expected one Microsoft.Logic/workflows resource, found {len(found)}"
    return found[0]


def definition(template: Template) -> dict[str, Any]:
    """The workflow definition (triggers, actions, parameters) of a playbook template."""
    return cast(dict[str, Any], workflow(template)["properties"]["definition"])


def playbook_name(template: Template) -> str:
    """The playbook's template name (tag hidden-SentinelTemplateName)."""
    return str(workflow(template).get("tags", {}).get("hidden-SentinelTemplateName", ""))


def child_action_sets(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The action dictionaries nested in one action: Foreach/Scope/Until/If actions, If else, Switch cases."""
    if isinstance(action.get("actions"), dict):
        yield action["actions"]
    otherwise = action.get("else")
    if isinstance(otherwise, dict) and isinstance(otherwise.get("actions"), dict):
        yield otherwise["actions"]
    for case in (action.get("cases") or {}).values():
        if isinstance(case, dict) and isinstance(case.get("actions"), dict):
            yield case["actions"]
    default = action.get("default")
    if isinstance(default, dict) and isinstance(default.get("actions"), dict):
        yield default["actions"]


def walk_actions(actions: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every action, depth first, as (name, action), including those inside Foreach, If, Scope, Until, Switch."""
    for name, action in actions.items():
        yield name, action
        for nested in child_action_sets(action):
            yield from walk_actions(nested)


def all_actions(template: Template) -> dict[str, dict[str, Any]]:
    """Every action of a playbook by name (names are unique in a workflow)."""
    found: dict[str, dict[str, Any]] = {}
    for name, action in walk_actions(definition(template).get("actions", {})):
        assert name not in found, f"action name {name!r} is used twice"
        found[name] = action
    return found


# ---------------------------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------------------------


def interpolations(text: str) -> list[str]:
    """The workflow expressions ``@{...}`` inside a string (their inner text); raises ValueError if one is open."""
    found: list[str] = []
    i = 0
    while True:
        start = text.find("@{", i)
        if start < 0:
            return found
        if start > 0 and text[start - 1] == "@":  # @@{ is a literal
            i = start + 2
            continue
        depth, j, quoted = 1, start + 2, False
        while j < len(text) and depth:
            char = text[j]
            if quoted:
                if char == "'":
                    if j + 1 < len(text) and text[j + 1] == "'":
                        j += 1
                    else:
                        quoted = False
            elif char == "'":
                quoted = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            j += 1
        if depth:
            raise ValueError(f"unclosed @{{ in {text!r}")
        found.append(text[start + 2:j - 1])
        i = j


class UnterminatedLiteralError(ValueError):
    """A workflow expression's string literal is not closed."""


def outside_literals(expression: str) -> Iterator[tuple[int, str]]:
    """Each character of a workflow expression outside its string literals (`'...'`, `''` a quote inside one),
    with its index; the quotes themselves are left out. Raises UnterminatedLiteralError at the end of an open one."""
    quoted = False
    i = 0
    while i < len(expression):
        char = expression[i]
        if quoted:
            if char == "'":
                if expression[i + 1:i + 2] == "'":
                    i += 1
                else:
                    quoted = False
        elif char == "'":
            quoted = True
        else:
            yield i, char
        i += 1
    if quoted:
        raise UnterminatedLiteralError(expression)


def balance_problem(expression: str) -> str | None:
    """Why an expression's brackets do not balance (outside string literals), or None when they do."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    try:
        for i, char in outside_literals(expression):
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                if not stack or stack[-1] != pairs[char]:
                    return f"unexpected {char!r} at {i}"
                stack.pop()
    except UnterminatedLiteralError:
        return "unterminated string literal"
    if stack:
        return f"unclosed {''.join(stack)!r}"
    return None


def strings(node: Any, where: str = "$") -> Iterator[tuple[str, str]]:
    """Every string of a JSON tree (object keys included) with its location."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield f"{where}.{key}(key)", str(key)
            yield from strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{where}[{index}]")


def is_arm_expression(text: str) -> bool:
    return text.startswith("[") and not text.startswith("[[")


def arm_expressions(template: Template) -> Iterator[tuple[str, str]]:
    """Every ARM template expression (the text inside its outer brackets) with its location.

    Raises AssertionError for a string that opens an expression and does not close it (ARM would
    silently take it as a literal).
    """
    for where, text in strings(template):
        if is_arm_expression(text):
            assert text.endswith("]"), f"{where}: starts like an ARM expression but does not end with ]: {text!r}"
            yield where, text[1:-1]


def workflow_expressions(template: Template) -> Iterator[tuple[str, str]]:
    """Every workflow expression of the definition (whole ``@...`` strings and ``@{...}`` interpolations)."""
    for where, text in strings(definition(template), "$.definition"):
        if is_arm_expression(text) or "@" not in text:
            continue
        if text.startswith("@") and not text.startswith(("@@", "@{")):
            yield where, text[1:]
        else:
            for inner in interpolations(text):
                yield where, inner


_CALL = r"\b{function}\(\s*'((?:[^']|'')*)'\s*\)"


def called_with(expression: str, function: str) -> list[str]:
    """The literal first arguments of every call to ``function`` in an expression: parameters('X') gives X."""
    return [m.replace("''", "'") for m in re.findall(_CALL.format(function=function), expression)]


# ---------------------------------------------------------------------------------------------------------------
# HTTP actions
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpAction:
    """One HTTP action of a playbook."""

    #: The playbook's template name (tag hidden-SentinelTemplateName).
    playbook: str
    #: The action's name in the workflow.
    name: str
    method: str
    #: The URI as written (a workflow expression).
    uri: str
    #: The path after the gateway URL, each interpolation as {...} (``/api/files/{...}/alerts``); None when
    #: the URI does not start with the gateway URL.
    path: str | None
    headers: dict[str, str]
    body: dict[str, Any] | None
    authentication: dict[str, Any]
    #: The whole action (runAfter, retry policy, limits, operation options).
    raw: dict[str, Any]

    @property
    def calls_gateway(self) -> bool:
        return self.path is not None


def gateway_path(uri: str, api: str = "/api") -> str | None:
    """The path of a gateway call's URI with its dynamic segments as {...}, or None if it is not one. The workflow
    parameter GatewayApi is `api`: "/api" (the home tenant, the default) or "/api/tenants/<tenant>"."""
    if not uri.startswith(GATEWAY_URL_EXPRESSION):
        return None
    rest = uri[len(GATEWAY_URL_EXPRESSION):].replace(GATEWAY_API_EXPRESSION, api)
    for inner in interpolations(rest):
        rest = rest.replace("@{" + inner + "}", DYNAMIC_SEGMENT, 1)
    return rest


def http_actions(template: dict[str, Any]) -> list[HttpAction]:
    """Every action of type Http in a playbook template, however deeply nested, in definition order."""
    playbook = playbook_name(template)
    found: list[HttpAction] = []
    for name, action in walk_actions(definition(template).get("actions", {})):
        if str(action.get("type", "")).lower() != "http":
            continue
        inputs = cast(dict[str, Any], action.get("inputs", {}))
        uri = str(inputs.get("uri", ""))
        body = inputs.get("body")
        found.append(HttpAction(
            playbook=playbook,
            name=name,
            method=str(inputs.get("method", "")).upper(),
            uri=uri,
            path=gateway_path(uri),
            headers={str(k): str(v) for k, v in (inputs.get("headers") or {}).items()},
            body=cast(dict[str, Any], body) if isinstance(body, dict) else None,
            authentication=cast(dict[str, Any], inputs.get("authentication") or {}),
            raw=action,
        ))
    return found
