"""Imports run one way: each package of `argus` imports only from the layers below its own.

The layers are the picture in docs/architecture.md; this test fails the day a package
imports against them (two packages of one layer, such as serving and training, may not
import each other either). Ray itself is imported by `argus.cluster` alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "argus"
# Lowest first. A package imports only from layers strictly below its own.
LAYERS: list[set[str]] = [
    {"text"},
    {"errors", "ids", "quotas", "yamlspec", "auth"},
    {"cluster", "storage"},
    {"config", "demo"},
    {"store"},
    {"serving", "training", "views"},
    {"accounts", "keys", "usage"},
    {"api"},
    {"ui"},
    {"web"},
    {"runtime"},
    {"cli"},
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found.update(names)
    return found


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_every_package_has_a_layer() -> None:
    packages = {package_of(p) for p in modules()} - {"__init__"}
    assert packages <= set(RANK), f"put {sorted(packages - set(RANK))} in LAYERS"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way(path: Path) -> None:
    own = package_of(path)
    if own == "__init__":
        return
    wrong = []
    for name in imports(path):
        parts = name.split(".")
        if parts[0] != "argus" or len(parts) < 2 or parts[1] == own:
            continue
        if RANK[parts[1]] >= RANK[own]:
            wrong.append(name)
    assert not wrong, f"{own} (layer {RANK[own]}) imports {wrong}, which is not below it"


def test_only_the_cluster_package_imports_ray() -> None:
    allowed = {"cluster"}
    for path in modules():
        ray = {n for n in imports(path) if n == "ray" or n.startswith("ray.")}
        assert not ray or package_of(path) in allowed, f"{path.relative_to(SRC)} imports {ray}"
