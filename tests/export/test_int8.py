"""INT8 Q/DQ graphs: structure, exact semantics, the cpu flavour per int8 kernel kind, mixed
precision and the default exports' accuracy.

Every assertion here holds on any CPU kind (AVX2 without VNNI, AVX-512 VNNI, ARM): what
differs by kind is stated as such and the host's kind is in the messages.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from hardnet_export import host
from hardnet_export.artifacts.metadata import SEMANTICS_EXACT, SEMANTICS_HOST
from hardnet_export.calibration.dataset import CalibrationSet
from hardnet_export.calibration.gate import Int8GateError, evaluate_gate
from hardnet_export.data.types import MatchedPairs
from hardnet_export.export.int8 import (
    CPU_SETTINGS,
    DEFAULT_FLOAT_LAYERS,
    LIGHT_FLOAT_LAYERS,
    LIGHT_MIN_COSINE,
    Int8Options,
    Quantizer,
    quantize_int8,
    quantize_qdq,
)
from hardnet_export.runtime.onnxruntime_backend import ort_describe
from hardnet_export.runtime.registry import installed

HOST = f"host int8 kernels: {host.int8_isa()}"


@pytest.fixture(scope="module")
def tensorrt_graph(fp32_graph: onnx.ModelProto, calibration: CalibrationSet) -> onnx.ModelProto:
    return quantize_qdq(fp32_graph, calibration, target="tensorrt", method="minmax")


@pytest.fixture(scope="module")
def probe(gate_pairs: MatchedPairs) -> np.ndarray:
    return np.ascontiguousarray(gate_pairs.anchors[:64, None])


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check_tensorrt_rules(model: onnx.ModelProto) -> None:
    """The rules TensorRT's ONNX parser and strongly typed builder need of an explicit-
    quantisation graph: Q/DQ pairs only, symmetric int8 (zero points 0), int8 weights through
    DequantizeLinear, no int32 bias dequantisation, float biases, and a type-consistent
    graph (onnx.checker with shape inference)."""
    onnx.checker.check_model(model, full_check=True)
    inits = _initializers(model)
    producers, consumers = _producers(model), _consumers(model)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
        if node.op_type == "QuantizeLinear":
            assert all(c.op_type == "DequantizeLinear" for c in consumers[node.output[0]])
        if node.op_type == "DequantizeLinear":
            source = inits.get(node.input[0])
            assert source is None or source.dtype == np.int8, node.name  # no int32 bias
            if source is None:
                assert producers[node.input[0]].op_type == "QuantizeLinear"
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        if len(conv.input) > 2:
            assert conv.input[2] in inits and inits[conv.input[2]].dtype in (
                np.float32,
                np.float16,
            )


def test_tensorrt_graph_structure(tensorrt_graph: onnx.ModelProto) -> None:
    check_tensorrt_rules(tensorrt_graph)
    producers = _producers(tensorrt_graph)
    inits = _initializers(tensorrt_graph)
    convs = [n for n in tensorrt_graph.graph.node if n.op_type == "Conv"]
    assert [c.name for c in convs] == [f"conv{i}" for i in range(7)]
    for conv in convs:
        # Activation and weight both arrive through DequantizeLinear; the bias stays float.
        for name in conv.input[:2]:
            dq = producers[name]
            assert dq.op_type == "DequantizeLinear"
            source = dq.input[0]
            assert source in inits or producers[source].op_type == "QuantizeLinear"
    # No Q/DQ on a Conv's output: it would split TensorRT's Conv+ReLU fusion; the Relu reads
    # the Conv directly and the next conv's input Q/DQ follows the Relu.
    consumers = _consumers(tensorrt_graph)
    for conv in convs:
        readers = [n.op_type for n in consumers.get(conv.output[0], [])]
        assert "QuantizeLinear" not in readers, (conv.name, readers)
        if conv.name != "conv6":
            assert readers == ["Relu"], (conv.name, readers)
    # Only Conv is quantised: the standardisation and L2 norm stay float.
    first_q = next(i for i, n in enumerate(tensorrt_graph.graph.node) if n.op_type == "Conv")
    assert tensorrt_graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert first_q > 0


def test_tensorrt_graph_within_gate_in_exact_semantics(
    fp32_graph: onnx.ModelProto, tensorrt_graph: onnx.ModelProto, gate_pairs: MatchedPairs
) -> None:
    result = evaluate_gate(
        ort_describe(fp32_graph),
        ort_describe(tensorrt_graph, semantics=SEMANTICS_EXACT),
        gate_pairs,
        semantics=SEMANTICS_EXACT,
    )
    assert result.passed and result.fpr95_loss_pp <= 1.0
    assert result.mean_cosine > 0.99
    assert result.semantics == SEMANTICS_EXACT
    assert result.host["int8_isa"] == host.int8_isa()


def _reference_evaluator(model: onnx.ModelProto) -> object:
    from onnx.reference import ReferenceEvaluator

    # onnx.reference implements QuantizeLinear/DequantizeLinear from opset 19; every op of
    # these graphs means the same at opset 21 as at 18.
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for opset in copy.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 21
    return ReferenceEvaluator(copy)


@pytest.mark.parametrize(("target", "isa"), [("tensorrt", None), ("cpu", "avx512-vnni")])
def test_exact_semantics_equal_the_onnx_reference_on_any_host(
    fp32_graph: onnx.ModelProto,
    calibration: CalibrationSet,
    probe: np.ndarray,
    target: str,
    isa: str | None,
) -> None:
    # The gate's "exact-qdq" figures come from ONNX Runtime with optimisations off; they
    # must equal onnx's pure-numpy reference implementation of the same graph (up to float
    # summation order flipping a rare rounding), whatever int8 kernels this CPU has. 8-bit
    # weights on purpose: they are what saturates on AVX2 kernels.
    graph = quantize_qdq(fp32_graph, calibration, target=target, method="percentile", isa=isa)
    reference = _reference_evaluator(graph).run(None, {"patches": probe[:32]})[0]  # type: ignore[attr-defined]
    exact = ort_describe(graph, semantics=SEMANTICS_EXACT)(probe[:32])
    assert _cosine(reference, exact).min() >= 0.9995, HOST


def test_cpu_settings_per_isa() -> None:
    for isa in host.INT8_ISAS:
        assert CPU_SETTINGS[isa].reduce_range == host.saturates(isa), isa
    assert CPU_SETTINGS["avx2"].reduce_range and not CPU_SETTINGS["avx512-vnni"].reduce_range


@pytest.fixture(scope="module")
def cpu_graphs(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet
) -> dict[bool, onnx.ModelProto]:
    """The cpu flavour built with each setting: 7-bit weights (avx2) and 8-bit (VNNI)."""
    graphs = {}
    for reduce_range, isa in ((True, "avx2"), (False, "avx512-vnni")):
        with Quantizer(
            fp32_graph, calibration, target="cpu", method="percentile", isa=isa
        ) as quantizer:
            graphs[reduce_range] = quantizer.build(())
    return graphs


@pytest.mark.parametrize("isa", list(host.INT8_ISAS))
def test_cpu_weights_fit_the_kernels_of_each_isa(
    cpu_graphs: dict[bool, onnx.ModelProto], isa: str
) -> None:
    graph = cpu_graphs[CPU_SETTINGS[isa].reduce_range]
    inits = _initializers(graph)
    weights = [
        inits[n.input[0]]
        for n in graph.graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
        and inits[n.input[0]].dtype == np.int8
    ]  # fmt: skip
    assert len(weights) == 7
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    if host.saturates(isa):
        # vpmaddubsw adds two u8 x s8 products in 16 signed bits: 2 x 255 x |w| must fit.
        assert 2 * 255 * largest <= 32767, f"{isa}: |w| up to {largest}"
    else:
        assert largest == 127, f"{isa}: 8-bit weights use their whole range"


def test_cpu_settings_for_saturating_kernels_compute_the_graph_exactly(
    cpu_graphs: dict[bool, onnx.ModelProto], probe: np.ndarray
) -> None:
    # With 7-bit weights nothing can saturate: this host's fused kernels compute what the
    # graph says, on AVX2 and VNNI alike.
    graph = cpu_graphs[True]
    fused = ort_describe(graph)(probe)
    exact = ort_describe(graph, semantics=SEMANTICS_EXACT)(probe)
    assert _cosine(fused, exact).min() >= 0.9995, HOST


def test_cpu_graph_uses_uint8_activations(
    fp32_graph: onnx.ModelProto, cpu_graphs: dict[bool, onnx.ModelProto], probe: np.ndarray
) -> None:
    graph = cpu_graphs[True]
    inits = _initializers(graph)
    activation_zero_points = {
        inits[n.input[2]].dtype for n in graph.graph.node if n.op_type == "QuantizeLinear"
    }
    assert activation_zero_points == {np.dtype(np.uint8)}
    # Every Relu is folded into its conv's uint8 output range (zero point 0), so the conv
    # stack runs as QLinearConv after ONNX Runtime's fusion with no DQ -> Relu -> Q between.
    assert not [n for n in graph.graph.node if n.op_type == "Relu"]
    cosine = _cosine(ort_describe(graph)(probe), ort_describe(fp32_graph)(probe))
    assert cosine.mean() > 0.99


def test_tensorrt_mixed_precision_keeps_named_layers_fp16(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, probe: np.ndarray
) -> None:
    kept = ("conv0", "conv2")  # not neighbours: two float16 islands
    graph = quantize_qdq(
        fp32_graph, calibration, target="tensorrt", method="percentile", keep_float=kept
    )
    check_tensorrt_rules(graph)
    producers = _producers(graph)
    inits = _initializers(graph)
    for conv in (n for n in graph.graph.node if n.op_type == "Conv"):
        if conv.name in kept:
            assert inits[conv.input[1]].dtype == np.float16, conv.name
            assert inits[conv.input[2]].dtype == np.float16, conv.name
            cast = producers[conv.input[0]]
            assert cast.op_type == "Cast" and cast.attribute[0].i == onnx.TensorProto.FLOAT16
        else:
            assert producers[conv.input[0]].op_type == "DequantizeLinear", conv.name
            assert producers[conv.input[1]].op_type == "DequantizeLinear", conv.name
    relus = {n.name: n for n in graph.graph.node if n.op_type == "Relu"}
    for name in ("relu0", "relu2"):  # each float conv's Relu runs in float16 beside it
        assert producers[relus[name].input[0]].name == f"conv{name[4:]}"
    exact = ort_describe(graph, semantics=SEMANTICS_EXACT)(probe)
    assert _cosine(exact, ort_describe(fp32_graph)(probe)).min() > 0.99


def test_cpu_mixed_precision_keeps_named_layers_fp32(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet
) -> None:
    kept = ("conv0", "conv1")
    graph = quantize_qdq(
        fp32_graph, calibration, target="cpu", method="percentile", keep_float=kept
    )
    onnx.checker.check_model(graph, full_check=True)
    producers, inits = _producers(graph), _initializers(graph)
    convs = {n.name: n for n in graph.graph.node if n.op_type == "Conv"}
    for name in kept:
        conv = convs[name]
        assert conv.input[1] in inits and inits[conv.input[1]].dtype == np.float32
        # Float all the way: its input comes from float nodes, not from a DequantizeLinear.
        assert producers[conv.input[0]].op_type != "DequantizeLinear", name
    # Their Relus stay float (not folded into a quantised range); the other convs are int8.
    assert [n.name for n in graph.graph.node if n.op_type == "Relu"] == ["relu0", "relu1"]
    for name in set(convs) - set(kept):
        assert producers[convs[name].input[0]].op_type == "DequantizeLinear", name
        assert producers[convs[name].input[1]].op_type == "DequantizeLinear", name


def test_cpu_export_without_named_layers_keeps_the_lightest_set_that_holds_the_gate(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, gate_pairs: MatchedPairs
) -> None:
    options = Int8Options(calibration=calibration, gate_pairs=gate_pairs)
    # The full model holds conv0 alone above LIGHT_MIN_COSINE (0.9953 on 2000 pairs, Zen 4).
    _, meta = quantize_int8(fp32_graph, "cpu", options)
    settings = meta["quantisation"].settings
    tried = settings["light_float_layers"]
    assert tried["kept"] and tried["limit"] == LIGHT_MIN_COSINE
    assert settings["float_layers"] == dict.fromkeys(LIGHT_FLOAT_LAYERS["cpu"], "fp32")
    # The trial is the gate of the graph that names those layers itself.
    named = replace(options, keep_float=LIGHT_FLOAT_LAYERS["cpu"])
    _, direct = quantize_int8(fp32_graph, "cpu", named)
    assert tried["min_cosine"] == round(direct["quantisation"].gate.min_cosine, 4)
    # A limit the lighter set cannot reach: the measured default set, gate failure forced.
    strict = replace(options, min_cosine=0.99999, force=True)
    _, fallback = quantize_int8(fp32_graph, "cpu", strict)
    settings = fallback["quantisation"].settings
    assert settings["light_float_layers"]["kept"] is False
    assert settings["float_layers"] == dict.fromkeys(DEFAULT_FLOAT_LAYERS["cpu"], "fp32")
    # Named layers are taken as named: no trial.
    assert "light_float_layers" not in direct["quantisation"].settings


def test_unknown_layer_is_refused(fp32_graph: onnx.ModelProto, calibration: CalibrationSet) -> None:
    with pytest.raises(ValueError, match=r"no conv layer called conv9.*conv0, conv1"):
        quantize_qdq(
            fp32_graph, calibration, target="tensorrt", method="minmax", keep_float=("conv9",)
        )


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_default_exports_hold_the_worst_patch(fp32_graph: onnx.ModelProto, target: str) -> None:
    # The default INT8 export (default calibration, layers and settings for this host, the
    # CLI's 2000 gate pairs, which hold flat patches) keeps the worst textured held-out patch
    # within cosine 0.98 of FP32 and NN accuracy within 0.5 points; the gate enforces the
    # cosine and records how it was measured, flat patches apart.
    int8, meta = quantize_int8(fp32_graph, target, Int8Options())
    quantisation = meta["quantisation"]
    gate = quantisation.gate
    assert gate.pairs == 2000 and gate.flat_patches >= 1, gate
    assert gate.passed and gate.min_cosine >= 0.98, (HOST, gate)
    assert gate.nn_accuracy_loss_pp <= 0.5, (HOST, gate)
    assert gate.min_cosine_limit == 0.98
    settings = quantisation.settings
    float_type = "fp16" if target == "tensorrt" else "fp32"
    # The cpu flavour tries conv0 alone first; the full model holds it (0.9953 on a Zen 4).
    tried = settings.get("light_float_layers")
    assert (tried is not None) == (target in LIGHT_FLOAT_LAYERS)
    light = bool(tried and tried["kept"])
    expected = LIGHT_FLOAT_LAYERS[target] if light else DEFAULT_FLOAT_LAYERS[target]
    assert settings["float_layers"] == dict.fromkeys(expected, float_type)
    if target == "tensorrt":
        assert gate.semantics == SEMANTICS_EXACT and quantisation.isa is None
        check_tensorrt_rules(int8)
    else:
        assert gate.semantics == SEMANTICS_HOST
        assert quantisation.isa == host.int8_isa() == gate.host["int8_isa"]
        assert settings["reduce_range"] == host.saturates(host.int8_isa())
        if installed("openvino"):  # the backend runtime.load(device="cpu") picks for it
            openvino = quantisation.gates["openvino"]
            assert openvino.passed, (HOST, openvino)


@pytest.mark.parametrize(
    ("here", "other", "semantics"),
    [
        ("avx2", "avx512-vnni", SEMANTICS_EXACT),  # 8-bit weights this host's kernels clip
        ("avx512", "amx-int8", SEMANTICS_EXACT),
        ("avx512-vnni", "avx2", SEMANTICS_HOST),  # 7-bit: computed alike, nothing clips
        ("amx-int8", "avx512-vnni", SEMANTICS_HOST),
        ("avx2", "avx512", SEMANTICS_HOST),
        ("neon-dotprod", "avx2", SEMANTICS_HOST),
    ],
)
def test_cpu_flavour_for_another_isa_is_gated_where_its_kernels_compute_it(
    monkeypatch: pytest.MonkeyPatch, here: str, other: str, semantics: str
) -> None:
    # The rule for every pair of kinds, whatever kind runs the test.
    monkeypatch.setattr(host, "int8_isa", lambda flags=None: here)
    assert Int8Options(for_isa=other).semantics("cpu") == semantics
    assert Int8Options().semantics("cpu") == SEMANTICS_HOST
    assert Int8Options().semantics("tensorrt") == SEMANTICS_EXACT


@pytest.mark.slow
def test_cpu_flavour_for_another_isa_is_gated_in_exact_semantics_where_this_host_clips(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, gate_pairs: MatchedPairs
) -> None:
    here = host.int8_isa()
    # Weights this host's kernels clip, or (on a host that clips nothing) none.
    other = "avx512-vnni" if host.saturates(here) else "avx2"
    options = Int8Options(for_isa=other, calibration=calibration, gate_pairs=gate_pairs, force=True)
    want = SEMANTICS_EXACT if host.saturates(here) else SEMANTICS_HOST
    assert options.semantics("cpu") == want
    quantisation = quantize_int8(fp32_graph, "cpu", options)[1]["quantisation"]
    assert quantisation.isa == other and quantisation.gate.semantics == want
    assert quantisation.settings["reduce_range"] == host.saturates(other)
    if want == SEMANTICS_HOST and installed("openvino"):
        # A 7-bit graph made here for AVX2 is gated on OpenVINO here too.
        assert "openvino" in quantisation.gates


@pytest.mark.slow
def test_metadata_and_reproducible_hash(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, gate_pairs: MatchedPairs
) -> None:
    options = Int8Options(calibration=calibration, gate_pairs=gate_pairs, method="minmax")
    graph, meta = quantize_int8(fp32_graph, "tensorrt", options)
    quantisation = meta["quantisation"]
    assert quantisation.calibration_sha256 == calibration.sha256
    assert quantisation.calibration["method"] == "minmax"
    assert quantisation.calibration["size"] == 256
    assert quantisation.flavour == "tensorrt" and quantisation.gate.passed
    assert quantisation.scheme == "qdq" and set(quantisation.gates) == {"onnxruntime"}
    again, _ = quantize_int8(fp32_graph, "tensorrt", options)
    assert again.SerializeToString() == graph.SerializeToString()


@pytest.mark.slow
def test_gate_refuses_blank_calibration(
    fp32_graph: onnx.ModelProto, gate_pairs: MatchedPairs
) -> None:
    blank = CalibrationSet(np.zeros((64, 32, 32), np.uint8), "all-zero patches")
    options = Int8Options(calibration=blank, gate_pairs=gate_pairs, keep_float=())
    with pytest.raises(Int8GateError, match="refused"):
        quantize_int8(fp32_graph, "tensorrt", options)
    _, meta = quantize_int8(
        fp32_graph, "tensorrt", Int8Options(calibration=blank, gate_pairs=gate_pairs, force=True)
    )
    gate = meta["quantisation"].gate
    assert not gate.passed and gate.forced


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "kl"}, "calibration method"),
        ({"max_fpr95_loss": -1.0}, "max_fpr95_loss"),
        ({"min_cosine": 1.5}, "min_cosine"),
        ({"for_isa": "sse2"}, "unknown int8 instruction set 'sse2'"),
        ({"keep_float": ("conv0",), "float_budget": 0.1}, "not both"),
        ({"float_budget": 1.5}, "float_budget"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Int8Options(**kwargs)


@pytest.mark.slow
def test_entropy_calibration_is_not_minmax(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, tensorrt_graph: onnx.ModelProto
) -> None:
    # quantize_static's own entropy calibrator (128 bins for 128 levels) reduces to min/max.
    entropy = quantize_qdq(fp32_graph, calibration, target="tensorrt", method="entropy")

    def activation_scales(model: onnx.ModelProto) -> list[float]:
        inits = _initializers(model)
        return [float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]

    minmax_scales, entropy_scales = activation_scales(tensorrt_graph), activation_scales(entropy)
    assert len(minmax_scales) == len(entropy_scales)
    assert entropy_scales != minmax_scales
    # KL thresholds clip outliers: never a wider range than min/max.
    assert all(e <= m * (1 + 1e-6) for e, m in zip(entropy_scales, minmax_scales, strict=True))
