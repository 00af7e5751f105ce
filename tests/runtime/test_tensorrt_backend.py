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


@pytest.mark.slow
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
    stream.wait_stream(torch.cuda.current_stream())  # x was made on the current stream
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


# -- each defect's sequence, on a GPU ----------------------------------------------------


@pytest.mark.gpu
def test_graph_survives_partial_batches_and_device_input(engine: Path) -> None:
    """Partial batch, device input, then a full batch: the graph's context must not have
    been changed under it (its own context), so the replay equals the direct path."""
    torch = pytest.importorskip("torch")
    graph = runtime.load(engine)
    direct = runtime.load(engine, cuda_graph=False)
    assert graph._graph is not None and graph.cuda_graph_off is None
    assert direct._graph is None
    rng = np.random.default_rng(1)
    full = rng.integers(0, 256, (graph.max_batch, 32, 32), dtype=np.uint8)
    want = direct.describe(full)
    graph.describe(full[:7])  # changes the direct context's shape and addresses
    graph.describe(torch.from_numpy(full[:33]).cuda())  # device addresses on that context
    for _ in range(3):
        np.testing.assert_allclose(graph.describe(full), want, atol=1e-5)


@pytest.mark.gpu
def test_torch_input_on_the_default_stream_uses_the_own_stream(engine: Path) -> None:
    torch = pytest.importorskip("torch")
    trt = runtime.load(engine)
    x = torch.randint(0, 256, (100, 32, 32), dtype=torch.uint8, device="cuda")
    want = trt.describe(x.cpu().numpy())
    assert torch.cuda.current_stream().cuda_stream == 0
    out = trt.describe(x)  # no stream=: the own stream, joined to torch's by events
    out.mul_(1.0)  # torch's stream must see the finished descriptors
    np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4)


@pytest.mark.gpu
def test_float_torch_input_is_converted_on_the_callers_stream(engine: Path) -> None:
    torch = pytest.importorskip("torch")
    trt = runtime.load(engine)
    x = torch.randint(0, 256, (300, 32, 32), device="cuda").float()
    want = trt.describe(x.cpu().numpy())
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    for _ in range(5):
        with torch.cuda.stream(side):
            out = trt.describe(x + 0.0, stream=side)  # the conversion must run on `side`
        side.synchronize()
        np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4)


@pytest.mark.gpu
def test_describe_from_another_thread(engine: Path) -> None:
    import threading

    from hardnet_export._cuda import cuda_device_count, device_properties

    # On cuda:1 a thread that never called cudaSetDevice would enqueue on cuda:0.
    same = cuda_device_count() > 1 and (
        device_properties(1)["compute_capability"] == device_properties(0)["compute_capability"]
    )
    device = "cuda:1" if same else "cuda:0"
    trt = runtime.load(engine, device=device)
    x = np.random.default_rng(2).integers(0, 256, (50, 32, 32), dtype=np.uint8)
    want = trt.describe(x)
    got: list[np.ndarray] = []
    thread = threading.Thread(target=lambda: got.append(trt.describe(x)))
    thread.start()
    thread.join()
    np.testing.assert_allclose(got[0], want, atol=1e-5)


@pytest.mark.gpu
def test_misaligned_device_input_is_refused(engine: Path) -> None:
    torch = pytest.importorskip("torch")
    trt = runtime.load(engine)
    flat = torch.zeros(4 * 1024 + 1, dtype=torch.uint8, device="cuda")
    view = flat[1:].view(4, 32, 32)  # one byte past an aligned allocation
    with pytest.raises(ValueError, match="256-byte boundary"):
        trt.describe(view)


@pytest.mark.gpu
def test_close_releases_the_contexts(engine: Path) -> None:
    trt = runtime.load(engine)
    trt.close()
    assert trt.context is None and trt._graph_context is None and trt.engine is None
    trt.close()  # twice is fine
    with pytest.raises(RuntimeError, match="was closed"):
        trt.describe(np.zeros((2, 32, 32), np.uint8))


@pytest.mark.gpu
def test_version_compatible_engine_loads(onnx_model: Path, tmp_path: Path) -> None:
    if not _has_tensorrt():
        pytest.skip("needs TensorRT")
    from hardnet_export.export.tensorrt import build_engine

    path = tmp_path / "vc.engine"
    build_engine(onnx_model, path, opt_batch=16, max_batch=16, version_compatible=True)
    trt = runtime.load(path)  # deserialisation needs engine_host_code_allowed
    ort = runtime.load(onnx_model, device="cpu")
    x = np.random.default_rng(3).integers(0, 256, (16, 32, 32), dtype=np.uint8)
    assert float((trt.describe(x) * ort.describe(x)).sum(1).min()) >= 0.9999


@pytest.mark.gpu
def test_describe_timed_on_the_engine(engine: Path) -> None:
    trt = runtime.load(engine)
    x = np.random.default_rng(4).integers(0, 256, (70, 32, 32), dtype=np.uint8)
    out, seconds = trt.describe_timed(x)
    assert seconds is not None and seconds > 0
    np.testing.assert_allclose(out, trt.describe(x), atol=1e-5)


def test_alignment_check() -> None:
    from hardnet_export.runtime.cudart import check_alignment

    check_alignment(0x7F0000000000, "x")
    with pytest.raises(ValueError, match="256-byte boundary.*offset 1"):
        check_alignment(0x7F0000000001, "device patches")


# -- close() waits for the last inference first (issue 26, item 5) -------------------------


def test_close_waits_on_the_last_inference_before_freeing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a GPU: close() on a describer made of stand-ins records the order of its CUDA
    calls; the last inference's event (recorded on whichever stream, a caller's included)
    is waited on before the context, engine, buffers and stream go."""
    import threading

    from hardnet_export.runtime import cudart
    from hardnet_export.runtime.tensorrt_backend import TensorRTDescriber

    calls: list[str] = []

    class Thing:
        def __init__(self, name: str) -> None:
            self.name, self.ptr = name, 1

        def __getattr__(self, method: str) -> object:
            return lambda *args: calls.append(f"{self.name}.{method}")

    monkeypatch.setattr(cudart, "set_device", lambda index: calls.append("set_device"))
    d = TensorRTDescriber.__new__(TensorRTDescriber)
    d._lock = threading.Lock()
    d._device_index = 0
    d._graph = None
    d._timing = None
    d.context, d._graph_context, d.engine, d._keep = object(), object(), object(), (object(),)
    d.stream = Thing("stream")
    d._event, d._ready, d._done = Thing("event"), Thing("ready"), Thing("done")
    d._d_in, d._d_out, d._h_in, d._h_out = (Thing(n) for n in ("d_in", "d_out", "h_in", "h_out"))
    d.close()
    assert calls[:3] == ["set_device", "event.synchronize", "stream.synchronize"], calls
    assert d.context is None and d.engine is None and d._keep == ()
    assert "d_in.free" in calls and calls[-1] == "stream.destroy"


@pytest.mark.gpu
def test_close_right_after_work_on_a_callers_stream(engine: Path) -> None:
    """Work enqueued on a caller's stream behind a long sleep is still queued when close()
    runs; close() must wait for it (no crash, and the output is complete)."""
    torch = pytest.importorskip("torch")
    trt = runtime.load(engine)
    x = torch.randint(0, 256, (64, 32, 32), dtype=torch.uint8, device="cuda")
    want = trt.describe(x.cpu().numpy())
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        torch.cuda._sleep(200_000_000)  # about 0.1 s on the GPU before the inference
        out = trt.describe(x, stream=stream)
    trt.close()
    stream.synchronize()
    np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4)


@pytest.mark.gpu
def test_a_default_stream_passed_explicitly_is_joined_not_enqueued_on(engine: Path) -> None:
    """torch's default stream (cuda_stream 0) given as ``stream=``: TensorRT runs on the
    describer's own stream, joined by events, and the result is the host path's."""
    torch = pytest.importorskip("torch")
    from hardnet_export.runtime.inputs import stream_handle

    trt = runtime.load(engine)
    default = torch.cuda.default_stream()
    assert stream_handle(default) == 0
    x = torch.randint(0, 256, (96, 32, 32), dtype=torch.uint8, device="cuda")
    want = trt.describe(x.cpu().numpy())
    with torch.cuda.stream(default):
        out = trt.describe(x, stream=default)
    default.synchronize()
    np.testing.assert_allclose(out.cpu().numpy(), want, atol=1e-4)

    class DeviceArray:
        __cuda_array_interface__ = x.__cuda_array_interface__

    np.testing.assert_allclose(trt.describe(DeviceArray(), stream=0), want, atol=1e-4)
