"""The TensorRT backend: sidecar checks on any machine; the engine itself on a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export._cuda import cuda_device_count
from hardnet_export.runtime.tensorrt_backend import (
    EngineMismatchError,
    check_engine_sidecar,
    rebuild_command,
    sidecar_path,
)

HERE = {"tensorrt_version": "10.13.0.35", "gpu_name": "NVIDIA L4", "compute_capability": "8.9"}


def write_engine(tmp_path: Path, **sidecar: object) -> Path:
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"not a real plan")
    if sidecar:
        sidecar_path(engine).write_text(json.dumps(sidecar))
    return engine


def test_sidecar_path() -> None:
    assert sidecar_path("a/model.fp16.engine") == Path("a/model.fp16.engine.json")


def test_matching_sidecar_passes(tmp_path: Path) -> None:
    engine = write_engine(
        tmp_path,
        tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA L4",
        compute_capability=[8, 9],
        precision="fp16",
    )
    assert check_engine_sidecar(engine, **HERE)["precision"] == "fp16"


def test_other_tensorrt_version_gives_rebuild_command(tmp_path: Path) -> None:
    engine = write_engine(
        tmp_path,
        tensorrt_version="11.4.0.6",
        gpu_name="NVIDIA L4",
        compute_capability="8.9",
        onnx="model.fp16.onnx",
    )
    with pytest.raises(EngineMismatchError, match="TensorRT 11.4.0.6") as info:
        check_engine_sidecar(engine, **HERE)
    assert f"hardnet-export trt model.fp16.onnx -o {engine} --rebuild" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_version_compatible_engine_crosses_minor_versions(tmp_path: Path) -> None:
    engine = write_engine(
        tmp_path, tensorrt_version="10.8.0.43", version_compatible=True, compute_capability="8.9"
    )
    check_engine_sidecar(engine, **HERE)
    engine = write_engine(tmp_path, tensorrt_version="11.0.0.1", version_compatible=True)
    with pytest.raises(EngineMismatchError, match="TensorRT 11.0.0.1"):
        check_engine_sidecar(engine, **HERE)


def test_other_gpu_gives_rebuild_command(tmp_path: Path) -> None:
    engine = write_engine(
        tmp_path, tensorrt_version="10.13.0.35", gpu_name="Orin", compute_capability="8.7"
    )
    with pytest.raises(EngineMismatchError, match="Orin.*8.7.*NVIDIA L4.*8.9.*--rebuild"):
        check_engine_sidecar(engine, **HERE)


def test_hardware_compatible_engine_runs_on_newer_gpus(tmp_path: Path) -> None:
    engine = write_engine(
        tmp_path,
        tensorrt_version="10.13.0.35",
        compute_capability="8.0",
        hardware_compatibility="ampere_plus",
    )
    check_engine_sidecar(engine, **HERE)


def test_same_capability_other_model_warns(tmp_path: Path) -> None:
    engine = write_engine(
        tmp_path, tensorrt_version="10.13.0.35", gpu_name="RTX 4090", compute_capability="8.9"
    )
    with pytest.warns(RuntimeWarning, match="RTX 4090"):
        check_engine_sidecar(engine, **HERE)


def test_no_sidecar_is_left_to_tensorrt(tmp_path: Path) -> None:
    assert check_engine_sidecar(write_engine(tmp_path), **HERE) == {}


def test_corrupt_sidecar(tmp_path: Path) -> None:
    engine = write_engine(tmp_path)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ValueError, match="model.fp16.engine.json"):
        check_engine_sidecar(engine, **HERE)
    sidecar_path(engine).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        check_engine_sidecar(engine, **HERE)


def test_rebuild_command_without_sidecar() -> None:
    assert rebuild_command("x.engine") == "hardnet-export trt MODEL.onnx -o x.engine --rebuild"


def test_sidecar_check_needs_no_tensorrt(tmp_path: Path) -> None:
    engine = write_engine(tmp_path, tensorrt_version="9.0")
    code = (
        "import sys\n"
        "from hardnet_export.runtime.tensorrt_backend import check_engine_sidecar\n"
        "try:\n"
        f"    check_engine_sidecar({str(engine)!r}, tensorrt_version='10.0', gpu_name='g',"
        " compute_capability='8.0')\n"
        "except ValueError as e:\n"
        "    print('tensorrt' in sys.modules, 'torch' in sys.modules, 'rebuild' in str(e))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False True"


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the no-GPU path")
def test_no_cuda_device_is_a_clear_error_before_tensorrt(tmp_path: Path) -> None:
    engine = write_engine(tmp_path, tensorrt_version="10.13.0.35")
    with pytest.raises(RuntimeError, match="needs TensorRT and a CUDA device"):
        runtime.load(engine)
    assert "tensorrt" not in sys.modules or not hasattr(sys.modules["tensorrt"], "Runtime")


# -- on a GPU with TensorRT ----------------------------------------------------------------


def _has_tensorrt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Builder")


@pytest.fixture(scope="module")
def engine(onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _has_tensorrt():
        pytest.skip("needs TensorRT")
    from hardnet_export.export.tensorrt import build_engine  # the exporter's builder

    path = tmp_path_factory.mktemp("engines") / "random.engine"
    build_engine(onnx_model, path, opt_batch=64, max_batch=64)
    return path


@pytest.mark.gpu
def test_engine_matches_onnxruntime(engine: Path, onnx_model: Path) -> None:
    trt = runtime.load(engine)
    ort = runtime.load(onnx_model, device="cpu")
    x = np.random.default_rng(0).integers(0, 256, (200, 32, 32), dtype=np.uint8)
    a, b = trt.describe(x), ort.describe(x)
    assert trt.device.startswith("cuda") and a.shape == (200, 128)
    assert float((a * b).sum(1).min()) >= 0.9999
    assert trt.describe(x[:0]).shape == (0, 128)
    # Exactly max_batch replays the CUDA graph; it must equal the direct path.
    full = x[: trt.max_batch]
    np.testing.assert_allclose(trt.describe(full)[:5], trt.describe(full[:5]), atol=1e-4)


@pytest.mark.gpu
def test_engine_zero_copy_torch_input(engine: Path) -> None:
    torch = pytest.importorskip("torch")
    trt = runtime.load(engine)
    x = torch.randint(0, 256, (150, 32, 32), dtype=torch.uint8, device="cuda")
    out = trt.describe(x)
    assert out.device == x.device and out.shape == (150, 128)
    np.testing.assert_allclose(out.cpu().numpy(), trt.describe(x.cpu().numpy()), atol=1e-4)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out2 = trt.describe(x, stream=stream)
    stream.synchronize()
    np.testing.assert_allclose(out2.cpu().numpy(), out.cpu().numpy(), atol=1e-5)


@pytest.mark.gpu
def test_engine_cuda_array_interface_input(engine: Path) -> None:
    torch = pytest.importorskip("torch")
    trt = runtime.load(engine)
    x = torch.randint(0, 256, (70, 32, 32), dtype=torch.uint8, device="cuda")

    class DeviceArray:  # a minimal __cuda_array_interface__ producer, like CuPy or Numba
        __cuda_array_interface__ = x.__cuda_array_interface__

    out = trt.describe(DeviceArray())
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, trt.describe(x.cpu().numpy()), atol=1e-4)


@pytest.mark.gpu
def test_torch_cuda_backend_options(checkpoint: Path) -> None:
    torch = pytest.importorskip("torch")
    ref = runtime.load(checkpoint, device="cpu")
    x = np.random.default_rng(0).integers(0, 256, (64, 32, 32), dtype=np.uint8)
    want = ref.describe(x)
    for options in ({}, {"cuda_graph": True}, {"fp16": True, "channels_last": True}):
        d = runtime.load(checkpoint, device="cuda", max_batch=32, **options)
        got = d.describe(x)
        assert float((got * want).sum(1).min()) >= (0.999 if options.get("fp16") else 0.9999)
        out = d.describe(torch.from_numpy(x).cuda())
        assert out.device.type == "cuda"
