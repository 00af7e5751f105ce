from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hardnet_export import runtime
from hardnet_export.runtime.registry import BACKENDS, backend_for, get_backend


def test_suffix_picks_backend() -> None:
    assert backend_for("a.pth").name == "torch"
    assert backend_for("a.PT").name == "torch"
    assert backend_for("a.onnx").name == "onnxruntime"
    assert backend_for("a.engine").name == "tensorrt"
    assert backend_for("a.plan").name == "tensorrt"
    assert backend_for("a.xml").name == "openvino"
    assert {b.name for b in BACKENDS} == {"torch", "onnxruntime", "openvino", "tensorrt"}


def test_every_backend_module_imports_without_its_library() -> None:
    # Registry entries resolve to classes; importing a backend module must not need its library.
    for backend in BACKENDS:
        cls = backend.describer_class()
        assert cls.backend == backend.name


def test_unknown_suffix_and_backend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no backend reads"):
        runtime.load(tmp_path / "model.bin")
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("tflite")
    with pytest.raises(ValueError, match="reads"):
        runtime.load(tmp_path / "model.onnx", backend="torch")


@pytest.mark.parametrize("name", ["model.pth", "model.onnx", "model.engine"])
def test_missing_artifact(tmp_path: Path, name: str) -> None:
    with pytest.raises(FileNotFoundError, match=name):
        runtime.load(tmp_path / name)


def test_tensorrt_path_none_needs_an_artifact() -> None:
    with pytest.raises(ValueError, match="needs an artifact"):
        runtime.load(backend="tensorrt")


def test_onnx_inference_does_not_import_torch(onnx_model: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from hardnet_export import runtime\n"
        f"d = runtime.load({str(onnx_model)!r})\n"
        "out = d.describe(np.zeros((3, 32, 32), np.uint8))\n"
        "print(out.shape, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 128) False"
