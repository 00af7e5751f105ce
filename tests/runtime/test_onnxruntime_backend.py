from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.runtime.onnxruntime_backend import check_active_providers, choose_providers

ALL = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def names(chosen: list[tuple[str, dict]]) -> list[str]:
    return [name for name, _ in chosen]


def test_provider_choice_by_device() -> None:
    assert names(choose_providers("cpu", ALL, cuda_devices=1)) == ["CPUExecutionProvider"]
    assert names(choose_providers("cuda", ALL, cuda_devices=1)) == ALL[1:]
    assert names(choose_providers("tensorrt", ALL, cuda_devices=1)) == ALL
    assert names(choose_providers(None, ALL, cuda_devices=1)) == ALL[1:]
    assert names(choose_providers(None, ALL, cuda_devices=0)) == ["CPUExecutionProvider"]
    chosen = choose_providers(
        "cuda:1", ALL, cuda_devices=2, provider_options={"CUDAExecutionProvider": {"a": 1}}
    )
    assert chosen[0] == ("CUDAExecutionProvider", {"device_id": 1, "a": 1})
    assert chosen[1] == ("CPUExecutionProvider", {})


def test_auto_and_an_index_are_the_one_device_convention() -> None:
    # "auto" is None (the best device here), and an int N is cuda:N, as everywhere.
    for cuda_devices in (0, 1):
        assert choose_providers("auto", ALL, cuda_devices=cuda_devices) == choose_providers(
            None, ALL, cuda_devices=cuda_devices
        )
    assert choose_providers(1, ALL, cuda_devices=2) == choose_providers(  # type: ignore[arg-type]
        "cuda:1", ALL, cuda_devices=2
    )


def test_provider_errors() -> None:
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"], cuda_devices=0)
    with pytest.raises(ValueError, match="'cpu', 'cuda"):
        choose_providers("tpu", ALL, cuda_devices=0)


def test_provider_that_did_not_start_is_not_silent() -> None:
    cpu = ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="could not start its CUDA provider"):
        check_active_providers("cuda", ALL[1:], cpu)
    with pytest.warns(RuntimeWarning, match="TensorrtExecutionProvider; running on CUDA"):
        check_active_providers("tensorrt", ALL, ALL[1:])
    check_active_providers("cpu", cpu, cpu)
    check_active_providers("cuda:0", ALL[1:], ALL[1:])


def test_session_options(onnx_model: Path) -> None:
    d = runtime.load(
        onnx_model,
        device="cpu",
        intra_op_num_threads=1,
        inter_op_num_threads=1,
        graph_optimization_level="basic",
    )
    assert d.providers == ["CPUExecutionProvider"]
    assert d.describe(np.zeros((2, 32, 32), np.uint8)).shape == (2, 128)
    with pytest.raises(ValueError, match="graph_optimization_level"):
        runtime.load(onnx_model, graph_optimization_level="max")


def test_truncated_onnx_names_the_file(onnx_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes(onnx_model.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated.onnx.*not a readable ONNX model"):
        runtime.load(broken)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx"):
        runtime.load(empty)


def test_metadata_precision_and_fixed_batch(checkpoint: Path, tmp_path: Path) -> None:
    import warnings

    import onnx
    import torch

    from hardnet_export.model import load_model

    path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            load_model(checkpoint),
            (torch.zeros(8, 1, 32, 32),),
            str(path),
            input_names=["patches"],
            output_names=["descriptors"],
            dynamo=False,
        )
    graph = onnx.load(str(path))
    graph.metadata_props.add(key="precision", value="fp16")
    onnx.save(graph, str(path))
    d = runtime.load(path, backend="onnxruntime")
    assert d.precision == "fp16" and d.max_batch == 8 and d.input_dtype == "float32"
    x = np.random.default_rng(0).integers(0, 256, (19, 32, 32), dtype=np.uint8)
    out = d.describe(x)  # 8 + 8 + 3 (zero-padded to 8)
    np.testing.assert_allclose(out[16:], d.describe(x[16:]), atol=1e-5)
    with pytest.raises(ValueError, match="fixed batch of 8"):
        runtime.load(path, backend="onnxruntime", max_batch=4)
    # The CPU policy's chunk size gives way to the graph's fixed batch.
    assert runtime.load(path, device="cpu").max_batch == 8


def test_not_a_hardnet_graph(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ValueError, match="not a HardNet graph"):
        runtime.load(path)


@pytest.mark.parametrize(
    ("target", "made_for", "isa", "warned"),
    [
        ("tensorrt", None, "avx2", "TensorRT flavour"),
        ("tensorrt", None, "avx512-vnni", None),
        ("cpu", "avx512-vnni", "avx2", "for_isa='avx2'"),
        ("cpu", "avx2", "avx2", None),
        ("cpu", "avx512-vnni", "avx512-vnni", None),
        ("cpu", "avx512-vnni", "neon-dotprod", None),
    ],
)
def test_int8_kernel_warning_by_cpu_kind(
    target: str, made_for: str | None, isa: str, warned: str | None
) -> None:
    # The rule, for every CPU kind, whatever kind runs the test.
    from hardnet_export.artifacts.metadata import GraphMetadata
    from hardnet_export.artifacts.quantisation import Quantisation
    from hardnet_export.runtime.onnxruntime_backend import int8_kernel_warning

    meta = GraphMetadata(precision="int8", quantisation=Quantisation(flavour=target, isa=made_for))
    message = int8_kernel_warning(Path("m.onnx"), meta, isa=isa)
    assert (message is None) == (warned is None)
    if warned is not None:
        assert warned in message and isa in message
    assert int8_kernel_warning(Path("m.onnx"), GraphMetadata(precision="fp32"), isa="avx2") is None


def test_tensorrt_provider_needs_a_recent_onnxruntime_for_tensorrt_11() -> None:
    from hardnet_export.errors import MissingDependencyError
    from hardnet_export.runtime.onnxruntime_backend import check_tensorrt_provider

    with pytest.raises(MissingDependencyError, match=r"onnxruntime-gpu >= 1\.27.*1\.26\.0"):
        check_tensorrt_provider("1.26.0", "11.4.1.2", {})
    assert check_tensorrt_provider("1.27.0", "11.4.1.2", {}) == []
    assert check_tensorrt_provider("1.18.0", "10.13.0.35", {"trt_fp16_enable": True}) == []
    assert check_tensorrt_provider("1.18.0", None, {}) == []  # no tensorrt module: not judged
    (note,) = check_tensorrt_provider("1.28.0rc1", "11.4.1.2", {"trt_fp16_enable": True})
    assert "trt_fp16_enable has no effect" in note and "(variant fp16)" in note


def test_cuda_libraries_are_preloaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from hardnet_export.runtime import onnxruntime_backend as backend

    calls: list[int] = []
    fake = types.SimpleNamespace(preload_dlls=lambda: calls.append(1))
    monkeypatch.setattr(backend, "_PRELOADED", False)
    backend.preload_gpu_libraries(fake)
    backend.preload_gpu_libraries(fake)
    assert calls == [1]
    monkeypatch.setattr(backend, "_PRELOADED", False)
    backend.preload_gpu_libraries(types.SimpleNamespace())  # an ONNX Runtime before 1.21

    def broken() -> None:
        raise OSError("libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(backend, "_PRELOADED", False)
    with pytest.warns(RuntimeWarning, match="preload_dlls.*libcudnn"):
        backend.preload_gpu_libraries(types.SimpleNamespace(preload_dlls=broken))


# -- the TensorRT provider's precision flags and stream (issue 26, item 8) -----------------


@pytest.mark.parametrize(
    ("precision", "want"),
    [
        ("fp32", {}),
        ("fp16", {"trt_fp16_enable": True}),
        ("int8", {"trt_int8_enable": True, "trt_fp16_enable": True}),
    ],
)
@pytest.mark.parametrize("version", [None, "10.13.0"])
def test_tensorrt_10_provider_gets_the_graphs_precision(
    precision: str, want: dict, version: str | None
) -> None:
    from hardnet_export.runtime.onnxruntime_backend import tensorrt_provider_options

    options, notes = tensorrt_provider_options(precision, version, {"device_id": 0})
    assert options == {"device_id": 0, **want} and notes == []


def test_tensorrt_provider_options_the_caller_gave_win_and_11_needs_none() -> None:
    from hardnet_export.runtime.onnxruntime_backend import tensorrt_provider_options

    options, _ = tensorrt_provider_options("int8", "10.9", {"trt_fp16_enable": False})
    assert options == {"trt_fp16_enable": False, "trt_int8_enable": True}
    assert tensorrt_provider_options("fp16", "11.4.0", {}) == ({}, [])


@pytest.mark.parametrize("handle", [0, "0", 1, 2])
def test_a_default_stream_is_not_handed_to_the_tensorrt_provider(handle: object) -> None:
    from hardnet_export.runtime.onnxruntime_backend import tensorrt_provider_options

    given = {"has_user_compute_stream": 1, "user_compute_stream": handle}
    options, notes = tensorrt_provider_options("fp32", "10.13", given)
    assert "user_compute_stream" not in options and "has_user_compute_stream" not in options
    assert len(notes) == 1 and "default stream" in notes[0]
    own = {"user_compute_stream": str(0x7F00AB000000)}
    assert tensorrt_provider_options("fp32", "10.13", own) == (own, [])


def test_open_passes_the_precision_flags_to_the_tensorrt_provider(
    fp16_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a GPU: ONNX Runtime told it has the TensorRT provider, and a stand-in session
    that records what open() asked for (then refuses, as a real one would here)."""
    import onnxruntime as ort

    from hardnet_export import _cuda
    from hardnet_export.runtime import onnxruntime_backend as backend

    asked: dict = {}

    def session(path: str, sess_options: object, providers: list, provider_options: list):
        asked.update(zip(providers, provider_options, strict=True))
        raise RuntimeError("no GPU here")

    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(backend, "preload_gpu_libraries", lambda ort: None)
    monkeypatch.setattr(_cuda, "tensorrt_status", lambda: (None, "not installed"))
    options = {"TensorrtExecutionProvider": {"user_compute_stream": "0"}}
    with pytest.warns(RuntimeWarning, match="default stream"), pytest.raises(ValueError):
        runtime.load(fp16_onnx, backend="onnxruntime", device="tensorrt", provider_options=options)
    assert asked["TensorrtExecutionProvider"] == {"trt_fp16_enable": True}
