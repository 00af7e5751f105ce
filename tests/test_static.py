"""Static checks: mypy against the TensorRT type stubs (code no test can run here), and no
function-level import of a module its file already imports at the top.

tensorrt-stubs (the TensorRT 10.13 Python API) installs ``tensorrt/__init__.pyi`` without a
``py.typed`` marker, and a few of its generated signatures are not valid Python (a parameter
named ``in``, a required parameter after a defaulted one). The fixture copies the stubs into
a stub folder, repairs exactly those two things and points mypy at it, so a misspelled
TensorRT method or a wrong argument in our code fails this test.
"""

from __future__ import annotations

import ast
import importlib.util
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TENSORRT_MODULES = [
    "hardnet_export/runtime/tensorrt_backend.py",
    "hardnet_export/runtime/tensorrt_image.py",
    "hardnet_export/export/tensorrt.py",
]


def _split_top_level(params: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current] if current.strip() else parts


def _repair_signature(line: str) -> str:
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*(?:->.*)?:\s*)$", line)
    if not match:
        return line
    fixed, defaulted = [], False
    for param in (p.strip() for p in _split_top_level(match.group(2))):
        name = re.match(r"^\**(\w+)", param)
        if name and keyword.iskeyword(name.group(1)):
            param = param.replace(name.group(1), name.group(1) + "_", 1)
        if param.startswith("*"):
            defaulted = defaulted and param != "*"
        elif "=" in param:
            defaulted = True
        elif defaulted:
            param += " = ..."
        fixed.append(param)
    return match.group(1) + ", ".join(fixed) + match.group(3)


@pytest.fixture(scope="module")
def tensorrt_stubs() -> Path:
    spec = importlib.util.find_spec("tensorrt")
    locations = list(spec.submodule_search_locations or []) if spec else []
    stub = next(
        (Path(p) / "__init__.pyi" for p in locations if (Path(p) / "__init__.pyi").is_file()), None
    )
    if stub is None:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    site = stub.parent.parent
    # A fixed place under the (git-ignored) mypy cache keeps mypy's incremental cache valid.
    out = ROOT / ".mypy_cache" / "tensorrt-stubs-repaired"
    out.mkdir(parents=True, exist_ok=True)
    for package in ("tensorrt", "tensorrt_bindings"):
        for source in (site / package).glob("*.pyi"):
            lines = [_repair_signature(line) for line in source.read_text().splitlines()]
            # tensorrt_libs is the real wheel's library loader; the stubs do not ship it.
            lines = [line for line in lines if not line.startswith("import tensorrt_libs")]
            (out / package).mkdir(exist_ok=True)
            text = "\n".join(lines) + "\n"
            target = out / package / source.name
            if not target.is_file() or target.read_text() != text:
                target.write_text(text)
    (out / "mypy.ini").write_text(
        "[mypy]\nignore_missing_imports = True\n"
        "[mypy-tensorrt.*]\nignore_errors = True\n"
        "[mypy-tensorrt_bindings.*]\nignore_errors = True\n"
    )
    return out


def run_mypy(stubs: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(stubs)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(stubs / "mypy.ini"),
            "--follow-imports=silent",
            "--no-incremental",
            *files,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_tensorrt_code_type_checks_against_the_stubs(tensorrt_stubs: Path) -> None:
    # One mypy run for all modules: each run re-reads the 10k-line stubs and numpy's.
    result = run_mypy(tensorrt_stubs, *TENSORRT_MODULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_a_misspelled_tensorrt_call(tensorrt_stubs: Path, tmp_path: Path) -> None:
    # Guard against the check silently seeing TensorRT as Any.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tensorrt as trt\n\n\n"
        "def f(context: trt.IExecutionContext) -> None:\n"
        "    context.execute_async_v4(0)\n"
    )
    result = run_mypy(tensorrt_stubs, str(probe))
    assert result.returncode != 0 and "execute_async_v3" in result.stdout


PACKAGE = ROOT / "hardnet_export"
#: Function-level imports left to the files' own rework (issue 23, the precision record):
#: (file, module). Remove an entry with its import.
LEFT_TO_THEIR_OWNERS = {
    ("artifacts/metadata.py", "hardnet_export.artifacts.variants"),
    ("export/int8.py", "hardnet_export.calibration.dataset"),
}


def _imported_modules(node: ast.stmt) -> list[str]:
    """The modules an import statement loads: ``from hardnet_export import runtime`` loads the
    subpackage ``hardnet_export.runtime``, ``from numpy import ndarray`` loads ``numpy``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
        return []
    return [
        f"{node.module}.{alias.name}" if _is_module(f"{node.module}.{alias.name}") else node.module
        for alias in node.names
    ]


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module (``importlib.metadata``), not a name in one."""
    if dotted.startswith("hardnet_export."):
        parts = Path(*dotted.split("."))
        return (ROOT / parts).with_suffix(".py").is_file() or (ROOT / parts).is_dir()
    try:
        return importlib.util.find_spec(dotted) is not None
    except (ImportError, ValueError):  # the parent is no package, or is not installed
        return False


def redundant_function_imports(source: str) -> list[tuple[int, str]]:
    """Imports inside functions of modules that ``source`` already imports at module level
    (line, module). An import in a ``try`` body is exempt: it may load a submodule that can be
    missing, and the handler says what then."""
    tree = ast.parse(source)
    top: set[str] = set()
    for node in tree.body:
        top.update(_imported_modules(node))
    guarded = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Try)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded:
                found += [(node.lineno, m) for m in _imported_modules(node) if m in top]
    return sorted(set(found))


def test_the_redundant_import_check_finds_what_it_should() -> None:
    source = (
        "import os\nfrom pathlib import Path\nfrom hardnet_export import errors\n\n"
        "def f():\n    import os.path\n    import os\n    from pathlib import PurePath\n"
        "    from hardnet_export import runtime\n    from hardnet_export.errors import InputError\n"
        "    try:\n        from os import nothing\n    except ImportError:\n        pass\n"
    )
    assert redundant_function_imports(source) == [
        (7, "os"),
        (8, "pathlib"),
        (10, "hardnet_export.errors"),
    ]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_function_imports_what_its_module_already_imports(path: Path) -> None:
    # An import inside a function says "this is loaded late, on purpose"; when the module
    # already imports it at the top, that says something false and hides the real imports.
    name = str(path.relative_to(PACKAGE))
    found = [
        (line, module)
        for line, module in redundant_function_imports(path.read_text())
        if (name, module) not in LEFT_TO_THEIR_OWNERS
    ]
    assert not found, f"{name}: import these at the top of the module: {found}"
