"""The README's table of the papers' equations points at code that exists: every ``file:symbol`` is defined there."""

import ast
import re

import pytest
from conftest import REPO

SECTION = "## The papers' equations in the code"
REFERENCE = re.compile(r"`([\w/]+\.py):(\w+)`")


def equation_references() -> list[tuple[str, str]]:
    """Return the ``(file, symbol)`` pairs of the README's equation table, in order."""
    readme = (REPO / "README.md").read_text()
    assert SECTION in readme, f"README.md has no section {SECTION!r}"
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| equation")]
    return [reference for row in rows for reference in REFERENCE.findall(row)]


def top_level_names(path) -> set[str]:
    """Return the classes, functions and assigned names defined at the top level of the module at ``path``."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_the_table_names_every_equation_of_the_papers():
    symbols = {symbol for _, symbol in equation_references()}
    assert {"lif_multistep", "AdaptiveLIF", "per_step_ce", "per_step_kl", "per_step_entropy"} <= symbols
    assert {"tser_terms", "classical_kd_terms", "GlobalContext", "StepAttention", "TimeStepDropout"} <= symbols
    assert "TemporalPositionEncoding" in symbols


@pytest.mark.parametrize("file, symbol", equation_references(), ids=lambda value: value)
def test_every_file_symbol_of_the_table_exists(file, symbol):
    path = REPO / file
    assert path.is_file(), f"README's equation table names {file}, which does not exist"
    assert symbol in top_level_names(path), f"README's equation table names {file}:{symbol}, not defined there"
