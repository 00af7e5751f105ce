"""OpenVINO backend: parity with ONNX Runtime, IR round trip, the CPU choice, bad input."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from hardnet_export import runtime
from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.errors import InputError
from hardnet_export.host import has_bf16
from hardnet_export.runtime.openvino_backend import core
from hardnet_export.shipped import SHIPPED_ONNX

ov = pytest.importorskip("openvino")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_parity_with_onnxruntime(patches: np.ndarray) -> None:
    ours = runtime.load(SHIPPED_ONNX, backend="openvino", num_threads=1)
    theirs = runtime.load(SHIPPED_ONNX, backend="onnxruntime", intra_op_num_threads=1)
    assert (ours.backend, ours.device, ours.precision) == ("openvino", "cpu", "fp32")
    assert ours.input_dtype == theirs.input_dtype == "uint8"
    assert cosine(ours.describe(patches), theirs.describe(patches)).min() >= 0.9999
    # Float input is rounded to grey levels as on every backend; N = 0 and chunking work.
    np.testing.assert_allclose(
        ours.describe(patches.astype(np.float32)), ours.describe(patches), atol=1e-6
    )
    assert ours.describe(np.zeros((0, 32, 32), np.uint8)).shape == (0, 128)
    chunked = runtime.load(SHIPPED_ONNX, backend="openvino", max_batch=7)
    np.testing.assert_allclose(chunked.describe(patches), ours.describe(patches), atol=1e-5)


@pytest.fixture(scope="module")
def int8_graph(checkpoint: Path, patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    from hardnet_export.data.types import MatchedPairs
    from hardnet_export.export.int8 import Int8Options
    from hardnet_export.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("ov-int8")
    np.save(folder / "calibration.npy", patches)
    options = Int8Options(
        calibration=folder / "calibration.npy",
        calibration_size=len(patches),
        gate_pairs=MatchedPairs(patches[:32], np.ascontiguousarray(patches[:32, ::-1])),
        method="minmax",
        force=True,
    )
    return export_onnx(
        checkpoint, folder / "m.int8-cpu.onnx", variant="int8-cpu", options=options, parity=False
    )


def test_int8_graph_within_the_gates_cosine(int8_graph: Path, patches: np.ndarray) -> None:
    from hardnet_export.export.int8 import Int8Options

    ours = runtime.load(int8_graph, backend="openvino")
    # The graph as written (optimisations off) is what it was gated in.
    exact = runtime.load(int8_graph, backend="onnxruntime", graph_optimization_level="disable")
    assert ours.precision == "int8"
    worst = cosine(ours.describe(patches), exact.describe(patches)).min()
    assert worst >= Int8Options().min_cosine


def test_f16_is_refused_for_int8_graphs_and_never_tuned(int8_graph: Path) -> None:
    from hardnet_export.runtime.openvino_backend import tuning_candidates

    # Refused on every CPU, before anything compiles.
    with pytest.raises(ValueError, match=rf"{re.escape(str(int8_graph))} is an INT8 graph.*f16"):
        runtime.load(int8_graph, backend="openvino", inference_precision="f16")
    fp16_cpu = frozenset({"avx512f", "avx512_fp16", "avx512_bf16"})
    int8 = tuning_candidates(read_metadata(int8_graph), fp16_cpu)
    fp32 = tuning_candidates(read_metadata(SHIPPED_ONNX), fp16_cpu)
    assert {c["inference_precision"] for c in int8} == {"f32", "bf16"}
    assert {c["inference_precision"] for c in fp32} == {"f32", "bf16", "f16"}


def test_ir_round_trip(tmp_path: Path, patches: np.ndarray) -> None:
    xml = tmp_path / "hardnet.xml"
    ov.save_model(core().read_model(str(SHIPPED_ONNX)), str(xml), compress_to_fp16=False)
    assert xml.with_suffix(".bin").is_file()
    loaded = runtime.load(xml)  # the suffix picks OpenVINO
    assert loaded.backend == "openvino" and loaded.precision == "fp32"  # metadata kept
    reference = runtime.load(SHIPPED_ONNX, backend="onnxruntime")
    assert cosine(loaded.describe(patches), reference.describe(patches)).min() >= 0.9999


def test_cpu_rules_pick_openvino_for_int8_everywhere_and_bf16_only_where_gated(
    int8_graph: Path,
) -> None:
    # With no tuning measured here, the CPU decides through the records' rule table.
    assert runtime.load(int8_graph, device="cpu").backend == "openvino"
    fp32 = runtime.load(SHIPPED_ONNX, device="cpu")
    assert fp32.choice is not None and fp32.choice.source == "rule"
    # The shipped graph records the bf16 gate it passed: bf16 where the CPU has it.
    assert read_metadata(SHIPPED_ONNX).gate_on("openvino:bf16") is not None
    if has_bf16():
        assert (fp32.backend, fp32.choice.inference_precision) == ("openvino", "bf16")
    else:
        assert (fp32.backend, fp32.choice.inference_precision) == ("onnxruntime", "graph")
    # What the caller names wins over the rules.
    exact = runtime.load(SHIPPED_ONNX, device="cpu", inference_precision="f32")
    assert (exact.backend, exact.inference_precision) == ("openvino", "f32")
    assert exact.choice is not None and exact.choice.source == "explicit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # int8 kernels on this CPU
        forced = runtime.load(int8_graph, backend="onnxruntime", device="cpu")
    assert forced.backend == "onnxruntime"


BF16 = {"inference_precision": "bf16"}


@pytest.mark.parametrize(
    ("flags", "bf16_gate", "fp32", "int8"),
    [
        (frozenset({"avx2", "fma"}), True, ("onnxruntime", {}), ("openvino", {})),
        (frozenset({"avx512f", "avx512_vnni"}), True, ("onnxruntime", {}), ("openvino", {})),
        (frozenset({"avx512f", "avx512_bf16"}), True, ("openvino", BF16), ("openvino", BF16)),
        (frozenset({"avx512f", "avx512_bf16"}), False, ("onnxruntime", {}), ("openvino", {})),
        (frozenset({"avx512f", "avx512_bf16"}), None, ("onnxruntime", {}), ("openvino", {})),
        (frozenset({"amx_int8", "amx_bf16"}), True, ("openvino", BF16), ("openvino", BF16)),
        # Passed at the gate's 0.98 but under the 0.99 INT8 graphs are held to.
        (frozenset({"avx512f", "avx512_bf16"}), 0.985, ("openvino", BF16), ("openvino", {})),
    ],
    ids=[
        "avx2",
        "avx512-vnni",
        "bf16-passed",
        "bf16-failed",
        "bf16-unmeasured",
        "amx-passed",
        "bf16-under-int8-bar",
    ],
)
def test_rule_table_per_instruction_set(
    int8_graph: Path,
    flags: frozenset[str],
    bf16_gate: bool | float | None,
    fp32: tuple[str, dict[str, str]],
    int8: tuple[str, dict[str, str]],
) -> None:
    from dataclasses import replace

    from hardnet_export.artifacts.metadata import GraphMetadata
    from hardnet_export.runtime.policy import cpu_runners, rule_choice

    measured = read_metadata(int8_graph).gate_on("openvino")
    assert measured is not None
    # A passed gate at 0.995, a failed one, or one that passed with the given worst cosine.
    worst = bf16_gate if isinstance(bf16_gate, float) else 0.995
    gate = replace(measured, passed=bf16_gate is not False, min_cosine=worst)
    gates = {} if bf16_gate is None else {"openvino:bf16": gate}
    runners = cpu_runners(SHIPPED_ONNX)
    for precision, (backend, options) in (("fp32", fp32), ("int8", int8)):
        metadata = GraphMetadata(precision=precision, inference_gates=gates)
        choice = rule_choice(metadata, runners, flags=flags)
        assert (choice.backend, dict(choice.options)) == (backend, options), precision
        assert choice.source == "rule" and choice.why


UNFUSED = {"graph_optimization_level": "disable"}


@pytest.mark.parametrize(
    ("flags", "backend", "options"),
    [
        (frozenset({"avx2", "fma"}), "onnxruntime", UNFUSED),
        (frozenset({"avx512f", "avx512bw"}), "onnxruntime", UNFUSED),
        (frozenset({"avx2", "avx_vnni"}), "openvino", {}),
        (frozenset({"avx512f", "avx512_vnni"}), "openvino", {}),
        (frozenset({"amx_int8"}), "openvino", {}),
    ],
    ids=["avx2", "avx512", "avx-vnni", "avx512-vnni", "amx"],
)
def test_tensorrt_flavour_runs_exactly_where_int8_kernels_saturate(
    flags: frozenset[str], backend: str, options: dict[str, str]
) -> None:
    # Symmetric int8 activations on kernels without VNNI saturate (OpenVINO restricted to
    # AVX2 on a Zen 4: worst cosine 0.896), so there the graph runs unfused, exactly as it
    # was checked; the cpu flavour keeps OpenVINO on every CPU.
    from hardnet_export.artifacts.metadata import GraphMetadata
    from hardnet_export.artifacts.quantisation import Quantisation
    from hardnet_export.runtime.policy import cpu_runners, rule_choice

    runners = cpu_runners(SHIPPED_ONNX)
    for flavour in ("tensorrt", "cpu"):
        quantisation = Quantisation(flavour=flavour, scheme="qdq")
        metadata = GraphMetadata(precision="int8", quantisation=quantisation)
        choice = rule_choice(metadata, runners, flags=flags)
        want = (backend, options) if flavour == "tensorrt" else ("openvino", {})
        assert (choice.backend, dict(choice.options)) == want, flavour


@pytest.mark.parametrize(
    ("flags", "saturating"),
    [
        (frozenset({"avx2", "fma"}), True),
        (frozenset({"avx512f", "avx512bw"}), True),
        (frozenset({"avx2", "avx_vnni"}), False),
        (frozenset({"avx512f", "avx512_vnni"}), False),
        (frozenset({"amx_int8"}), False),
    ],
    ids=["avx2", "avx512", "avx-vnni", "avx512-vnni", "amx"],
)
def test_cpu_flavour_with_8_bit_weights_runs_exactly_where_int8_kernels_saturate(
    flags: frozenset[str], saturating: bool
) -> None:
    # OpenVINO restricted to AVX2 clips u8 x s8 pair sums (host.py's docstring), so a graph
    # made for VNNI kernels (8-bit weights) runs unfused there, in the arithmetic it was
    # checked in, and neither backend offers its fused kernels to tune; a graph made for
    # saturating kernels (7-bit weights), or one that does not say, keeps OpenVINO.
    from hardnet_export.artifacts.metadata import GraphMetadata
    from hardnet_export.artifacts.quantisation import Quantisation
    from hardnet_export.runtime import onnxruntime_backend, openvino_backend
    from hardnet_export.runtime.policy import cpu_runners, rule_choice

    runners = cpu_runners(SHIPPED_ONNX)
    for made_for, fits in (("avx512-vnni", not saturating), ("avx2", True), (None, True)):
        quantisation = Quantisation(flavour="cpu", scheme="qdq", isa=made_for)
        metadata = GraphMetadata(precision="int8", quantisation=quantisation)
        choice = rule_choice(metadata, runners, flags=flags)
        want = ("openvino", {}) if fits else ("onnxruntime", UNFUSED)
        assert (choice.backend, dict(choice.options)) == want, made_for
        ov_candidates = openvino_backend.tuning_candidates(metadata, flags)
        ort_candidates = onnxruntime_backend.tuning_candidates(metadata, flags)
        assert bool(ov_candidates) == fits, made_for
        assert ort_candidates == ([{}] if fits else [UNFUSED]), made_for


def _extreme_qdq_conv() -> bytes:
    """One Q/DQ conv, 16 input channels, 3x3: output channel 0 has every weight 127, 1 every
    weight -128, 2 alternating 127 / -128 over input channels."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.full((3, 16, 3, 3), 127, np.int8)
    weights[1] = -128
    weights[2, 1::2] = -128
    one, zero = np.array(1.0, np.float32), np.array(0, np.uint8)
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
            helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
        ],
        "extreme",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])],
        [
            numpy_helper.from_array(one, "s"),
            numpy_helper.from_array(zero, "z"),
            numpy_helper.from_array(weights, "wq"),
            numpy_helper.from_array(np.ones(3, np.float32), "ws"),
            numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def test_openvino_int8_kernels_clip_pair_sums_only_where_the_host_says_they_saturate() -> None:
    # The premise of the "fit" rules, on this machine's real kernels: at full-scale inputs
    # OpenVINO's int8 conv is exact on kernels that accumulate in 32 bits, and on those
    # host.saturates() names it is exact or clips every u8 x s8 pair at 16 bits (72 pairs
    # of 2 x 255 x 127), nothing else. ONNX Runtime unfused is exact everywhere.
    import onnxruntime as ort

    from hardnet_export.host import int8_isa, saturates

    graph = _extreme_qdq_conv()
    x = np.full((1, 16, 5, 5), 255.0, np.float32)
    exact = np.array([255 * 127 * 144, -255 * 128 * 144, -255 * 72], np.float64)
    clipped = np.array([72 * 32767, 72 * -32768, -255 * 72], np.float64)
    compiled = core().compile_model(
        core().read_model(graph, b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    got = np.asarray(compiled(x)[0], np.float64)[0, :, 2, 2]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": x})[0][0, :, 2, 2], exact)
    if saturates(int8_isa()):
        assert np.array_equal(got, exact) or np.array_equal(got, clipped), got
    else:
        np.testing.assert_array_equal(got, exact)


@pytest.mark.parametrize(
    ("flavour", "made_for", "isa", "warned"),
    [
        ("cpu", "avx512-vnni", "avx2", "8-bit weights"),
        ("cpu", "amx-int8", "avx512", "8-bit weights"),
        ("tensorrt", None, "avx2", "symmetric int8 activations"),
        ("cpu", "avx2", "avx2", None),
        ("cpu", None, "avx2", None),
        ("cpu", "avx512-vnni", "avx512-vnni", None),
        ("tensorrt", None, "amx-int8", None),
        ("cpu", "avx512-vnni", "neon-dotprod", None),
    ],
)
def test_openvino_int8_kernel_warning_by_cpu_kind(
    flavour: str, made_for: str | None, isa: str, warned: str | None
) -> None:
    # The rule, for every CPU kind, whatever kind runs the test.
    from hardnet_export.artifacts.metadata import GraphMetadata
    from hardnet_export.artifacts.quantisation import Quantisation
    from hardnet_export.runtime.openvino_backend import int8_kernel_warning

    quantisation = Quantisation(flavour=flavour, isa=made_for)
    message = int8_kernel_warning(
        Path("m.onnx"), GraphMetadata(precision="int8", quantisation=quantisation), isa=isa
    )
    assert (message is None) == (warned is None)
    if warned is not None:
        assert message is not None and warned in message and isa in message
        assert "graph_optimization_level='disable'" in message
    assert int8_kernel_warning(Path("m.onnx"), GraphMetadata(precision="fp32"), isa="avx2") is None


def test_options_and_devices_are_checked() -> None:
    with pytest.raises(ValueError, match="performance_hint.*'fast'"):
        runtime.load(SHIPPED_ONNX, backend="openvino", performance_hint="fast")
    with pytest.raises(ValueError, match="num_threads"):
        runtime.load(SHIPPED_ONNX, backend="openvino", num_threads=-1)
    with pytest.raises(ValueError, match="runs on 'cpu', got device='cuda'"):
        runtime.load(SHIPPED_ONNX, backend="openvino", device="cuda")
    d = runtime.load(SHIPPED_ONNX, backend="openvino", performance_hint="throughput")
    assert d.describe(np.zeros((3, 32, 32), np.uint8)).shape == (3, 128)


def test_bad_input_gets_the_same_errors_as_onnxruntime() -> None:
    ours = runtime.load(SHIPPED_ONNX, backend="openvino")
    theirs = runtime.load(SHIPPED_ONNX, backend="onnxruntime")
    for bad, kind in [
        (np.zeros((2, 31, 32), np.uint8), ValueError),
        (np.full((2, 32, 32), np.nan, np.float32), ValueError),
        (np.full((2, 32, 32), 300.0, np.float32), ValueError),
        (np.zeros((2, 32, 32), np.int32), TypeError),
    ]:
        with pytest.raises(kind) as a:
            ours.describe(bad)
        with pytest.raises(kind) as b:
            theirs.describe(bad)
        assert str(a.value) == str(b.value)


def test_bad_files(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # Each was "Exception from src/inference/src/cpp/core.cpp:84" and, for text, absl log
    # lines of TensorFlow's front end on stderr.
    cut = SHIPPED_ONNX.read_bytes()[:5000]
    for name, content in [("broken.onnx", b"not a model"), ("cut.onnx", cut)]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError) as caught:
            runtime.load(tmp_path / name, backend="openvino")
        assert str(caught.value) == (
            f"{tmp_path / name} is not a readable ONNX model (OpenVINO cannot parse it: a "
            "truncated file, or not an ONNX model)"
        )
    (tmp_path / "bad.xml").write_text("<net>")
    (tmp_path / "bad.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"bad\.xml is not a readable OpenVINO IR \(not valid XML"):
        runtime.load(tmp_path / "bad.xml")
    assert capfd.readouterr().err == ""
    lonely = tmp_path / "lonely.xml"
    lonely.write_text("<net/>")
    with pytest.raises(FileNotFoundError, match=r"lonely\.xml needs its weights file"):
        runtime.load(lonely)
    # A real IR of some other graph: one (N, 3) float input.
    from openvino import opset13 as ops

    x = ops.parameter([-1, 3], ov.Type.f32, name="x")
    other = tmp_path / "other.xml"
    ov.save_model(ov.Model([ops.relu(x)], [x], "other"), str(other))
    with pytest.raises(ValueError, match=r"other\.xml is not a HardNet graph: its input 'x'"):
        runtime.load(other)
    with pytest.raises(FileNotFoundError, match="missing.xml"):
        runtime.load(tmp_path / "missing.xml")


def test_bf16_inference_where_the_cpu_has_it(patches: np.ndarray) -> None:
    from hardnet_export.runtime.openvino_backend import has_bf16

    assert has_bf16(frozenset({"avx2", "amx_bf16"})) and has_bf16(frozenset({"avx512_bf16"}))
    assert not has_bf16(frozenset({"avx2", "fma", "avx512f"}))
    if not has_bf16():  # Zen 3 and other CPUs without bf16: refused, not quietly f32
        with pytest.raises(InputError, match="native bf16.*lacks"):
            runtime.load(SHIPPED_ONNX, backend="openvino", inference_precision="bf16")
        return
    bf16 = runtime.load(SHIPPED_ONNX, backend="openvino", inference_precision="bf16")
    f32 = runtime.load(SHIPPED_ONNX, backend="openvino")
    assert (bf16.inference_precision, f32.inference_precision) == ("bf16", "f32")
    assert bf16.precision == "fp32"  # the graph's; the arithmetic is the option's
    # bf16 keeps 8 significant bits: close to FP32, not equal to it.
    similarity = cosine(bf16.describe(patches), f32.describe(patches))
    assert similarity.min() >= 0.99 and similarity.mean() < 1 - 1e-7, similarity.min()


def test_the_standardisation_probe_is_one_exact_value_per_patch(patches: np.ndarray) -> None:
    """The output that keeps a reduced-precision graph's standardisation in f32: added once,
    after the descriptors, holding each patch's first standardised pixel (every CPU)."""
    from hardnet_export.runtime.openvino_backend import (
        STANDARDISATION_PROBE,
        keep_standardisation_f32,
        read_model,
    )
    from hardnet_export.shipped import STD_EPSILON

    model = read_model(Path(SHIPPED_ONNX))
    descriptors = model.outputs[0].get_names()
    keep_standardisation_f32(keep_standardisation_f32(model))
    assert len(model.outputs) == 2 and model.outputs[0].get_names() == descriptors
    assert STANDARDISATION_PROBE in model.outputs[1].get_names()
    compiled = core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled({0: patches[:5, None]})
    flat = patches[:5].reshape(5, -1).astype(np.float64)
    first = (flat[:, 0] - flat.mean(1)) / (flat.std(1, ddof=1) + STD_EPSILON)
    np.testing.assert_allclose(out[compiled.outputs[1]].reshape(5), first, rtol=1e-5, atol=1e-5)
    plain = runtime.load(SHIPPED_ONNX, backend="openvino").describe(patches[:5])
    np.testing.assert_allclose(out[compiled.outputs[0]], plain, atol=1e-6)
    # A graph whose first conv reads its input has no standardisation to keep.
    x = ov.opset8.parameter([-1, 1, 32, 32], ov.Type.f32)
    w = ov.opset8.constant(np.ones((8, 1, 3, 3), np.float32))
    bare = ov.Model([ov.opset8.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1])], [x])
    assert len(keep_standardisation_f32(bare).outputs) == 1


def test_bf16_is_as_exact_in_any_batch() -> None:
    """In bf16, OpenVINO rounded each patch's mean to a whole grey level, and more in the
    patches past a batch's last block of 16 (worst held-out cosine to f32 0.9941 in whole
    blocks, 0.9809 one patch per call; ``hardnet-fast`` 0.9871 / 0.9609 on an AMX Xeon).
    With the standardisation kept in f32 (0.9998 both there), one patch per call, an odd
    batch and whole blocks agree with f32 alike, so nothing is padded."""
    from hardnet_export.calibration.gate import textured
    from hardnet_export.data.builtin import validation_pairs

    if not has_bf16():  # the describer refuses bf16 here (test above)
        return
    # The least contrasted patches a detector would describe: rounding moves them most.
    held_out = validation_pairs(2000, 0).anchors
    held_out = held_out[textured(held_out)]
    contrast = held_out.reshape(len(held_out), -1).std(1)
    held_out = held_out[np.argsort(contrast)[:96]]
    f32 = runtime.load(SHIPPED_ONNX, backend="openvino").describe(held_out)
    bf16 = runtime.load(SHIPPED_ONNX, backend="openvino", inference_precision="bf16")
    assert bf16.multiple == 1
    whole = bf16.describe(held_out)
    one = np.concatenate([bf16.describe(held_out[i : i + 1]) for i in range(32)])
    odd = np.concatenate([bf16.describe(held_out[i : i + 17]) for i in range(0, 85, 17)])
    for got in (whole, one, odd):
        similarity = cosine(got, f32[: len(got)])
        # Measured 0.99996 on an AMX Xeon; 0.9941 (whole) and 0.9866 (one) before.
        assert similarity.min() >= 0.999 and similarity.mean() < 1 - 1e-7, similarity.min()
    # The gates' describe function computes the same way.
    from hardnet_export.runtime.openvino_backend import ov_describe

    gate = ov_describe(SHIPPED_ONNX, inference_precision="bf16")(held_out[:3, None])
    assert cosine(gate, f32[:3]).min() >= 0.999


def test_full_chunks_and_single_patches_run_on_a_graph_compiled_for_their_batch(
    patches: np.ndarray, tmp_path: Path
) -> None:
    from hardnet_export.artifacts.models import get_model

    onnx = pytest.importorskip("onnx")

    reference = runtime.load(SHIPPED_ONNX, backend="onnxruntime").describe(patches[:20])
    ours = runtime.load(SHIPPED_ONNX, backend="openvino", max_batch=8)
    assert ours.static_batch is None  # compiled on the first full chunk, not at load
    # Two full chunks on the static graph, the tail of 4 on the dynamic one.
    chunked = ours.describe(patches[:20])
    assert ours.static_batch == 8
    assert ours.static_batches == (8,)
    # One patch per call, the latency case, on a graph compiled for one patch.
    one_by_one = np.concatenate([ours.describe(patches[i : i + 1]) for i in range(20)])
    assert ours.static_batches == (1, 8)
    np.testing.assert_allclose(chunked, one_by_one, atol=1e-5)
    assert cosine(chunked, reference).min() >= 0.9999
    ours.use_chunks(16)  # a new chunk size gets its own graph at its first full chunk
    np.testing.assert_allclose(ours.describe(patches[:20]), chunked, atol=1e-5)
    assert ours.static_batch == 16 and ours.static_batches == (1, 16)
    # A packed graph's chunk compiles where it is a whole number of packed rows.
    narrow = get_model("hardnet-eighth").onnx
    packed = runtime.load(narrow, backend="openvino", max_batch=8, pack_channels=16)
    plain = runtime.load(narrow, backend="onnxruntime").describe(patches[:20])
    assert cosine(packed.describe(patches[:20]), plain).min() >= 0.9999
    assert packed.static_batch == 8
    uneven = runtime.load(narrow, backend="openvino", max_batch=6, pack_channels=16)
    assert cosine(uneven.describe(patches[:20]), plain).min() >= 0.9999
    assert uneven.static_batch is None
    packed.describe(patches[:1])  # fewer than a packed row: the graph as written
    assert packed.static_batches == (8,)
    # A graph with a fixed batch is static already.
    fixed = onnx.load(str(SHIPPED_ONNX))
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8
    onnx.save(fixed, str(tmp_path / "fixed.onnx"))
    static = runtime.load(tmp_path / "fixed.onnx", backend="openvino")
    assert cosine(static.describe(patches[:20]), reference).min() >= 0.9999
    assert static.max_batch == 8 and static.static_batch is None
    static.describe(patches[:1])
    assert static.static_batches == ()
