"""The shape of `shared/`, read from the code's own imports: packages by capability in layers, each importing only
from the layers below it (or from itself), no import cycle, and `azure.functions` in the HTTP package alone.

docs/architecture.md draws the same layers; a new module or package must be placed here, or this test fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"

#: Lowest first. A unit (a package of shared/, or a top-level module) may import from its own layer's units only
#: when it is the same unit, and from any unit of a lower layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"shared.configuration", "shared.identifiers", "shared.telemetry"}),
    frozenset({"shared.tables"}),
    frozenset({"shared.ratelimit", "shared.history"}),
    frozenset({"shared.defender"}),
    frozenset({"shared.validation", "shared.catalogue"}),
    frozenset({"shared.answers"}),
    frozenset({"shared.lookups"}),
    frozenset({"shared.asynchronous"}),
    frozenset({"shared.health"}),
    frozenset({"shared.operator"}),
    frozenset({"shared.http"}),
    frozenset({"shared.tenancy"}),
    frozenset({"shared.settings"}),
    frozenset({"shared.runtime"}),
)
LAYER_OF = {unit: index for index, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports at any depth of its code (TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(path): path for path in sorted(SHARED.rglob("*.py"))}
GRAPH = {module: {name for name in imports_of(path) if name in MODULES and name != module}
         for module, path in MODULES.items()}


def test_every_unit_has_a_layer() -> None:
    assert sorted({unit_of(module) for module in MODULES} - set(LAYER_OF) - {"shared"}) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_lower_layers_or_itself(module: str) -> None:
    unit = unit_of(module)
    if unit == "shared":  # the package's own docstring: above every layer, so it may import nothing of shared/
        assert GRAPH[module] == set(), f"{module} imports {sorted(GRAPH[module])}"
        return
    upward = sorted(name for name in GRAPH[module]
                    if unit_of(name) != unit and LAYER_OF[unit_of(name)] >= LAYER_OF[unit])
    assert upward == [], f"{module} ({unit}, layer {LAYER_OF[unit]}) imports from its layer or above"


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import cycle: " + " -> ".join([*trail, module])
        state[module] = 1
        for name in sorted(GRAPH[module]):
            visit(name, [*trail, module])
        state[module] = 2

    for module in sorted(MODULES):
        visit(module, [])


def test_only_the_http_package_imports_azure_functions() -> None:
    users = sorted(module for module, path in MODULES.items()
                   if any(name == "azure.functions" or name.startswith("azure.functions.")
                          for name in imports_of(path)))
    assert users and all(unit_of(module) == "shared.http" for module in users), users


def test_the_queue_worker_imports_nothing_from_the_http_package() -> None:
    reached: set[str] = set()
    todo = ["shared.asynchronous.worker"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(GRAPH[module])
    assert sorted(module for module in reached if unit_of(module) == "shared.http") == []


def test_no_module_of_shared_is_over_400_lines() -> None:
    long = {module: n for module, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_docs_architecture_names_every_package_and_module() -> None:
    """docs/architecture.md's table of `shared/`: every package, top-level module and module file is named."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for module, path in MODULES.items():
        if module == "shared":
            continue
        unit = unit_of(module)
        unit_path = unit.replace(".", "/") + ("/" if (ROOT / unit.replace(".", "/")).is_dir() else ".py")
        if f"`{unit_path}`" not in text:
            missing.append(unit_path)
        elif path.name != "__init__.py" and unit != module and f"`{path.name}`" not in text:
            missing.append(str(path.relative_to(ROOT)))
    assert sorted(set(missing)) == []
