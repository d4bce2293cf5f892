"""What `func azure functionapp publish` / azd deploy (the files .funcignore does not exclude) holds: the app and
nothing only tests use. Every module the app imports deploys with it; every top-level name, and every method, that
a deployed module of shared/ defines is used by the deployed code itself (a helper only tests use lives in
tests/support/ or localdev/, and a store only tests use is kept out by .funcignore)."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = [line.strip().strip("/") for line in (ROOT / ".funcignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def ignored(path: PurePosixPath) -> bool:
    """As .funcignore (gitignore's syntax, as far as this file uses it) reads: a pattern without a slash names a file
    or folder anywhere; one with a slash, a path from the root."""
    assert not any(pattern.startswith("!") for pattern in PATTERNS), "negation: read .funcignore with a real parser"
    return any(fnmatch.fnmatchcase(part, pattern) for pattern in PATTERNS if "/" not in pattern
               for part in path.parts) or any(fnmatch.fnmatchcase(str(path), pattern) for pattern in PATTERNS)


def deployed_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, folders, files in os.walk(ROOT):  # links (.venv, node_modules) are not followed
        here = PurePosixPath(Path(folder).relative_to(ROOT).as_posix())
        folders[:] = [name for name in folders if not ignored(here / name)]
        for name in files:
            path = here / name
            if name.endswith(".py") and not ignored(path):
                parts = path.with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ROOT / path
    return found


DEPLOYED = deployed_modules()
OURS = {module.split(".")[0] for module in DEPLOYED}


def test_the_app_deploys_and_the_test_only_stores_do_not() -> None:
    assert {"function_app", "shared.runtime", "shared.ratelimit.table_store"} <= set(DEPLOYED)
    assert not {"shared.ratelimit.memory_store", "shared.asynchronous.operations_memory",
                "shared.asynchronous.queues_memory"} & set(DEPLOYED)
    assert not any(module.split(".")[0] in ("tests", "localdev", "bench", "scripts") for module in DEPLOYED)


def test_every_module_the_app_imports_deploys_with_it() -> None:
    """At any depth of the code (a lazy import too): a module kept out must be one the app never imports."""
    missing = []
    for module, path in DEPLOYED.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                     if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            wanted = [name for name in names if name.split(".")[0] in OURS]
            if wanted and not any(name in DEPLOYED for name in wanted):
                missing.append(f"{module} imports {wanted[0]}")
    assert missing == []


def test_nothing_deployed_is_there_for_tests_alone() -> None:
    """A name defined in a deployed module of shared/ and written nowhere else in the deployed code is there for
    tests alone (or for nobody)."""
    texts = {module: path.read_text() for module, path in DEPLOYED.items()}
    counts: dict[str, int] = {}
    for text in texts.values():
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text):
            counts[word] = counts.get(word, 0) + 1
    unused = []
    for module, text in texts.items():
        if not module.startswith("shared."):
            continue
        for node in ast.parse(text).body:
            defined = ([node.name] if isinstance(node, ast.FunctionDef | ast.ClassDef) else
                       [target.id for target in node.targets if isinstance(target, ast.Name)]
                       if isinstance(node, ast.Assign) else
                       [node.target.id] if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                       else [])
            if isinstance(node, ast.ClassDef):
                defined += [member.name for member in node.body
                            if isinstance(member, ast.FunctionDef) and not member.name.startswith("__")]
            unused += [f"{module}.{name}" for name in defined if counts.get(name, 0) <= 1 and name != "__all__"]
    assert unused == []
