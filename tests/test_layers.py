"""Imports point one way: down toward the torch-free floor, counting imports inside functions.

Each top-level module or package of ``hardnet_export`` has a rank; a module may import its
own unit and units of lower rank only, so no two stages can import each other (no cycle,
however deep inside a function the import sits). The runtime, which robots install alone,
may import only the floor and the model.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hardnet_export

ROOT = Path(hardnet_export.__file__).parent
RANKS = {
    "errors": 0,
    "_signals": 1,
    **dict.fromkeys(("_io", "_progress", "host", "shipped", "_cuda", "validate"), 2),
    **dict.fromkeys(("artifacts", "geometry", "imagefile"), 3),
    "model": 4,
    "data": 5,
    "runtime": 6,
    "applications": 7,
    "evaluation": 8,
    **dict.fromkeys(("calibration", "train"), 9),
    "export": 10,
    "benchmark": 11,
    **dict.fromkeys(("check", "demo"), 12),
    "tune": 13,
    "cli": 14,
    "__main__": 15,
}
FLOOR_RANK = 3
RUNTIME_MAY_IMPORT = {unit for unit, rank in RANKS.items() if rank <= FLOOR_RANK} | {"model"}


def unit_of(module: str) -> str:
    """``hardnet_export.export.int8`` -> ``export``; the package itself -> ``errors``-level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``hardnet_export`` module imported anywhere in ``path`` (line, module)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from hardnet_export import _io` imports the unit _io, not the package root.
            found += [
                (node.lineno, f"{module}.{a.name}")
                for a in node.names
                if module == "hardnet_export"
                and ((ROOT / f"{a.name}.py").is_file() or (ROOT / a.name).is_dir())
            ]
    return [
        (line, m) for line, m in found if m == "hardnet_export" or m.startswith("hardnet_export.")
    ]


MODULES = sorted(ROOT.rglob("*.py"))


def test_every_unit_has_a_rank() -> None:
    units = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in MODULES} - {"__init__"}
    assert units <= set(RANKS), f"give these a rank: {sorted(units - set(RANKS))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    own = path.relative_to(ROOT).parts[0].removesuffix(".py")
    if own == "__init__":
        return  # the package's __init__ loads torch-backed names lazily, by name
    for line, module in imports_of(path):
        target = unit_of(module)
        if target in ("", own):
            continue  # the package root (its __version__) or the module's own unit
        assert RANKS[target] < RANKS[own], (
            f"{path.relative_to(ROOT)}:{line} imports {module}: {own} (rank {RANKS[own]}) may "
            f"not import {target} (rank {RANKS[target]})"
        )
        if own == "runtime":
            assert target in RUNTIME_MAY_IMPORT, (
                f"{path.relative_to(ROOT)}:{line}: the runtime may import only the floor and "
                f"the model, not {module}"
            )


def test_floor_and_runtime_import_torch_lazily() -> None:
    # At module level the floor and the runtime import no torch: the runtime loads on a
    # robot without it (a function may import torch when it is handed a torch tensor).
    for path in MODULES:
        own = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if RANKS.get(own, 99) > FLOOR_RANK and own != "runtime":
            continue
        for node in ast.parse(path.read_text()).body:
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import) else
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            assert not any(n == "torch" or n.startswith("torch.") for n in names), (
                f"{path.relative_to(ROOT)}:{node.lineno} imports torch at module level"
            )


def module_name(path: Path) -> str:
    """``hardnet_export/export/onnx.py`` -> ``hardnet_export.export.onnx`` (a package's
    ``__init__.py`` -> the package)."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def executed_imports(path: Path) -> set[str]:
    """The ``hardnet_export`` modules ``path`` imports when it runs, counting imports inside
    functions (they run on the first call) but not those under ``if TYPE_CHECKING:`` (they
    never run)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    modules = {module_name(p) for p in MODULES}
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        # `from hardnet_export.export import onnx` imports the module onnx too.
        found.update(module for _, module in imports_of_node(node, path))
    return {m for m in found if m in modules} - {module_name(path)}


def imports_of_node(node: ast.Import | ast.ImportFrom, path: Path) -> list[tuple[int, str]]:
    """The modules one import statement names: the module, and for ``from X import Y`` also
    ``X.Y`` (which is a module when Y is one)."""
    if isinstance(node, ast.Import):
        return [(node.lineno, a.name) for a in node.names]
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join([*base, node.module] if node.module else base)
    else:
        module = node.module or ""
    return [(node.lineno, module), *((node.lineno, f"{module}.{a.name}") for a in node.names)]


#: Import cycles inside a package that are known and owned elsewhere, each named by its
#: modules (none now: the runtime's registry <-> OpenVINO backend cycle went with the Backend
#: records); the test fails on any other cycle, and on one of these once it is gone (then
#: strike it here).
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


def import_cycles() -> set[frozenset[str]]:
    """Every set of two or more modules of one package (the same folder) that import each
    other, directly or around a loop (strongly connected components of the import graph)."""
    folder = {module_name(p): p.parent for p in MODULES}
    graph = {
        module_name(p): {m for m in executed_imports(p) if folder[m] == p.parent} for p in MODULES
    }
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: set[frozenset[str]] = set()

    def visit(module: str) -> None:  # Tarjan's algorithm; packages are shallow
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in graph[module]:
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.add(frozenset(component))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return cycles


def test_no_import_cycles_inside_a_package() -> None:
    cycles = import_cycles()
    new = [sorted(c) for c in cycles - KNOWN_CYCLES]
    assert not new, (
        f"modules of one package import each other (counting imports in functions): {new}"
    )
    gone = [sorted(c) for c in KNOWN_CYCLES - cycles]
    assert not gone, f"these cycles are gone: strike them from KNOWN_CYCLES: {gone}"
