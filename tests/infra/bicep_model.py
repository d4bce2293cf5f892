"""Read the Bicep templates in infra/ with pycep and answer questions about them.

main.bicep composes local modules (storage.bicep, monitoring.bicep, function-app.bicep, roles.bicep, ...):
:func:`module` reads the file behind one of its modules, :func:`module_params` what main passes it. A test
about a resource reads it in its module and checks that main passes the module what the resource relies on.

pycep turns a Bicep file into nested dicts: ``parameters``, ``variables``, ``resources``,
``modules``, ``outputs`` (and ``extensions``). A few things to know when reading its tree:

* a string literal and a symbol reference both come out as a plain ``str`` (``'x'`` and ``x`` are
  both ``"x"``), so the tests compare against the names they expect;
* a conditional resource or module has ``config == {"condition": ..., "config": {...}}`` and a loop
  adds ``loop_type``; :func:`body` unwraps both;
* function calls are ``{"function": {"type": name, "parameters": {...}}}`` and operators
  ``{"operator": {"type": name, "operands": {...}}}``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"
PARAMS_FILE = INFRA / "main.bicepparam"

Tree = dict[str, Any]


def bicep_files() -> list[Path]:
    """Every .bicep file under infra/, sorted."""
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def parse(path: Path) -> Tree:
    """The pycep tree of one Bicep file (cached: parsing takes a moment)."""
    return cast(Tree, BicepParser().parse(file_path=path))


def main() -> Tree:
    return parse(MAIN)


def module(symbol: str) -> Tree:
    """The tree of the file main.bicep deploys as module `symbol` (storage, monitoring, functionApp, roles, ...)."""
    return parse(INFRA / main()["modules"][symbol]["detail"]["path"])


def module_params(symbol: str) -> dict[str, Any]:
    """What main.bicep passes to module `symbol`, by parameter name (main's expressions, unresolved)."""
    return cast(dict[str, Any], body(main()["modules"][symbol])["params"])


def body(element: dict[str, Any]) -> dict[str, Any]:
    """The properties of a resource or module, through any condition or loop around them."""
    config = cast(dict[str, Any], element["config"])
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = cast(dict[str, Any], config["config"])
    return config


def condition(element: dict[str, Any]) -> Any:
    """The deployment condition of a resource or module (None when unconditional)."""
    return element["config"].get("condition")


def resources_of_type(tree: Tree, resource_type: str) -> dict[str, dict[str, Any]]:
    """The resources of one type, by symbolic name."""
    return {name: res for name, res in tree.get("resources", {}).items() if res["type"] == resource_type}


def the_resource(tree: Tree, resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of a type: its symbolic name and its body."""
    found = resources_of_type(tree, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    name, res = next(iter(found.items()))
    return name, body(res)


def decorators(element: dict[str, Any]) -> dict[str, Any]:
    """The decorators of a param, var, output or resource, by type."""
    return {deco["type"]: deco.get("argument") for deco in element.get("decorators", [])}


def walk(node: Any) -> Iterator[Any]:
    """Every node of a tree, depth first, the node itself included."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def resolve(node: Any, tree: Tree, seen: frozenset[str] = frozenset()) -> Any:
    """``node`` with every reference to a variable of ``tree`` replaced by the variable's value."""
    variables = tree.get("variables", {})
    if isinstance(node, str) and node in variables and node not in seen:
        return resolve(variables[node]["value"], tree, seen | {node})
    if isinstance(node, dict):
        return {key: resolve(value, tree, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, tree, seen) for value in node]
    return node


def unquote_keys(node: Any) -> Any:
    """``node`` with quoted object keys (``'azd-service-name'``, kept quoted by pycep) unquoted."""
    if isinstance(node, dict):
        return {key.strip("'") if isinstance(key, str) else key: unquote_keys(v) for key, v in node.items()}
    if isinstance(node, list):
        return [unquote_keys(value) for value in node]
    return node


def function_call(node: Any, name: str) -> dict[str, Any] | None:
    """The parameters of a call to function ``name`` if ``node`` is one, else None."""
    if isinstance(node, dict) and isinstance(node.get("function"), dict) and node["function"].get("type") == name:
        return cast(dict[str, Any], node["function"]["parameters"])
    return None


def operator(node: Any, name: str) -> dict[str, Any] | None:
    """The operands of operator ``name`` if ``node`` is one, else None."""
    if isinstance(node, dict) and isinstance(node.get("operator"), dict) and node["operator"].get("type") == name:
        return cast(dict[str, Any], node["operator"]["operands"])
    return None


def property_access(node: Any) -> tuple[Any, Any] | None:
    """``(object, property)`` if ``node`` is ``object.property``, else None."""
    operands = operator(node, "property_accessor")
    return None if operands is None else (operands["operand_1"], operands["operand_2"])


def module_output(node: Any) -> tuple[str, str] | None:
    """``(module, output)`` if ``node`` is ``module.outputs.output``, else None."""
    access = property_access(node)
    if access is None:
        return None
    rest = property_access(access[1])
    return (str(access[0]), str(rest[1])) if rest is not None and rest[0] == "outputs" else None


def app_settings(tree: Tree) -> list[tuple[str, Any, bool]]:
    """The app settings the site's `appsettings` config resource sets, as ``(name, value, unconditional)``,
    variables resolved.

    The properties are objects merged with ``union()``; ``unconditional`` is False for a setting that sits in a
    branch of a conditional expression (for example the ones only a user-assigned identity needs).
    """
    configs = [body(resource) for resource in resources_of_type(tree, "Microsoft.Web/sites/config").values()]
    (config,) = [config for config in configs if config.get("name") == "appsettings"]
    found: list[tuple[str, Any, bool]] = []

    def collect(node: Any, unconditional: bool) -> None:
        union = function_call(node, "union")
        if union is not None:
            for argument in union.values():
                collect(argument, unconditional)
            return
        conditional = operator(node, "conditional")
        if conditional is not None:
            collect(conditional["true_value"], False)
            collect(conditional["false_value"], False)
            return
        if isinstance(node, dict):
            found.extend((name, value, unconditional) for name, value in node.items())

    collect(resolve(config["properties"], tree), True)
    return found


_PARAM_LINE = re.compile(r"^param\s+([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)
_USING_LINE = re.compile(r"^using\s+'([^']+)'\s*$", re.MULTILINE)


def code_lines(path: Path) -> str:
    """A Bicep or bicepparam file without its // comment lines (block comments are not used)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("//"))


def bicepparam_using(path: Path) -> list[str]:
    """The targets of the ``using`` statements of a .bicepparam file."""
    return _USING_LINE.findall(code_lines(path))


def bicepparam_names(path: Path) -> list[str]:
    """The parameter names a .bicepparam file assigns, in order."""
    return _PARAM_LINE.findall(code_lines(path))
