"""The package's shape: layers that import only downwards, no import circles, small modules.

Reads every module's imports (module level and inside functions) with ``ast``; nothing is imported.
The layer order is the one resnet/__init__.py describes.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tests.support import REPO_ROOT

PACKAGE = REPO_ROOT / "resnet"
# Bottom to top; "" is the top: resnet/cli.py, resnet/cost.py, resnet/__main__.py.
LAYERS = ["paper", "config", "models", "runs", "data", "tracking", "engine", "report", ""]
MAX_MODULE_LINES = 420  # "a module that passes about 400 lines is asking to be split" (STYLE.md)
MAX_FUNCTION_LINES = 65


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports, anywhere in its file."""
    tree = ast.parse(MODULES[module].read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        found.update(name for name in names if name == "resnet" or name.startswith("resnet."))
    found.discard(module)
    return {name for name in found if name in MODULES}


GRAPH = {module: imports_of(module) for module in MODULES}


def test_the_layers_are_the_packages():
    packages = sorted({layer_of(m) for m in MODULES} - {""})
    assert packages == sorted(set(LAYERS) - {""})
    top = sorted(m for m in MODULES if layer_of(m) == "")
    assert top == ["resnet", "resnet.__main__", "resnet.cli", "resnet.cost"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    mine = LAYERS.index(layer_of(module))
    upward = sorted(target for target in GRAPH[module] if LAYERS.index(layer_of(target)) > mine)
    assert upward == [], f"{module} (layer {layer_of(module) or 'top'}) imports a layer above it: {upward}"


def test_no_import_circles():
    """No module reaches itself through the imports (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_check_sees_an_upward_import_and_a_circle():
    """The checks above on a made-up graph: they would fail on either fault."""
    assert LAYERS.index(layer_of("resnet.runs.files")) < LAYERS.index(layer_of("resnet.engine.distributed"))
    assert LAYERS.index(layer_of("resnet.tracking.run")) < LAYERS.index(layer_of("resnet.report.tables"))
    assert "resnet.runs.records" in GRAPH["resnet.engine.loop"]  # function-level and module-level imports seen
    assert "resnet.engine.tasks" in GRAPH["resnet.engine.loop"]


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for module, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((module, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append((f"{module}.{node.name}", length))
    assert long_modules == [] and long_functions == []
