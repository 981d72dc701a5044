"""The packages' import graph: both tiers over `contract`, and nothing else in common."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "http_srv": {"rpc_srv", "launcher", "bench", "tests"},
    "rpc_srv": {"http_srv", "launcher", "bench", "tests"},
    "contract": {"http_srv", "rpc_srv", "launcher", "bench", "tests"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level names of every module that `path` imports, lazily imported ones too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package: str) -> None:
    """http_srv and rpc_srv never import each other; contract imports neither."""
    found = {
        path.relative_to(ROOT).as_posix(): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {p: names for p, names in found.items() if names} == {}


def test_both_tiers_use_the_contract() -> None:
    """Each tier imports the shared package (the graph is not split by accident)."""
    for package in ("http_srv", "rpc_srv"):
        used = set().union(*(imported_packages(p) for p in (ROOT / package).rglob("*.py")))
        assert "contract" in used, package
