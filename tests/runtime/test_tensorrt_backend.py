"""The TensorRT backend: sidecar checks on any machine; the engine itself on a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export._cuda import cuda_device_count

# The sidecar itself (what the builder writes, the runtime accepts) is tested on every machine
# in tests/artifacts/test_sidecar.py; here: the backend's own checks before TensorRT.


def test_loading_the_backend_imports_neither_tensorrt_nor_torch() -> None:
    code = (
        "import sys\n"
        "import hardnet_export.runtime.tensorrt_backend\n"
        "from hardnet_export.artifacts.sidecar import EngineMismatchError\n"
        "print('tensorrt' in sys.modules, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the no-GPU path")
def test_no_cuda_device_is_a_clear_error_before_tensorrt(tmp_path: Path) -> None:
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"not a real plan")
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
