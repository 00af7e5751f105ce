from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from hardnet_export.calibration.dataset import CalibrationSet
from hardnet_export.calibration.gate import Int8GateError, evaluate_gate
from hardnet_export.calibration.quantize import Int8Options, quantize_int8, quantize_qdq
from hardnet_export.data.types import MatchedPairs
from hardnet_export.export.onnx import ort_describe


@pytest.fixture(scope="module")
def tensorrt_graph(fp32_graph: onnx.ModelProto, calibration: CalibrationSet) -> onnx.ModelProto:
    return quantize_qdq(fp32_graph, calibration, target="tensorrt", method="minmax")


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def test_tensorrt_graph_structure(tensorrt_graph: onnx.ModelProto) -> None:
    onnx.checker.check_model(tensorrt_graph, full_check=True)
    producers = _producers(tensorrt_graph)
    inits = {init.name: numpy_helper.to_array(init) for init in tensorrt_graph.graph.initializer}
    convs = [n for n in tensorrt_graph.graph.node if n.op_type == "Conv"]
    assert len(convs) == 7
    for conv in convs:
        # Activation and weight both arrive through DequantizeLinear; the bias stays float.
        for name in conv.input[:2]:
            dq = producers[name]
            assert dq.op_type == "DequantizeLinear"
            source = dq.input[0]
            assert source in inits or producers[source].op_type == "QuantizeLinear"
        if len(conv.input) > 2:
            assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32
    for node in tensorrt_graph.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any()
        if node.op_type == "DequantizeLinear":
            source = inits.get(node.input[0])
            assert source is None or source.dtype == np.int8  # no int32 bias dequantisation
    # Only Conv is quantised: the standardisation and L2 norm stay float.
    first_q = next(i for i, n in enumerate(tensorrt_graph.graph.node) if n.op_type == "Conv")
    assert tensorrt_graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert first_q > 0


def test_tensorrt_graph_within_gate(
    fp32_graph: onnx.ModelProto, tensorrt_graph: onnx.ModelProto, gate_pairs: MatchedPairs
) -> None:
    result = evaluate_gate(ort_describe(fp32_graph), ort_describe(tensorrt_graph), gate_pairs)
    assert result["passed"] and result["fpr95_loss_pp"] <= 1.0
    assert result["mean_cosine"] > 0.99


def test_cpu_graph_uses_uint8_activations(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet
) -> None:
    graph = quantize_qdq(fp32_graph, calibration, target="cpu", method="percentile")
    inits = {init.name: numpy_helper.to_array(init) for init in graph.graph.initializer}
    activation_zero_points = {
        inits[n.input[2]].dtype for n in graph.graph.node if n.op_type == "QuantizeLinear"
    }
    assert activation_zero_points == {np.dtype(np.uint8)}
    # Every Relu is folded into its conv's uint8 output range (zero point 0), so the conv
    # stack runs as QLinearConv after ONNX Runtime's fusion with no DQ -> Relu -> Q between.
    assert not [n for n in graph.graph.node if n.op_type == "Relu"]
    patches = calibration.batches(64)[0]
    cosine = (ort_describe(graph)(patches) * ort_describe(fp32_graph)(patches)).sum(1)
    assert cosine.mean() > 0.99


def test_metadata_and_reproducible_hash(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, gate_pairs: MatchedPairs
) -> None:
    options = Int8Options(calibration=calibration, gate_pairs=gate_pairs, method="entropy")
    graph, meta = quantize_int8(fp32_graph, options)
    assert meta["calibration_sha256"] == calibration.sha256
    assert meta["calibration"]["method"] == "entropy" and meta["calibration"]["size"] == 256
    assert meta["int8_target"] == "tensorrt" and meta["int8_gate"]["passed"]
    again, _ = quantize_int8(fp32_graph, options)
    assert again.SerializeToString() == graph.SerializeToString()


def test_gate_refuses_blank_calibration(
    fp32_graph: onnx.ModelProto, gate_pairs: MatchedPairs
) -> None:
    blank = CalibrationSet(np.zeros((64, 32, 32), np.uint8), "all-zero patches")
    with pytest.raises(Int8GateError, match="refused"):
        quantize_int8(fp32_graph, Int8Options(calibration=blank, gate_pairs=gate_pairs))
    _, meta = quantize_int8(
        fp32_graph, Int8Options(calibration=blank, gate_pairs=gate_pairs, force=True)
    )
    assert not meta["int8_gate"]["passed"] and meta["int8_gate"]["forced"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "gpu"}, "int8 target"),
        ({"method": "kl"}, "calibration method"),
        ({"max_fpr95_loss": -1.0}, "max_fpr95_loss"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Int8Options(**kwargs)


def test_entropy_calibration_is_not_minmax(
    fp32_graph: onnx.ModelProto, calibration: CalibrationSet, tensorrt_graph: onnx.ModelProto
) -> None:
    # quantize_static's own entropy calibrator (128 bins for 128 levels) reduces to min/max.
    entropy = quantize_qdq(fp32_graph, calibration, target="tensorrt", method="entropy")

    def activation_scales(model: onnx.ModelProto) -> list[float]:
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return [float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"]

    minmax_scales, entropy_scales = activation_scales(tensorrt_graph), activation_scales(entropy)
    assert len(minmax_scales) == len(entropy_scales)
    assert entropy_scales != minmax_scales
    # KL thresholds clip outliers: never a wider range than min/max.
    assert all(e <= m * (1 + 1e-6) for e, m in zip(entropy_scales, minmax_scales, strict=True))
