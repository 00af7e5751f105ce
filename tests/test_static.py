"""Static checks of the code no test can run here: mypy against the TensorRT type stubs.

tensorrt-stubs (the TensorRT 10.13 Python API) installs ``tensorrt/__init__.pyi`` without a
``py.typed`` marker, and a few of its generated signatures are not valid Python (a parameter
named ``in``, a required parameter after a defaulted one). The fixture copies the stubs into
a stub folder, repairs exactly those two things and points mypy at it, so a misspelled
TensorRT method or a wrong argument in our code fails this test.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
