from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from hardnet_export.artifacts.metadata import read_metadata
from hardnet_export.export.fp16 import convert_to_fp16


def _run(path: Path, patches: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"patches": patches})[0]


def test_fp16_within_cosine_of_fp32_on_ort(
    fp32_onnx: Path, fp16_onnx: Path, parity_patches: np.ndarray
) -> None:
    patches = parity_patches[:, None]
    fp32, fp16 = _run(fp32_onnx, patches), _run(fp16_onnx, patches)
    assert fp16.dtype == np.float32 and fp16.shape == (len(patches), 128)
    cosine = (fp32 * fp16).sum(axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(fp16, axis=1)
    assert cosine.min() > 0.999


def test_fp16_graph_layout(fp16_onnx: Path) -> None:
    model = onnx.load(str(fp16_onnx))
    onnx.checker.check_model(model, full_check=True)
    nodes = list(model.graph.node)
    ops = [n.op_type for n in nodes]
    first, last = ops.index("Conv"), len(ops) - 1 - ops[::-1].index("Conv")
    # Exactly one cast into float16 right before the conv stack and one out right after it.
    assert ops[first - 1] == "Cast" and nodes[first - 1].attribute[0].i == onnx.TensorProto.FLOAT16
    assert ops[last + 1] == "Cast" and nodes[last + 1].attribute[0].i == onnx.TensorProto.FLOAT
    assert ops.count("Cast") == 3  # uint8 -> float32 input cast plus the two boundaries
    conv_weights = {n.input[1] for n in nodes if n.op_type == "Conv"}
    for init in model.graph.initializer:
        if init.name in conv_weights:
            assert init.data_type == onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert read_metadata(fp16_onnx).precision == "fp16"


def test_raw_bytes_do_not_overflow(fp16_onnx: Path) -> None:
    # Saturated and constant patches: the float32 normalisation keeps float16 in range.
    patches = np.zeros((4, 1, 32, 32), np.uint8)
    patches[0] = 255
    patches[1, :, :, :16] = 255
    patches[2] = np.arange(32 * 32).reshape(1, 32, 32) % 256
    out = _run(fp16_onnx, patches)
    assert np.isfinite(out).all()


def test_convert_rejects_graph_without_conv() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ValueError, match="Conv"):
        convert_to_fp16(helper.make_model(graph))


def test_float16_islands(fp32_onnx: Path, parity_patches: np.ndarray) -> None:
    from hardnet_export.export.fp16 import nodes_to_fp16

    fp32 = onnx.load(str(fp32_onnx))
    islands = nodes_to_fp16(fp32, ["conv1", "relu1", "conv3"])
    onnx.checker.check_model(islands, full_check=True)
    nodes = {n.name: n for n in islands.graph.node}
    producers = {out: n for n in islands.graph.node for out in n.output}
    inits = {init.name: init for init in islands.graph.initializer}
    for name in ("conv1", "conv3"):
        conv = nodes[name]
        assert inits[conv.input[1]].data_type == onnx.TensorProto.FLOAT16
        assert producers[conv.input[0]].op_type == "Cast"
    # relu1 runs in float16 beside conv1: no cast between them, one cast after it.
    assert producers[nodes["relu1"].input[0]].name == "conv1"
    assert nodes["conv0"].input[1] in inits
    assert inits[nodes["conv0"].input[1]].data_type == onnx.TensorProto.FLOAT
    casts = [n for n in islands.graph.node if n.op_type == "Cast"]
    assert len(casts) == 1 + 2 * 2  # the uint8 input cast, then one in and one out per island
    session = onnxruntime.InferenceSession(
        islands.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    patches = parity_patches[:, None]
    got, want = session.run(None, {"patches": patches})[0], _run(fp32_onnx, patches)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.999
    with pytest.raises(ValueError, match="no node called"):
        nodes_to_fp16(fp32, ["conv9"])
    with pytest.raises(ValueError, match="does not know how to run"):
        nodes_to_fp16(fp32, [next(n.name for n in fp32.graph.node if n.op_type == "Div")])
