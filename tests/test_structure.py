"""The package's structure: imports point one way (no module imports one that imports it back) and modules stay small."""

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "snn_lightning"
MAX_LINES = 420  # "about 400": a module longer than this does more than one job


def _module_name(path: Path) -> str:
    """Return the dotted name of the module in ``path`` (``snn_lightning/data/__init__.py`` → ``snn_lightning.data``)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _known(name: str) -> str:
    """Return the innermost module of the package that ``name`` (a module or a name in one) lies in."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imported_modules(name: str) -> set[str]:
    """Return the package's modules that module ``name`` imports, at any depth of its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {_known(alias.name) for alias in node.names if alias.name.startswith("snn_lightning")}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(part for part in (base, node.module) if part)
            if source.startswith("snn_lightning"):
                imported |= {_known(f"{source}.{alias.name}") for alias in node.names}
    return imported - {name}


def import_cycles() -> list[list[str]]:
    """Return every group of modules that import each other in a circle (Tarjan's strongly connected components)."""
    graph = {name: imported_modules(name) for name in MODULES}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(name: str) -> None:
        order[name] = low[name] = len(order)
        stack.append(name)
        for other in graph[name]:
            if other not in order:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], order[other])
        if low[name] == order[name]:
            group = []
            while not group or group[-1] != name:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in graph:
        if name not in order:
            visit(name)
    return cycles


def test_the_cycle_finder_sees_imports():
    assert "snn_lightning.neurons.dynamics" in imported_modules("snn_lightning.neurons.lif")
    assert "snn_lightning.data.digits" in imported_modules("snn_lightning.data.static_datasets")  # relative import


def test_no_module_imports_one_that_imports_it_back():
    assert import_cycles() == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by job (at most {MAX_LINES})"
