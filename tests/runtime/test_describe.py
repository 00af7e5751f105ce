"""Every registered backend that runs on a CPU against PyTorch, on every kind of input (the
backend contract, parametrised over the records; a backend not installed here is skipped)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.backends import Backend, backends
from hardnet_export.runtime.base import Describer

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def reference(checkpoint: Path, patches: np.ndarray) -> np.ndarray:
    from hardnet_export.model import load_model

    with torch.inference_mode():
        return load_model(checkpoint)(torch.from_numpy(patches[:, None])).numpy()


CPU_BACKENDS = [b for b in backends() if "cpu" in b.devices]


@pytest.fixture(scope="module", params=CPU_BACKENDS, ids=lambda b: b.name)
def describer(request: pytest.FixtureRequest, checkpoint: Path, onnx_model: Path) -> Describer:
    backend: Backend = request.param
    if not backend.available():
        pytest.skip(f"{backend.name} is not installed")
    # The same random weights in whichever form the backend reads.
    path = next((p for p in (checkpoint, onnx_model) if backend.reads(p)), None)
    if path is None:
        pytest.fail(f"no test artifact for {backend.name} (it reads {backend.suffixes})")
    return runtime.load(path, backend=backend.name, device="cpu", max_batch=16)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_matches_pytorch(describer: Describer, patches: np.ndarray, reference: np.ndarray) -> None:
    out = describer.describe(patches)
    assert out.shape == (len(patches), 128) and out.dtype == np.float32
    assert cosine(out, reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)


def test_reports_what_it_runs(describer: Describer) -> None:
    assert describer.device == "cpu"
    assert describer.precision == "fp32"
    assert describer.max_batch == 16
    assert describer.backend in repr(describer) or type(describer).__name__ in repr(describer)


@pytest.mark.parametrize("n", [0, 1, 17, pytest.param(1000, marks=pytest.mark.slow)])
def test_any_batch_size(describer: Describer, patches: np.ndarray, n: int) -> None:
    batch = np.resize(patches, (n, 32, 32))
    out = describer.describe(batch)
    assert out.shape == (n, 128) and out.dtype == np.float32
    if n:
        # Chunked (n > max_batch = 16) gives what one-by-one gives.
        np.testing.assert_allclose(out[-1:], describer.describe(batch[-1:]), atol=1e-5)


def test_input_forms_agree(describer: Describer, patches: np.ndarray) -> None:
    base = describer.describe(patches[:8])
    np.testing.assert_allclose(describer.describe(patches[:8, None]), base, atol=1e-5)
    np.testing.assert_allclose(describer.describe(patches[:8].astype(np.float32)), base, atol=1e-4)
    np.testing.assert_allclose(describer.describe(patches[:8].astype(np.float64)), base, atol=1e-4)
    out = describer.describe(torch.from_numpy(patches[:8]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), base, atol=1e-5)
    out = describer.describe(torch.from_numpy(patches[:8]).float())
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), base, atol=1e-4)
    empty = describer.describe(torch.zeros((0, 32, 32), dtype=torch.uint8))
    assert isinstance(empty, torch.Tensor) and tuple(empty.shape) == (0, 128)


def test_concurrent_calls_equal_serial(describer: Describer, patches: np.ndarray) -> None:
    serial = [describer.describe(np.roll(patches, i, axis=0)[:40]) for i in range(8)]
    results: list[np.ndarray | None] = [None] * 8

    def work(i: int) -> None:
        results[i] = describer.describe(np.roll(patches, i, axis=0)[:40])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial, strict=True):
        assert got is not None
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(
    ("bad", "error", "text"),
    [
        (np.zeros((4, 32, 31), np.uint8), ValueError, r"\(N, 32, 32\).*\(4, 32, 31\)"),
        (np.zeros((4, 2, 32, 32), np.uint8), ValueError, r"got \(4, 2, 32, 32\)"),
        (np.zeros((32, 32), np.uint8), ValueError, r"got \(32, 32\)"),
        (np.zeros((4, 32, 32), np.int32), TypeError, "int32"),
        (np.zeros((4, 32, 32), bool), TypeError, "bool"),
        (np.full((4, 32, 32), np.nan, np.float32), ValueError, "NaN"),
        (np.full((4, 32, 32), np.inf, np.float32), ValueError, "inf"),
        (np.full((4, 32, 32), 256.0, np.float32), ValueError, r"0\.\.255.*256"),
        (np.full((4, 32, 32), -1.0, np.float32), ValueError, r"0\.\.255"),
        ("patches", TypeError, "uint8 or float"),
        ([object()], TypeError, "numeric"),
    ],
)
def test_bad_patches(describer: Describer, bad: object, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        describer.describe(bad)


def test_float64_beyond_float32_is_refused_without_numpy_warnings(describer: Describer) -> None:
    import warnings

    with warnings.catch_warnings():
        # numpy's "overflow encountered in cast" came ahead of the error.
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"0\.\.255, got values in \[0\.0, 1e\+39\]"):
            describer.describe(np.concatenate([np.zeros((1, 32, 32)), np.full((1, 32, 32), 1e39)]))


def test_bad_torch_patches(describer: Describer) -> None:
    with pytest.raises(ValueError, match="NaN"):
        describer.describe(torch.full((2, 32, 32), float("nan")))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        describer.describe(torch.full((2, 32, 32), 300.0))
    with pytest.raises(TypeError, match="int64"):
        describer.describe(torch.zeros((2, 32, 32), dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        describer.describe(torch.zeros((2, 3, 32, 32)))


def test_compute_matches_describe_on_crops(describer: Describer, patches: np.ndarray) -> None:
    import cv2

    image = np.hstack(list(patches[:4]))  # 32 x 128: four patches side by side
    kps = [cv2.KeyPoint(32 * i + 15.5, 15.5, 32 / describer.magnification) for i in range(4)]
    out_kps, desc = describer.compute(image, kps)
    assert out_kps is kps and desc.shape == (4, 128)
    np.testing.assert_allclose(desc, describer.describe(patches[:4]), atol=1e-5)
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    np.testing.assert_allclose(describer.compute(bgr, kps)[1], desc, atol=1e-5)
    assert describer.compute(image, np.zeros((0, 4)))[1].shape == (0, 128)


def test_compute_rejects_bad_input(describer: Describer) -> None:
    with pytest.raises(TypeError, match="uint8"):
        describer.compute(np.zeros((40, 40), np.float32), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\(K, 2\) or \(K, 4\)"):
        describer.compute(np.zeros((40, 40), np.uint8), np.zeros((1, 3)))


def test_fp16_graph_on_onnxruntime(
    fp16_onnx: Path, patches: np.ndarray, reference: np.ndarray
) -> None:
    d = runtime.load(fp16_onnx)
    assert d.precision == "fp16"
    sim = cosine(d.describe(patches), reference)
    assert sim.mean() >= 0.999 and sim.min() >= 0.99


@pytest.fixture(scope="module")
def int8_tensorrt_graph(
    checkpoint: Path, patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    # The exporter's TensorRT-flavoured Q/DQ graph (symmetric int8), every conv in int8.
    from hardnet_export.data.types import MatchedPairs
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("int8")
    calibration = folder / "calibration.npy"
    np.save(calibration, patches)
    gate = MatchedPairs(patches[:32], np.ascontiguousarray(patches[:32, ::-1]))
    options = Int8Options(
        calibration=calibration,
        calibration_size=len(patches),
        gate_pairs=gate,
        keep_float=(),
        method="minmax",
        force=True,
    )
    return export_onnx(checkpoint, folder / "m.int8.onnx", variant="int8-tensorrt", options=options,
                       parity=False)  # fmt: skip


@pytest.mark.slow
def test_int8_tensorrt_graph_on_onnxruntime_in_exact_semantics(
    int8_tensorrt_graph: Path, patches: np.ndarray, reference: np.ndarray
) -> None:
    # Optimisations off: Q/DQ as written, which is what TensorRT computes, on any CPU.
    d = runtime.load(int8_tensorrt_graph, graph_optimization_level="disable")
    assert d.precision == "int8" and d.semantics == "exact-qdq"
    assert cosine(d.describe(patches), reference).mean() >= 0.99


@pytest.mark.slow
def test_int8_tensorrt_graph_on_this_cpus_kernels(
    int8_tensorrt_graph: Path, patches: np.ndarray, reference: np.ndarray
) -> None:
    # ONNX Runtime's fused int8 kernels compute this graph as written only with 32-bit
    # accumulation (VNNI, AMX, ARM); where pairs of products sum in saturating 16 bits
    # (AVX2 / AVX-512 without VNNI) the runtime says so instead of losing accuracy silently.
    import warnings

    from hardnet_export import host

    isa = host.int8_isa()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = runtime.load(int8_tensorrt_graph, backend="onnxruntime", device="cpu")
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert d.semantics == "host-kernels"
    if host.saturates(isa):
        assert any("TensorRT flavour" in m and isa in m and "int8-cpu" in m for m in said)
        # With nothing named, the runtime runs it there in the exact Q/DQ arithmetic.
        assert runtime.load(int8_tensorrt_graph, device="cpu").semantics == "exact-qdq"
    else:
        assert not said, said
        assert cosine(d.describe(patches), reference).mean() >= 0.99, f"int8 kernels: {isa}"


def test_context_manager(onnx_model: Path) -> None:
    with runtime.load(onnx_model) as d:
        assert d.describe(np.zeros((1, 32, 32), np.uint8)).shape == (1, 128)


def test_max_batch_must_be_positive(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        runtime.load(checkpoint, max_batch=0)
